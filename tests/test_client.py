"""The shared client: its contract on retries, interrupted calls, plain MCP servers and episode objects;
and the HTTP server's graceful shutdown, seen from a client (real server subprocesses)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.server import Server
from server_support import running_http, sandbox_workers, sleepy_bank, spawn_http, wait_gone

from mcp_gyms.bank import Bank
from mcp_gyms.client import CallInterrupted, ConnectionLost, EpisodeRequestError, GymPool, ToolInfo, connect
from mcp_gyms.gym_server import open_gym_server
from mcp_gyms.http_service import HttpService
from mcp_gyms.protocol import ErrorCode

GYM = "mountain_peak"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_server_fails_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/gyms/{GYM}/mcp"
    started = time.monotonic()
    with pytest.raises(ConnectionLost) as lost:
        async with connect(url, retries=2, backoff=0.05):
            pass
    assert "3 tries" in str(lost.value) and time.monotonic() - started < 10


async def test_episode_objects_in_process(bank: Bank) -> None:
    async with open_gym_server(bank, GYM, workers=2) as server, connect(server) as gym:
        tools = await gym.list_tools()
        assert all(isinstance(t, ToolInfo) for t in tools)
        assert tools[0].openai() == {"type": "function", "function": {
            "name": "Observe", "description": tools[0].description, "parameters": tools[0].input_schema}}
        async with await gym.start(difficulty="medium", seed=4) as ep:
            assert ep.info is not None and ep.info.task_id == "medium-0" and ep.info.seed == 4
            assert (ep.steps, ep.reward, ep.done) == (0, 0.0, False)
            out = await ep.call("Height", {"position": 1})
            assert out.error is None and ep.steps == 1 and ep.last is out
            twin = gym.attach(ep.handle)  # another object for the same episode
            assert (await twin.status()).steps == 1
            plan = await ep.oracle_plan()
            assert plan.reward == 1.0 and plan.calls[-1].name == "Done" and plan.error is None
            assert (await ep.status()).steps == 1  # planning the oracle did not touch the episode
        assert (await ep.status()).ended == "closed"  # the context manager closed it
        assert (await ep.close()).ended == "closed"  # idempotent
        with pytest.raises(EpisodeRequestError) as refused:
            await gym.start(task="nope")
        assert refused.value.code == ErrorCode.INVALID_PARAMS and refused.value.kind == "unknown_task"
        with pytest.raises(EpisodeRequestError) as unknown:
            await gym.attach("no-such-handle").status()
        assert unknown.value.code == ErrorCode.UNKNOWN_EPISODE


async def test_plain_mcp_server_gets_a_handleless_episode() -> None:
    """Against an MCP server that knows nothing of codegym, the client still plays (its implicit state)."""
    counter = {"n": 0}

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="Inc", input_schema={"type": "object"})])

    async def call_tool(ctx, params) -> types.CallToolResult:
        counter["n"] += 1
        return types.CallToolResult(content=[types.TextContent(text=f"n={counter['n']}")],
                                    is_error=params.name != "Inc")

    async with connect(Server("plain", on_list_tools=list_tools, on_call_tool=call_tool)) as gym:
        ep = await gym.start(task=3)
        assert ep.handle is None and ep.info is None
        assert (await ep.call("Inc")).observation == "n=1"
        bad = await ep.call("Other")
        assert bad.observation == "n=2" and bad.error == "error"
        assert await ep.close() is None


async def test_reconnects_after_a_server_restart(bank: Bank) -> None:
    """Idempotent requests reconnect; the episode itself is gone with the old server (a clear error)."""
    port = free_port()

    async def serve(stop: anyio.Event, up: anyio.Event, down: anyio.Event) -> None:
        import uvicorn

        service = HttpService(bank, gyms=[GYM], workers=1)
        server = uvicorn.Server(uvicorn.Config(service.app(), host="127.0.0.1", port=port, log_level="warning",
                                               timeout_graceful_shutdown=1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            while not server.started:  # uvicorn's own readiness flag
                await anyio.sleep(0.01)
            up.set()
            await stop.wait()
            server.should_exit = True
        down.set()  # the server has stopped listening

    url = f"http://127.0.0.1:{port}/gyms/{GYM}/mcp"
    async with anyio.create_task_group() as tg:
        first, first_up, first_down = anyio.Event(), anyio.Event(), anyio.Event()
        tg.start_soon(serve, first, first_up, first_down)
        await first_up.wait()
        async with connect(url, retries=5, backoff=0.2) as gym:
            ep = await gym.start()
            assert (await ep.call("Observe")).error is None
            first.set()
            await first_down.wait()
            with pytest.raises(ConnectionLost):
                await ep.call("Observe")  # a tool call is never retried
            second, second_up = anyio.Event(), anyio.Event()
            tg.start_soon(serve, second, second_up, anyio.Event())
            await second_up.wait()
            assert len(await gym.list_tools()) == 5  # reconnected
            gone = await ep.call("Observe")
            assert gone.error == "unknown_episode"
            ep2 = await gym.start()
            assert (await ep2.call("Observe")).error is None
            second.set()


async def test_call_interrupted_when_the_server_dies_mid_call(tmp_path) -> None:
    sleepy_bank(tmp_path)
    proc, base = spawn_http("--bank", str(tmp_path), "--workers", "1", "sleepy")
    workers: list[int] = []
    tmpdirs: list[str] = []
    try:
        async with connect(f"{base}/gyms/sleepy/mcp", retries=1, backoff=0.05) as gym:
            ep = await gym.start()
            assert (await ep.call("Sleep", seconds=0.0)).error is None
            workers = sandbox_workers(proc.pid)
            tmpdirs = [os.readlink(f"/proc/{pid}/cwd") for pid in workers]  # the host cannot clean up after SIGKILL

            async def kill_soon() -> None:
                await anyio.sleep(0.5)
                proc.kill()

            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_soon)
                with pytest.raises(CallInterrupted) as interrupted:
                    await ep.call("Sleep", seconds=2.5)
            assert "may or may not have run" in str(interrupted.value)
            with pytest.raises(ConnectionLost):
                await gym.list_tools()
    finally:
        proc.kill()
        proc.wait()
    # workers of a SIGKILLed server see EOF and stop by themselves once their call ends
    assert wait_gone(workers, timeout=20) == []
    for path in tmpdirs:
        if "codegym-worker-" in path:
            shutil.rmtree(path, ignore_errors=True)


async def test_http_graceful_shutdown_finishes_in_flight_calls(tmp_path) -> None:
    sleepy_bank(tmp_path)
    proc, base = spawn_http("--bank", str(tmp_path), "--workers", "2")
    try:
        async with connect(f"{base}/gyms/sleepy/mcp", retries=0) as gym:
            eps = [await gym.start(task=i % 2) for i in range(3)]
            for ep in eps:
                assert (await ep.call("Sleep", seconds=0.0)).error is None
            workers = sandbox_workers(proc.pid)
            assert len(workers) == 2
            results: list[object] = []

            async def slow(ep) -> None:
                try:
                    results.append(await ep.call("Sleep", seconds=1.5))
                except ConnectionLost as exc:
                    results.append(exc)

            async with anyio.create_task_group() as tg:
                for ep in eps[:2]:
                    tg.start_soon(slow, ep)
                await anyio.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
            # the calls in flight finished (the grace period is longer than they take)
            assert [getattr(r, "observation", r) for r in results] == ["slept 1.5", "slept 1.5"]
            rc = await anyio.to_thread.run_sync(lambda: proc.wait(timeout=30))
            assert rc in (0, -signal.SIGTERM)
            assert wait_gone(workers) == []
            async with httpx.AsyncClient() as http:
                with pytest.raises(httpx.ConnectError):
                    await http.get(f"{base}/healthz")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_shutdown_refuses_new_work_clearly(bank: Bank) -> None:
    """Once shutdown starts, calls and starts get a clear 'shutting down' answer, not a hang."""
    service = HttpService(bank, gyms=[GYM], workers=1)
    async with running_http(service) as base, connect(f"{base}/gyms/{GYM}/mcp", retries=0) as gym:
        ep = await gym.start()
        assert service.manager is not None
        await service.manager.shutdown()
        out = await ep.call("Observe")
        assert out.error == "shutting_down" or out.error == "episode_over", out
        with pytest.raises(EpisodeRequestError) as refused:
            await gym.start()
        assert refused.value.code == ErrorCode.SHUTTING_DOWN
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/healthz")).status_code == 503


async def test_one_calls_timeout_does_not_interrupt_the_others(tmp_path):
    """call_timeout gives up on that call only: another episode's call on the same connection finishes."""
    service = HttpService(sleepy_bank(tmp_path / "bank"), workers=2)
    async with running_http(service) as base, connect(f"{base}/gyms/sleepy/mcp", call_timeout=1.0) as gym:
        slow, other = await gym.start(task=0), await gym.start(task=1)
        outcomes: dict[str, object] = {}

        async def run(name: str, ep, seconds: float) -> None:  # noqa: ANN001
            try:
                outcomes[name] = await ep.call("Sleep", {"seconds": seconds})
            except CallInterrupted as exc:
                outcomes[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "slow", slow, 2.0)
            await anyio.sleep(0.3)
            tg.start_soon(run, "other", other, 0.9)
        assert isinstance(outcomes["slow"], CallInterrupted)
        assert not isinstance(outcomes["other"], CallInterrupted), outcomes["other"]
        assert outcomes["other"].observation == "slept 0.9"


