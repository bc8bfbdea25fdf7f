"""The script every third-party MCP client plays in the client matrix, and what it must see (no tests here).

A client connects handle-less (no custom methods, only ``tools/list`` and ``tools/call``), so it lands in
the implicit episode: over stdio the process's, over HTTP the one named in the URL
(``/gyms/{gym}/mcp/{name}``). It makes three bad calls (unknown tool, wrong type, missing argument),
restarts with ``StartTask``, replays the verified oracle's calls of task 0 (got here through the
project's own client, ``codegym/oracle``), which must end with reward 1, makes a call after ``Done``,
and restarts once more: the server keeps serving.

A transcript is ``{"tools": [names], "results": [{"name", "isError", "text", "structured"}]}``.
"""

from __future__ import annotations

import functools
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_gyms.bank import Bank
from mcp_gyms.client import connect
from mcp_gyms.gym_server import open_gym_server

GYM = "mountain_peak"
REPO = Path(__file__).resolve().parent.parent
NODE_CLIENTS = REPO / "tests" / "clients"
#: (tool, arguments, words the server's error observation must contain, words a client's own refusal must
#: contain: some CLIs check calls against the listed schemas before sending them)
BAD_CALLS: list[tuple[str, dict[str, Any], str, str]] = [
    ("NoSuchTool", {}, "unknown tool 'NoSuchTool'", "NoSuchTool"),
    ("Height", {"position": "high"}, "argument 'position'", "position"),
    ("Height", {}, "missing required argument 'position'", "position"),
]


def missing_client(what: str, how: str) -> None:
    """A client that is not installed: fail under CI (CI=true), else skip, saying how to install it."""
    message = f"{what} is not installed ({how})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + "; CI must run the whole client matrix")
    pytest.skip(message)


def node() -> str:
    found = shutil.which("node")
    if found is None:
        missing_client("Node.js", "install Node.js 20 or later")
    return str(found)


@functools.cache
def oracle_calls(task: int = 0) -> list[dict[str, Any]]:
    """The verified oracle's calls for ``task`` of :data:`GYM` (its own seed)."""

    async def plan() -> list[dict[str, Any]]:
        async with open_gym_server(Bank.open(), GYM, workers=1) as server, connect(server) as gym:
            async with await gym.start(task=task) as ep:
                played = await ep.oracle_plan()
        assert played.reward == 1.0
        return [{"name": c.name, "arguments": c.arguments} for c in played.calls]

    with ThreadPoolExecutor(1) as thread:  # callable from sync tests and from inside an event loop
        return thread.submit(anyio.run, plan).result()


def script() -> list[dict[str, Any]]:
    """The calls a client makes, in order (see the module docstring)."""
    bad = [{"name": name, "arguments": args} for name, args, _, _ in BAD_CALLS]
    start = {"name": "StartTask", "arguments": {}}
    observe = {"name": "Observe", "arguments": {}}
    return [*bad, start, *oracle_calls(), observe, start, observe]


def check(transcript: dict[str, Any], bank: Bank) -> None:
    """Assert that a transcript of :func:`script` shows a whole episode to reward 1 and clear errors.

    A bad call the client refused itself (never sent) is marked ``"client": true``; its text is the
    client's own error, which must name the problem too."""
    assert transcript["tools"] == [t.name for t in bank.gym(GYM).tools] + ["StartTask"]
    results = transcript["results"]
    assert len(results) == len(script()), results
    assert all("exception" not in r for r in results), [r for r in results if "exception" in r]
    for r, (_, _, server_words, client_words) in zip(results, BAD_CALLS):
        assert r["isError"] and (client_words if r.get("client") else server_words) in r["text"], r
    started = results[len(BAD_CALLS)]
    assert not started["isError"] and started["structured"]["taskId"] == "easy-0", started
    played = results[len(BAD_CALLS) + 1: -3]
    assert all(not r["isError"] for r in played), played
    assert [r["structured"]["steps"] for r in played] == list(range(1, len(played) + 1))  # its own episode only
    final = played[-1]["structured"]
    assert final["done"] and final["reward"] == 1.0, final
    after, restarted, fresh = results[-3:]
    assert after["isError"] and "over" in after["text"] and "StartTask" in after["text"], after
    assert not restarted["isError"] and not fresh["isError"] and fresh["structured"]["steps"] == 1


def short_script(bank: Bank) -> list[dict[str, Any]]:
    """For clients that start a process per call (CLIs): restart, one look, the answer, one call too many.
    Each call is a new connection, so the step counts show the URL kept one episode between them."""
    return [{"name": "StartTask", "arguments": {}}, {"name": "Height", "arguments": {"position": 0}},
            {"name": "Done", "arguments": {"answer": bank.tasks(GYM)[0].answer}}, {"name": "Observe", "arguments": {}}]


def check_short(results: list[dict[str, Any]]) -> None:
    """Assert what :func:`short_script` must show: one episode across processes, ended with reward 1."""
    started, looked, done, after = results
    assert not started["isError"] and started["structured"]["taskId"] == "easy-0", started
    assert not looked["isError"] and looked["structured"]["steps"] == 1, looked
    assert done["structured"] == {**done["structured"], "steps": 2, "done": True, "reward": 1.0}, done
    assert after["isError"] and "over" in after["text"], after


async def python_sdk_transcript(target: Any, mode: str) -> dict[str, Any]:
    """Play :func:`script` with the official MCP Python SDK's ``Client`` (``mode``: "auto" or "legacy")."""
    from mcp import Client

    async with Client(target, mode=mode) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        results = []
        for call in script():
            r = await client.call_tool(call["name"], call["arguments"])
            text = r.content[0].text if r.content and hasattr(r.content[0], "text") else ""
            results.append({"name": call["name"], "isError": bool(r.is_error), "text": text,
                            "structured": r.structured_content})
    return {"tools": tools, "results": results}
