"""The HTTP hot path (:mod:`mcp_gyms.hot_path`) answers every request exactly as the MCP SDK does.

Two real servers on one bank run side by side: one as shipped, one with ``hot_path=False`` (every request
through the SDK's own streamable-HTTP path). Each plays the same raw requests on a twin episode (same task,
same seed); every answer must match in HTTP status, content type and JSON body (episode handles aside).
The requests cover the calls the hot path takes (results, bad arguments, unknown tools, unknown and ended
episodes, string ids, client info) and the ones it must leave to the SDK (header mismatches, bad envelopes,
bad JSON, wrong content type or Accept, a foreign Host, unsupported versions, odd ids, batches,
notifications, ``Mcp-Param-*`` headers). ``/metrics`` then says which calls the hot path took. The official
Python SDK client, through :func:`mcp_gyms.client.connect`, is the real counterpart: its 2026-07-28 tool calls
take the hot path and its handshake-era calls do not.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from server_support import prometheus_samples, running_http

from mcp_gyms.bank import Bank
from mcp_gyms.client import connect
from mcp_gyms.http_service import HttpService
from mcp_gyms.protocol import EPISODE_META_KEY
from mcp_gyms.sandbox import SandboxLimits
from mcp_gyms.server import add_serve_arguments, http_service

GYM = "mountain_peak"
VERSION = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": VERSION, "io.modelcontextprotocol/clientCapabilities": {}}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": VERSION, "Mcp-Method": "tools/call"}
HOT_CALLS = 'codegym_hot_path_requests_total{method="tools/call"}'
HOT_STARTS = 'codegym_hot_path_requests_total{method="codegym/episodes/start"}'
START = {"Mcp-Method": "codegym/episodes/start"}


def tool_call(name: Any, arguments: Any = None, *, rid: Any = 1, meta: dict[str, Any] | None = None,
              handle: bool = True, **params: Any) -> Callable[[str], Any]:
    """A tools/call body for the episode handle it is given (``handle=False``: none in ``_meta``)."""
    def body(episode: str) -> Any:
        p: dict[str, Any] = {"name": name, "_meta": {**ENVELOPE, **({EPISODE_META_KEY: episode} if handle else {}),
                                                     **(meta or {})}, **params}
        if arguments is not None:
            p["arguments"] = arguments
        return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": p}
    return body


def start(params: dict[str, Any], *, rid: Any = 1) -> Callable[[str], Any]:
    """A codegym/episodes/start body (with the 2026-07-28 envelope)."""
    return lambda _: {"jsonrpc": "2.0", "id": rid, "method": "codegym/episodes/start",
                      "params": {**params, "_meta": {**ENVELOPE, **params.get("_meta", {})}}}


#: (what, extra headers, body for a handle, whether the hot path takes it). Played in this order: the
#: episode's state moves on with every taken call, the same on both servers.
CASES: list[tuple[str, dict[str, str], Callable[[str], Any], bool]] = [
    ("a start", START, start({"task": 3, "seed": 11}), True),
    ("a start by task id", START, start({"task": "hard-1"}, rid="s-2"), True),
    ("a start by difficulty", START, start({"difficulty": "easy"}), True),
    ("a start with the envelope only", START, start({}), True),
    ("a start with an extra member and an Mcp-Name", {**START, "Mcp-Name": "x"}, start({"foo": 1}), True),
    ("a start of an unknown task", START, start({"task": 999}), True),
    ("a start of a task id nobody has", START, start({"task": "no-such-task"}), True),
    ("a start with a bad difficulty", START, start({"difficulty": "impossible"}), False),
    ("a start with a seed that is text", START, start({"seed": "x"}), False),
    ("a start without client capabilities", START,
     lambda h: {**start({})(h), "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": VERSION}}}, False),
    ("a start under another Mcp-Method", {"Mcp-Method": "tools/call"}, start({}), False),
    ("a start without params", START, lambda h: {k: v for k, v in start({})(h).items() if k != "params"}, False),
    ("a good call", {"Mcp-Name": "Height"}, tool_call("Height", {"position": 3}), True),
    ("a string id", {"Mcp-Name": "Height"}, tool_call("Height", {"position": 4}, rid="req-7"), True),
    ("client info in _meta", {"Mcp-Name": "Observe"},
     tool_call("Observe", {}, meta={"io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}), True),
    ("no arguments member", {"Mcp-Name": "Observe"}, tool_call("Observe"), True),
    ("an argument of the wrong type", {"Mcp-Name": "Height"}, tool_call("Height", {"position": "x"}), True),
    ("a missing argument", {"Mcp-Name": "Height"}, tool_call("Height", {}), True),
    ("an unknown tool", {"Mcp-Name": "Fly"}, tool_call("Fly", {"to": "é ✓"}), True),
    ("an unknown episode", {"Mcp-Name": "Height"},
     lambda h: tool_call("Height", {"position": 1}, meta={EPISODE_META_KEY: "no-such-episode"})(h), True),
    ("Mcp-Name disagrees with the body", {"Mcp-Name": "Observe"}, tool_call("Height", {"position": 1}), False),
    ("no Mcp-Name", {}, tool_call("Height", {"position": 1}), False),
    ("arguments that are a list", {"Mcp-Name": "Height"}, tool_call("Height", [1]), False),
    ("a name that is not a string", {"Mcp-Name": "7"}, tool_call(7, {}), False),
    ("no client capabilities", {"Mcp-Name": "Height"},
     lambda h: {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
         "name": "Height", "arguments": {"position": 1},
         "_meta": {"io.modelcontextprotocol/protocolVersion": VERSION, EPISODE_META_KEY: h}}}, False),
    ("bad client capabilities", {"Mcp-Name": "Height"},
     tool_call("Height", {"position": 1}, meta={"io.modelcontextprotocol/clientCapabilities": 5}), False),
    ("a handle that is not a string", {"Mcp-Name": "Height"},
     lambda h: tool_call("Height", {"position": 1}, meta={EPISODE_META_KEY: 42})(h), False),
    ("no handle", {"Mcp-Name": "Height"}, tool_call("Height", {"position": 1}, handle=False), False),
    ("an extra params member", {"Mcp-Name": "Height"}, tool_call("Height", {"position": 1}, task={"ttl": 5}), False),
    ("a float id", {"Mcp-Name": "Height"}, tool_call("Height", {"position": 1}, rid=1.5), False),
    ("a boolean id", {"Mcp-Name": "Height"}, tool_call("Height", {"position": 1}, rid=True), False),
    ("a null id", {"Mcp-Name": "Height"}, tool_call("Height", {"position": 1}, rid=None), False),
    ("a notification", {"Mcp-Name": "Height"},
     lambda h: {k: v for k, v in tool_call("Height", {"position": 1})(h).items() if k != "id"}, False),
    ("a batch", {"Mcp-Name": "Height"}, lambda h: [tool_call("Height", {"position": 1})(h)], False),
    ("jsonrpc 1.0", {"Mcp-Name": "Height"}, lambda h: {**tool_call("Height", {"position": 1})(h), "jsonrpc": "1.0"},
     False),
    ("broken JSON", {"Mcp-Name": "Height"}, lambda h: b'{"jsonrpc": "2.0", "id": 1,', False),
    ("JSON nested past the parser's depth", {"Mcp-Name": "Height"},
     lambda h: json.dumps(tool_call("Height", {"position": 1}, meta={"x": "DEEP"})(h)).encode().replace(
         b'"DEEP"', b"[" * 100_000 + b"]" * 100_000), False),
    ("a body version unlike the header", {"Mcp-Name": "Height"},
     tool_call("Height", {"position": 1}, meta={"io.modelcontextprotocol/protocolVersion": "2025-06-18"}), False),
    ("an unsupported version", {"Mcp-Name": "Height", "MCP-Protocol-Version": "2099-01-01"},
     tool_call("Height", {"position": 1}, meta={"io.modelcontextprotocol/protocolVersion": "2099-01-01"}), False),
    ("text/plain", {"Mcp-Name": "Height", "Content-Type": "text/plain"}, tool_call("Height", {"position": 1}), False),
    ("Accept without JSON", {"Mcp-Name": "Height", "Accept": "text/event-stream"},
     tool_call("Height", {"position": 1}), False),
    ("a foreign Host", {"Mcp-Name": "Height", "Host": "evil.example:80"}, tool_call("Height", {"position": 1}), False),
    ("a foreign Origin", {"Mcp-Name": "Height", "Origin": "http://evil.example"},
     tool_call("Height", {"position": 1}), False),
    ("an Mcp-Param header", {"Mcp-Name": "Height", "Mcp-Param-Position": "2"}, tool_call("Height", {"position": 1}),
     False),
    ("Done with a wrong answer", {"Mcp-Name": "Done"}, tool_call("Done", {"answer": -1}), True),
    ("a call after the end", {"Mcp-Name": "Height"}, tool_call("Height", {"position": 2}), True),
]


@pytest.fixture
def bank() -> Bank:
    return Bank.open()


async def start_twin(http: httpx.AsyncClient, url: str) -> str:
    r = await http.post(url, headers={**HEADERS, "Mcp-Method": "codegym/episodes/start"}, json={
        "jsonrpc": "2.0", "id": 0, "method": "codegym/episodes/start",
        "params": {"task": 3, "seed": 11, "_meta": ENVELOPE}})
    assert r.status_code == 200, r.text
    return r.json()["result"]["episode"]


async def play(http: httpx.AsyncClient, url: str, handle: str) -> list[tuple[int, str, Any]]:
    answers = []
    for what, headers, body, _ in CASES:
        built = body(handle)
        content = built if isinstance(built, bytes) else json.dumps(built).encode()
        r = await http.post(url, headers={**HEADERS, **headers}, content=content)
        # the handles and the one-off episode URL suggested to a handle-less client differ between the servers
        text = re.sub(r"http://[^ ]+/mcp/[\w-]+ ", "<url> ", r.text.replace(handle, "<episode>"))
        text = re.sub(r'"episode":"[^"]+"', '"episode":"<new>"', text)
        kind = r.headers.get("content-type", "")
        answers.append((r.status_code, kind, json.loads(text) if kind == "application/json" else text))
        assert r.status_code < 500, f"{what}: {r.status_code} {r.text}"
    return answers


async def hot_counts(http: httpx.AsyncClient, base: str) -> tuple[float, float]:
    """(tool calls, starts) the hot path answered."""
    samples = prometheus_samples((await http.get(f"{base}/metrics")).text)
    return samples[HOT_CALLS], samples[HOT_STARTS]


async def test_hot_path_answers_as_the_sdk_does(bank: Bank) -> None:
    hot = HttpService(bank, gyms=[GYM], workers=1, limits=SandboxLimits(time_s=5.0))
    sdk = HttpService(bank, gyms=[GYM], workers=1, limits=SandboxLimits(time_s=5.0), hot_path=False)
    async with running_http(hot) as hot_base, running_http(sdk) as sdk_base, httpx.AsyncClient(timeout=30) as http:
        results = {}
        for base in (hot_base, sdk_base):
            url = f"{base}/gyms/{GYM}/mcp"
            results[base] = await play(http, url, await start_twin(http, url))
        for (what, *_), mine, theirs in zip(CASES, results[hot_base], results[sdk_base], strict=True):
            assert mine == theirs, f"{what}: the hot path answered\n{mine}\nthe SDK answered\n{theirs}"
        starts = sum(1 for _, headers, _, taken in CASES if taken and headers.get("Mcp-Method") == START["Mcp-Method"])
        calls = sum(1 for *_, taken in CASES if taken) - starts
        assert await hot_counts(http, hot_base) == (calls, starts + 1)  # + the twin episode's own start
        assert await hot_counts(http, sdk_base) == (0, 0)
    # the answers are the real thing, not two copies of one error
    answers = dict(zip((c[0] for c in CASES), results[hot_base], strict=True))
    assert answers["a start"][2]["result"]["taskIndex"] == 3 and answers["a start"][2]["result"]["seed"] == 11
    assert answers["a start of an unknown task"][2]["error"]["data"]["kind"] == "unknown_task"
    outcomes = [a[2]["result"]["structuredContent"] for a, c in zip(results[hot_base], CASES)
                if c[3] and c[1].get("Mcp-Method") != START["Mcp-Method"]]
    assert outcomes[0]["error"] is None and outcomes[0]["observation"].lstrip("-").isdigit()
    assert outcomes[-2]["done"] and outcomes[-1]["error"] == "episode_over"


async def test_the_official_client_takes_the_hot_path(bank: Bank) -> None:
    service = HttpService(bank, gyms=[GYM], workers=1, limits=SandboxLimits(time_s=5.0))
    async with running_http(service) as base, httpx.AsyncClient() as http:
        url = f"{base}/gyms/{GYM}/mcp"
        async with connect(url) as gym:  # the mcp SDK's Client, 2026-07-28
            async with await gym.start(task="easy-0") as ep:
                first = await ep.call("Observe")
                final = await ep.play_oracle()
        assert first.error is None and final.done and final.reward == 1.0
        assert await hot_counts(http, base) == (final.steps, 1)
        async with connect(url, mode="legacy") as gym:  # the handshake era: a session, the SDK's path
            async with await gym.start(task="easy-0") as ep:
                assert (await ep.call("Observe")).error is None
        assert await hot_counts(http, base) == (final.steps, 1)


async def test_a_slow_body_and_concurrent_calls(bank: Bank) -> None:
    """A body that arrives in pieces is still read whole; calls on many episodes at once all answer."""
    service = HttpService(bank, gyms=[GYM], workers=2, limits=SandboxLimits(time_s=5.0))
    async with running_http(service) as base, httpx.AsyncClient(timeout=30) as http:
        url = f"{base}/gyms/{GYM}/mcp"
        handles = [await start_twin(http, url) for _ in range(20)]
        whole = json.dumps(tool_call("Height", {"position": 5})(handles[0])).encode()

        async def pieces():  # httpx sends this with chunked transfer encoding: the SDK's path
            for i in range(0, len(whole), 7):
                yield whole[i:i + 7]

        r = await http.post(url, headers={**HEADERS, "Mcp-Name": "Height"}, content=pieces())
        assert r.status_code == 200 and r.json()["result"]["structuredContent"]["steps"] == 1
        answers: dict[str, Any] = {}

        async def one(handle: str) -> None:
            r = await http.post(url, headers={**HEADERS, "Mcp-Name": "Height"},
                                json=tool_call("Height", {"position": 5})(handle))
            answers[handle] = r.json()["result"]

        async with anyio.create_task_group() as tg:
            for handle in handles:
                tg.start_soon(one, handle)
        assert {a["_meta"][EPISODE_META_KEY] for a in answers.values()} == set(handles)
        observations = {a["structuredContent"]["observation"] for a in answers.values()}
        assert len(observations) == 1  # twins: the same task and seed give the same height
        assert await hot_counts(http, base) == (len(handles), len(handles))


def test_no_hot_path_flag(bank: Bank) -> None:
    """``codegym serve --http --no-hot-path`` builds a service without the hot path; it is on by default."""
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert http_service(parser.parse_args(["--http"]), bank).hot_path
    assert not http_service(parser.parse_args(["--http", "--no-hot-path"]), bank).hot_path
