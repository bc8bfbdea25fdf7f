"""Many gyms on one port over real streamable HTTP (uvicorn on 127.0.0.1, a free port).

Covers: the shared client end to end (2026-07-28 and the handshake revision), several gyms at once,
legacy sessions with an implicit episode and StartTask, bad input of every kind (never a 5xx),
the episode cap and idle timeout, the time limit, the bearer token, /metrics and /healthz, and 500
concurrent episodes whose outcomes equal the same calls played one episode at a time.
"""

from __future__ import annotations

import json
import random
import signal

import anyio
import httpx
import pytest
from server_support import prometheus_samples, running_http, sleepy_bank, spawn_http

from mcp_gyms.bank import Bank
from mcp_gyms.client import EpisodeRequestError, RemoteEpisode, connect
from mcp_gyms.http_service import HttpService
from mcp_gyms.protocol import CONTROL_META_KEY, EPISODE_META_KEY, START_TOOL, ErrorCode
from mcp_gyms.sandbox import GymCode, SandboxLimits, SandboxPool

GYM = "mountain_peak"
MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {}}
ACCEPT = "application/json, text/event-stream"


def endpoint(base: str, gym: str = GYM) -> str:
    return f"{base}/gyms/{gym}/mcp"


async def modern(http: httpx.AsyncClient, url: str, method: str, params: dict, name: str | None = None,
                 rid: int = 1) -> httpx.Response:
    """A raw 2026-07-28 request (no session, no handshake)."""
    headers = {"Accept": ACCEPT, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    params = {**params, "_meta": {**MODERN_META, **params.get("_meta", {})}}
    return await http.post(url, json={"jsonrpc": "2.0", "id": rid, "method": method, "params": params},
                           headers=headers)


async def call(http: httpx.AsyncClient, url: str, tool: str, arguments: object, episode: str | None = None) -> dict:
    meta = {EPISODE_META_KEY: episode} if episode else {}
    r = await modern(http, url, "tools/call", {"name": tool, "arguments": arguments, "_meta": meta}, name=tool)
    assert r.status_code == 200, r.text
    return r.json()["result"]


class LegacySession:
    """A raw client on the handshake revision: initialize, then Mcp-Session-Id on every request."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url, self.sid, self.next_id = http, url, "", 1

    async def open(self) -> LegacySession:
        r = await self.http.post(self.url, headers={"Accept": ACCEPT}, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
        assert r.status_code == 200, r.text
        self.sid = r.headers["mcp-session-id"]
        await self.http.post(self.url, headers=self.headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

    @property
    def headers(self) -> dict[str, str]:
        return {"Accept": ACCEPT, "Mcp-Session-Id": self.sid, "MCP-Protocol-Version": "2025-06-18"}

    async def request(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        r = await self.http.post(self.url, headers=self.headers,
                                 json={"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}})
        assert r.status_code == 200, r.text
        return r.json()

    async def call(self, tool: str, arguments: object = None) -> dict:
        return (await self.request("tools/call", {"name": tool, "arguments": arguments or {}}))["result"]


@pytest.fixture
def service(bank: Bank) -> HttpService:
    return HttpService(bank, workers=2, limits=SandboxLimits(time_s=2.0))


async def test_client_end_to_end_both_revisions(service: HttpService, bank: Bank) -> None:
    record = bank.gym(GYM)
    async with running_http(service) as base:
        for mode in ("auto", "legacy"):
            async with connect(endpoint(base), mode=mode) as gym:
                tools = await gym.list_tools()
                assert [t.name for t in tools] == [t.name for t in record.tools]  # exactly the gym's own tools
                assert [t.input_schema for t in tools] == [t.input_schema for t in record.tools]
                assert all("Example" not in t.description for t in tools)
                assert [t.id for t in await gym.tasks()] == [t.id for t in bank.tasks(GYM)]
                assert record.task_text in await gym.task_prompt()
                assert await gym.read_resource(f"codegym://{GYM}/task") == record.task_text
                for task in ("easy-0", 5, "hard-2"):
                    async with await gym.start(task=task) as ep:
                        assert ep.info is not None and ep.info.task_text == record.task_text
                        first = await ep.call("Observe")
                        assert first.error is None and first.steps == 1 and not first.done
                        final = await ep.play_oracle()
                        assert final.done and final.terminated and final.reward == 1.0
                        status = await ep.status()
                        assert status.reward == 1.0 and not status.open and status.ended == "done"


async def test_many_gyms_on_one_port(service: HttpService, bank: Bank) -> None:
    gyms = ["mountain_peak", "coin_vault", "bracket_inspector"]
    async with running_http(service) as base, httpx.AsyncClient() as http:
        listing = (await http.get(f"{base}/gyms")).json()["gyms"]
        assert {g["id"] for g in listing} == set(bank.gym_ids)
        assert all(g["endpoint"] == f"/gyms/{g['id']}/mcp" for g in listing)
        assert (await http.get(f"{base}/healthz")).json()["gyms_loaded"] == 0  # lazy: nothing loaded yet

        rewards: dict[str, float] = {}

        async def play(gym_id: str) -> None:
            async with connect(endpoint(base, gym_id)) as gym, await gym.start(task=1) as ep:
                rewards[gym_id] = (await ep.play_oracle()).reward

        async with anyio.create_task_group() as tg:
            for gym_id in gyms:
                tg.start_soon(play, gym_id)
        assert rewards == dict.fromkeys(gyms, 1.0)
        health = (await http.get(f"{base}/healthz")).json()
        assert health["gyms_loaded"] == 3 and health["status"] == "ok"

        # a handle belongs to its gym's endpoint
        async with connect(endpoint(base, "coin_vault")) as gym:
            ep = await gym.start()
            result = await call(http, endpoint(base), "Observe", {}, episode=ep.handle)
            assert result["isError"] and result["structuredContent"]["error"] == "wrong_gym"
            assert "coin_vault" in result["content"][0]["text"]
        # unknown gym: 404 with a JSON body naming it, for any method
        for method in ("GET", "POST", "DELETE"):
            r = await http.request(method, f"{base}/gyms/no_such_gym/mcp", json={})
            assert r.status_code == 404 and "no_such_gym" in r.json()["error"]["message"]


async def test_bad_input_never_5xx(service: HttpService) -> None:
    async with running_http(service) as base, httpx.AsyncClient(timeout=30) as http:
        url = endpoint(base)
        started = await modern(http, url, "codegym/episodes/start", {"task": "easy-0"})
        handle = started.json()["result"]["episode"]
        responses: list[httpx.Response] = [started]

        # malformed JSON-RPC: not JSON, not a JSON-RPC message, wrong content type, empty body
        for body, ctype in ((b"{not json", "application/json"), (b'{"foo": 1}', "application/json"),
                            (b"[]", "application/json"), (b"", "application/json"), (b"hello", "text/plain")):
            r = await http.post(url, content=body, headers={"Accept": ACCEPT, "Content-Type": ctype,
                                                            "MCP-Protocol-Version": "2026-07-28"})
            responses.append(r)
            assert 400 <= r.status_code < 500, (body, r.status_code, r.text)

        # non-object arguments, a non-string tool name: isError results, not JSON-RPC errors
        for bad in ([1, 2], "position=3", 7):
            result = await call(http, url, "Height", bad, episode=handle)
            assert result["isError"] and result["structuredContent"]["error"] == "invalid_arguments", result
        # wrong argument types, missing and unexpected arguments
        for args in ({"position": "3"}, {"position": 1.5}, {"position": True}, {}, {"position": 1, "x": 2}):
            result = await call(http, url, "Height", args, episode=handle)
            assert result["isError"] and result["structuredContent"]["error"] == "invalid_arguments", (args, result)
        # a 1 MB string argument
        with anyio.fail_after(20):
            result = await call(http, url, "Height", {"position": "x" * 1_000_000}, episode=handle)
        assert result["isError"] and result["structuredContent"]["error"] == "invalid_arguments"
        assert len(result["content"][0]["text"]) < 1000
        result = await call(http, url, "Done", {"answer": "9" * 1_000_000}, episode=handle)
        assert result["isError"] and result["structuredContent"]["error"] == "invalid_arguments"
        # unknown tool
        result = await call(http, url, "DropTables", {}, episode=handle)
        assert result["isError"] and result["structuredContent"]["error"] == "unknown_tool"
        assert "Observe" in result["content"][0]["text"]  # names the tools that exist
        # the bad calls counted as steps but left the state alone
        result = await call(http, url, "Observe", {}, episode=handle)
        assert not result["isError"] and "none" in result["content"][0]["text"]
        steps = result["structuredContent"]["steps"]
        assert steps == 3 + 5 + 2 + 1 + 1

        # missing handle (no session either), unknown handle, a handle that is not a string
        result = await call(http, url, "Observe", {})
        assert result["isError"] and result["structuredContent"]["error"] == "no_episode"
        assert EPISODE_META_KEY in result["content"][0]["text"]
        result = await call(http, url, "Observe", {}, episode="not-a-handle")
        assert result["isError"] and result["structuredContent"]["error"] == "unknown_episode"
        r = await modern(http, url, "tools/call", {"name": "Observe", "arguments": {}, "_meta": {EPISODE_META_KEY: 5}},
                         name="Observe")
        assert r.json()["result"]["isError"]
        # an ended episode
        result = await call(http, url, "Done", {"answer": 1}, episode=handle)
        assert result["structuredContent"]["done"] and result["structuredContent"]["reward"] == 0.0
        result = await call(http, url, "Observe", {}, episode=handle)
        assert result["isError"] and result["structuredContent"]["error"] == "episode_over"
        assert result["structuredContent"]["done"] and result["structuredContent"]["steps"] == steps + 1

        # the custom methods: unknown task / difficulty / handle, unknown method
        for params, code in (({"task": 99}, ErrorCode.INVALID_PARAMS), ({"task": "nope"}, ErrorCode.INVALID_PARAMS),
                             ({"difficulty": "extreme"}, ErrorCode.INVALID_PARAMS),
                             ({"task": [1]}, ErrorCode.INVALID_PARAMS)):
            r = await modern(http, url, "codegym/episodes/start", params)
            responses.append(r)
            assert r.json()["error"]["code"] == code, r.text
        for method in ("codegym/episodes/status", "codegym/episodes/close", "codegym/oracle"):
            r = await modern(http, url, method, {"episode": "nope"})
            responses.append(r)
            assert r.json()["error"]["code"] == ErrorCode.UNKNOWN_EPISODE, r.text
            r = await modern(http, url, method, {})
            responses.append(r)
            assert r.json()["error"]["code"] == ErrorCode.INVALID_PARAMS, r.text
        r = await modern(http, url, "codegym/nothing", {})
        assert r.json()["error"]["code"] == -32601
        # a body over the 4 MiB limit
        r = await modern(http, url, "tools/call", {"name": "Height", "arguments": {"position": "x" * (5 << 20)},
                                                   "_meta": {EPISODE_META_KEY: handle}}, name="Height")
        responses.append(r)
        assert r.status_code == 413
        assert all(r.status_code < 500 for r in responses)
        assert (await http.get(f"{base}/healthz")).status_code == 200


async def test_legacy_session_implicit_episode(service: HttpService, bank: Bank) -> None:
    lengths = [len(t.config["heights"]) for t in bank.tasks(GYM)]
    async with running_http(service) as base, httpx.AsyncClient(timeout=30) as http:
        one = await LegacySession(http, endpoint(base)).open()
        two = await LegacySession(http, endpoint(base)).open()
        listed = (await one.request("tools/list"))["result"]["tools"]
        assert listed[-1]["name"] == START_TOOL and listed[-1]["_meta"] == {CONTROL_META_KEY: True}
        # each session has its own implicit episode, on task 0
        r1 = await one.call("Height", {"position": 0})
        assert not r1["isError"] and r1["structuredContent"]["steps"] == 1
        r2 = await two.call("Observe")
        assert f"{lengths[0]} positions" in r2["content"][0]["text"] and "none" in r2["content"][0]["text"]
        assert r2["structuredContent"]["steps"] == 1
        # StartTask picks another task, for this session only
        started = await one.call(START_TOOL, {"task": "hard-0"})
        assert not started["isError"] and started["structuredContent"]["taskId"] == "hard-0"
        assert (await one.call("Observe"))["structuredContent"]["steps"] == 1
        assert f"{lengths[8]} positions" in (await one.call("Observe"))["content"][0]["text"]
        assert (await two.call("Observe"))["structuredContent"]["steps"] == 2
        bad = await one.call(START_TOOL, {"task": 42})
        assert bad["isError"] and "no task #42" in bad["content"][0]["text"]
        # after Done the implicit episode is over until StartTask
        done = await one.call("Done", {"answer": 0})
        assert done["structuredContent"]["done"] and done["structuredContent"]["reward"] == 0.0
        over = await one.call("Observe")
        assert over["isError"] and START_TOOL in over["content"][0]["text"]
        again = await one.call(START_TOOL, {})
        assert again["structuredContent"]["taskId"] == "hard-0"
        assert not (await one.call("Observe"))["isError"]
        # the prompt and resources work on a legacy session too
        prompt = (await one.request("prompts/get", {"name": "task"}))["result"]
        assert bank.gym(GYM).task_text in prompt["messages"][0]["content"]["text"]
        r = await http.delete(endpoint(base), headers=one.headers)
        assert r.status_code in (200, 204)


async def test_episode_cap_and_idle_timeout(bank: Bank) -> None:
    service = HttpService(bank, workers=1, max_episodes=3, idle_timeout=1.0)
    async with running_http(service) as base, connect(endpoint(base)) as gym:
        eps = [await gym.start(task=i) for i in range(3)]
        with pytest.raises(EpisodeRequestError) as refused:
            await gym.start()
        assert refused.value.kind == "too_many_episodes" and refused.value.code == ErrorCode.TOO_MANY_EPISODES
        await eps[0].close()
        await eps[0].close()  # idempotent
        eps[0] = await gym.start()
        for _ in range(8):  # keep one episode busy; the others go idle
            await anyio.sleep(0.3)
            assert (await eps[1].call("Observe")).error is None
        late = await eps[2].call("Observe")
        assert late.error == "episode_over" and "idle" in late.observation
        assert (await eps[2].status()).ended == "idle"
        assert (await eps[1].status()).open
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{base}/metrics")).text
        values = prometheus_samples(text)
        assert values['codegym_episodes_ended_total{reason="idle"}'] >= 1
        assert values['codegym_requests_rejected_total{reason="too_many_episodes"}'] == 1


async def test_time_limit_is_a_clear_error(tmp_path) -> None:
    service = HttpService(sleepy_bank(tmp_path), workers=1, limits=SandboxLimits(time_s=0.5))
    async with running_http(service) as base, connect(endpoint(base, "sleepy")) as gym:
        ep = await gym.start(task="t1")
        assert (await ep.call("Sleep", seconds=0.01)).error is None
        with anyio.fail_after(10):
            slow = await ep.call("Sleep", seconds=30)
        assert slow.error == "time_limit" and "unchanged" in slow.observation
        # the state is the last committed one, and the episode goes on
        assert (await ep.call("Get")).observation == "10"
        assert (await ep.call("Done", answer=9)).reward == 1.0  # the reference is the task's value
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{base}/metrics")).text
        values = prometheus_samples(text)
        assert values["codegym_tool_call_timeouts_total"] == 1 and values["codegym_sandbox_worker_restarts_total"] >= 1


async def test_bearer_token(bank: Bank) -> None:
    service = HttpService(bank, workers=1, token="s3cret")
    async with running_http(service) as base, httpx.AsyncClient() as http:
        assert (await http.get(f"{base}/healthz")).status_code == 200  # open, for load balancers
        for path in ("/metrics", "/gyms", f"/gyms/{GYM}/mcp"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                r = await http.post(f"{base}{path}", json={}, headers=headers) if path.endswith("mcp") else \
                    await http.get(f"{base}{path}", headers=headers)
                assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert (await http.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret"})).status_code == 200
        with pytest.raises(EpisodeRequestError):
            async with connect(endpoint(base), retries=0):
                pass
        async with connect(endpoint(base), token="s3cret") as gym, await gym.start() as ep:
            assert (await ep.call("Observe")).error is None


async def test_metrics_and_healthz(service: HttpService) -> None:
    async with running_http(service) as base, httpx.AsyncClient() as http:
        async with connect(endpoint(base)) as gym:
            ep = await gym.start(task=0)
            for position in range(5):
                await ep.call("Height", position=position)
            await ep.call("Height", position="x")
            await ep.call("Nope")
            assert (await gym.attach("bogus").call("Observe")).error == "unknown_episode"
            assert (await http.get(f"{base}/gyms/nope/mcp")).status_code == 404
            health = (await http.get(f"{base}/healthz")).json()
            assert health["status"] == "ok" and health["episodes_open"] == 1 and health["workers"] == 2
            r = await http.get(f"{base}/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            samples = prometheus_samples(r.text)
            assert samples["codegym_episodes_open"] == 1
            assert samples["codegym_episodes_started_total"] == 1
            assert samples["codegym_tool_calls_total"] == 7
            assert samples['codegym_tool_call_errors_total{kind="invalid_arguments"}'] == 1
            assert samples['codegym_tool_call_errors_total{kind="unknown_tool"}'] == 1
            assert samples["codegym_tool_call_duration_seconds_count"] == 7
            assert samples['codegym_tool_call_duration_seconds_bucket{le="+Inf"}'] == 7
            assert samples["codegym_tool_call_duration_seconds_sum"] > 0
            assert samples['codegym_requests_rejected_total{reason="unknown_episode"}'] == 1
            assert samples['codegym_requests_rejected_total{reason="unknown_gym"}'] == 1
            for name in ("codegym_tool_call_timeouts_total", "codegym_sandbox_worker_restarts_total",
                         "codegym_gyms_loaded", "codegym_episodes_max"):
                assert name in samples
            await ep.close()
        samples = prometheus_samples((await http.get(f"{base}/metrics")).text)
        assert samples["codegym_episodes_open"] == 0 and samples['codegym_episodes_ended_total{reason="closed"}'] == 1


def _script(i: int, length: int) -> list[tuple[str, dict]]:
    """A deterministic mix of good and bad calls for episode ``i``, ending with Done."""
    rng = random.Random(i)
    calls: list[tuple[str, dict]] = [("Observe", {})]
    for _ in range(2):
        kind = rng.random()
        if kind < 0.6:
            calls.append(("Height", {"position": rng.randrange(length)}))
        elif kind < 0.8:
            calls.append(("Rises", {"position": rng.randrange(length + 3)}))  # some out of range: tool errors
        else:
            calls.append(("Height", {"position": str(rng.randrange(9))}))  # wrong type
    calls.append(("Observe", {}))
    calls.append(("Done", {"answer": rng.choice([0, 999242, 996080])}))
    return calls


async def test_500_concurrent_episodes_match_sequential_play(bank: Bank) -> None:
    """500 episodes of one gym at once on a real server process, calls interleaved; every episode's
    observations, rewards and step counts equal the same calls played one episode at a time."""
    n = 500
    tasks = bank.tasks(GYM)
    plans = [(i % len(tasks), i % 7, _script(i, len(tasks[i % len(tasks)].config["heights"]))) for i in range(n)]
    concurrent: list[list[tuple]] = [[] for _ in range(n)]
    proc, base = spawn_http("--workers", "2", "--max-episodes", str(n))
    try:
        async with connect(endpoint(base), request_timeout=120) as gym, httpx.AsyncClient() as http:
            episodes: list[RemoteEpisode] = []

            async def start(i: int) -> None:
                episodes[i] = await gym.start(task=plans[i][0], seed=plans[i][1])

            episodes = [None] * n  # type: ignore[list-item]
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(start, i)
            assert (await http.get(f"{base}/healthz")).json()["episodes_open"] == n

            async def play(i: int) -> None:  # interleaved: every episode yields between its calls
                for name, arguments in plans[i][2]:
                    out = await episodes[i].call(name, arguments)
                    concurrent[i].append((out.observation, out.reward, out.done, out.steps, out.error))
                    await anyio.sleep(random.random() / 200)

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(play, i)
            assert (await http.get(f"{base}/healthz")).json()["episodes_open"] == 0  # all ended at Done
            assert all(s.ended == "done" for s in [await episodes[i].status() for i in range(0, n, 50)])
    finally:
        proc.terminate()
        # uvicorn stops gracefully on SIGTERM and then ends by the same signal; anything else is a crash
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), "the server did not stop cleanly on SIGTERM"

    # the same calls, one episode at a time, straight on a sandbox pool
    gym_code = GymCode(bank.code(GYM), bank.gym(GYM).class_name)
    async with SandboxPool(workers=1) as pool:
        for i in range(n):
            index, seed, script = plans[i]
            ep = await pool.open(gym_code, tasks[index].config, seed)
            sequential = []
            for name, arguments in script:
                r = await ep.call(name, json.dumps(arguments))
                sequential.append((r.observation, r.reward, r.done, r.steps, r.error))
            await ep.aclose()
            assert concurrent[i] == sequential, f"episode {i} diverged"
    rewards = [c[-1][1] for c in concurrent]
    assert 0 < sum(rewards) < n  # both outcomes occur


def test_serve_command_warns_on_a_public_bind_without_token(bank: Bank, monkeypatch, capsys) -> None:
    import argparse

    from mcp_gyms import server

    started: list[HttpService] = []
    monkeypatch.setattr(server, "serve_http", lambda service, port, **kw: started.append(service))
    monkeypatch.delenv("CODEGYM_TOKEN", raising=False)
    parser = argparse.ArgumentParser()
    server.add_serve_arguments(parser)
    assert server.serve_command(parser.parse_args(["--http", "--host", "192.0.2.10", "--port", "1", "--procs", "1"])) == 0
    assert "WITHOUT a bearer token" in capsys.readouterr().err
    assert server.serve_command(parser.parse_args(["--http", "--port", "1", "--procs", "1", GYM])) == 0
    assert "WARNING" not in capsys.readouterr().err  # loopback: no warning
    monkeypatch.setenv("CODEGYM_TOKEN", "t0ken")
    assert server.serve_command(parser.parse_args(["--http", "--host", "192.0.2.10", "--port", "1", "--procs", "1"])) == 0
    assert "WARNING" not in capsys.readouterr().err
    assert [(s.host, s.token, s.gyms) for s in started] == [("192.0.2.10", None, None), ("127.0.0.1", None, [GYM]),
                                                            ("192.0.2.10", "t0ken", None)]
    assert not started[0].security.enable_dns_rebinding_protection
    assert started[1].security.enable_dns_rebinding_protection