async def test_pool_spreads_episodes_over_servers_and_keeps_each_on_its_own(bank: Bank) -> None:
    """A GymPool over two servers of one bank (as `codegym serve --procs 2` runs them): new episodes go to the
    less loaded server, each episode stays where it started (its handle exists only there)."""
    async with running_http(HttpService(bank, gyms=[GYM], workers=1)) as a, \
            running_http(HttpService(bank, gyms=[GYM], workers=1)) as b, GymPool([a, b]) as pool:
        assert [t.name for t in await pool.tools(GYM)][0] == "Observe" and len(await pool.tasks(GYM)) > 0
        eps = [await pool.start(GYM, task=0) for _ in range(4)]
        assert pool.load() == {a: 2, b: 2}
        assert {ep.connection.target for ep in eps} == {f"{a}/gyms/{GYM}/mcp", f"{b}/gyms/{GYM}/mcp"}
        for ep in eps:
            assert (await ep.call("Observe")).error is None  # each call reaches the server that minted the handle
        on_a = next(ep for ep in eps if ep.connection.target.startswith(a))
        await on_a.close()
        assert pool.load() == {a: 1, b: 2}
        async with await pool.start(GYM, task=1) as fresh:
            assert fresh.connection.target.startswith(a) and pool.load() == {a: 2, b: 2}
        for ep in eps:
            await ep.close()
        assert pool.load() == {a: 0, b: 0} and sorted(s for s, _ in pool.connections()) == sorted([a, b])
        await pool.release(GYM)
        assert pool.connections() == []
        with pytest.raises(EpisodeRequestError) as refused:
            await pool.start(GYM, task="nope")
        assert refused.value.kind == "unknown_task" and not refused.value.retryable
    with pytest.raises(ValueError, match="http"):
        GymPool(["ftp://x"])
    with pytest.raises(ValueError, match="not both"):
        GymPool([f"{a}", f"{a}/gyms/{GYM}/mcp"])


async def test_a_call_that_never_left_is_sent_again_and_runs_once(bank: Bank) -> None:
    """While nothing listens at the server's address a tool call cannot be sent (connection refused): the
    client sends it again once the server is back, and the episode advanced by exactly one step."""
    async with running_http(HttpService(bank, gyms=[GYM], workers=1)) as base:
        upstream = int(base.rsplit(":", 1)[1])
        open_links: set[asyncio.StreamWriter] = set()

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
            open_links.update((writer, up_writer))

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError, OSError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.transport.abort()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        port = free_port()
        proxy = await asyncio.start_server(forward, "127.0.0.1", port)
        async with connect(f"http://127.0.0.1:{port}/gyms/{GYM}/mcp", retries=6, backoff=0.1) as gym:
            ep = await gym.start()
            assert (await ep.call("Observe")).error is None
            proxy.close()  # nothing listens any more, and every open link is cut
            for writer in open_links:
                writer.transport.abort()
            await proxy.wait_closed()
            async def reopen() -> None:
                await asyncio.sleep(0.5)
                await asyncio.start_server(forward, "127.0.0.1", port)

            reopening = asyncio.create_task(reopen())
            out = await ep.call("Height", {"position": 1})
            assert reopening.done(), "the call returned before the server was reachable again"
            assert out.error is None and out.steps == 2
            assert (await ep.status()).steps == 2
