"""One gym, one MCP server over stdio, as real subprocesses (``python -m mcp_gyms.server`` and ``codegym serve``).

Covers: the shared client end to end, a handle-less client as Claude Desktop drives it (implicit
episode, StartTask, prompt, resources), malformed JSON-RPC on the wire, start-up errors, and shutdown
on EOF and on SIGTERM leaving no sandbox worker behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import anyio
import pytest
from mcp import Client, StdioServerParameters
from server_support import REPO, SERVER, alive, descendants, have_codegym_script, wait_gone

from mcp_gyms.bank import Bank
from mcp_gyms.client import connect
from mcp_gyms.protocol import CONTROL_META_KEY, START_TOOL

GYM = "mountain_peak"


def lengths(bank: Bank) -> list[int]:
    return [len(t.config["heights"]) for t in bank.tasks(GYM)]


async def test_stdio_client_end_to_end(bank: Bank) -> None:
    record = bank.gym(GYM)
    async with connect([*SERVER, GYM]) as gym:
        tools = await gym.list_tools()
        assert [t.name for t in tools] == [t.name for t in record.tools]
        assert [t.input_schema for t in tools] == [t.input_schema for t in record.tools]
        controls = await gym.list_tools(include_controls=True)
        assert [t.name for t in controls][-1] == START_TOOL
        # two explicit episodes in one process never see each other's state
        a, b = await gym.start(task="easy-1"), await gym.start(task="hard-2", seed=3)
        assert (await a.call("Height", position=0)).steps == 1
        observed = await b.call("Observe")
        assert f"{lengths(bank)[10]} positions" in observed.observation and "none" in observed.observation
        assert (await a.call("Height", position="0")).error == "invalid_arguments"
        assert (await a.call("Nope")).error == "unknown_tool"
        assert (await a.call("Height", position=10**9)).error == "tool_error"
        big = await a.call("Height", position="y" * 1_000_000)
        assert big.error == "invalid_arguments" and a.steps == 5
        final = await b.play_oracle()
        assert final.reward == 1.0 and final.done
        assert (await a.play_oracle()).reward == 1.0
        assert (await a.call("Observe")).error == "episode_over"


async def test_stdio_handleless_client_like_claude_desktop(bank: Bank) -> None:
    """The codegym console script, driven as Claude Desktop drives it: handshake, no handles."""
    script = have_codegym_script()
    command = [script, "serve"] if script else [*SERVER]
    params = StdioServerParameters(command=command[0], args=[*command[1:], GYM, "--task", "easy-1"], cwd=str(REPO))
    async with Client(params, mode="legacy") as client:
        listed = (await client.list_tools()).tools
        assert [t.name for t in listed][-1] == START_TOOL
        assert (listed[-1].meta or {}).get(CONTROL_META_KEY) is True
        assert all(t.output_schema for t in listed[:-1])
        # the implicit episode is on the start-up task
        r = await client.call_tool("Observe", {})
        assert not r.is_error and f"{lengths(bank)[1]} positions" in r.content[0].text
        assert r.structured_content["steps"] == 1
        r = await client.call_tool("Height", {"position": "three"})
        assert r.is_error and "position" in r.content[0].text and r.structured_content["error"] == "invalid_arguments"
        # pick another task; Done; the episode is over until StartTask
        r = await client.call_tool(START_TOOL, {"difficulty": "hard"})
        assert not r.is_error and r.structured_content["taskId"] == "hard-0"
        assert "Started task hard-0" in r.content[0].text and bank.gym(GYM).task_text in r.content[0].text
        answer = bank.tasks(GYM)[8].answer
        r = await client.call_tool("Done", {"answer": answer})
        assert r.structured_content == {"observation": "Answer correct. reward=1", "reward": 1.0, "done": True,
                                        "terminated": True, "truncated": False, "steps": 1, "error": None}
        r = await client.call_tool("Observe", {})
        assert r.is_error and START_TOOL in r.content[0].text
        r = await client.call_tool(START_TOOL, {})  # restart the same task
        assert r.structured_content["taskId"] == "hard-0"
        assert (await client.call_tool("Observe", {})).structured_content["steps"] == 1
        r = await client.call_tool(START_TOOL, {"task": "nope"})
        assert r.is_error and "no task 'nope'" in r.content[0].text
        r = await client.call_tool(START_TOOL, {"seed": "1"})
        assert r.is_error and "seed" in r.content[0].text
        # the task as a prompt and as resources
        prompts = (await client.list_prompts()).prompts
        assert [p.name for p in prompts] == ["task"]
        prompt = await client.get_prompt("task")
        assert bank.gym(GYM).task_text in prompt.messages[0].content.text
        uris = [str(r.uri) for r in (await client.list_resources()).resources]
        assert uris == [f"codegym://{GYM}/task", f"codegym://{GYM}/tasks"]
        text = (await client.read_resource(f"codegym://{GYM}/task")).contents[0].text
        assert text == bank.gym(GYM).task_text
        rows = json.loads((await client.read_resource(f"codegym://{GYM}/tasks")).contents[0].text)
        assert [r["id"] for r in rows] == [t.id for t in bank.tasks(GYM)] and "config" not in rows[0]


def _rpc(proc: subprocess.Popen[bytes], line: bytes) -> dict:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + b"\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def test_stdio_malformed_json_rpc_and_clean_exit() -> None:
    proc = subprocess.Popen([*SERVER, GYM], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        bad = _rpc(proc, b"{this is not json")
        assert bad["error"]["code"] == -32700 and bad["id"] is None  # parse error, and the server lives on
        bad = _rpc(proc, b'{"jsonrpc": "2.0", "id": 7, "method": 42}')
        assert "error" in bad
        init = _rpc(proc, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}).encode())
        assert init["result"]["serverInfo"]["name"] == f"codegym-{GYM}"
        proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        for rid, params in enumerate(({"name": "Height", "arguments": [1, 2]}, {"name": 42, "arguments": {}},
                                      {"name": "Height", "arguments": "position=1"}), start=2):
            reply = _rpc(proc, json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                                           "params": params}).encode())
            assert reply["id"] == rid and reply["result"]["isError"] is True, reply
        reply = _rpc(proc, b'{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "Observe"}}')
        assert reply["result"]["structuredContent"]["steps"] == 4  # the bad calls counted, the server serves on
        workers = descendants(proc.pid)
        assert workers, "the sandbox worker should be running"
        proc.stdin.close()  # EOF: the server stops and takes its workers with it
        assert proc.wait(timeout=20) == 0
        assert wait_gone(workers) == []
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stdio_signal_leaves_no_workers(sig: signal.Signals) -> None:
    proc = subprocess.Popen([*SERVER, GYM, "--workers", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        init = _rpc(proc, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}).encode())
        assert "result" in init
        assert "result" in _rpc(proc, b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"Observe"}}')
        workers = descendants(proc.pid)
        assert workers
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
        assert wait_gone(workers) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stdio_start_up_errors() -> None:
    cases = (([], "name a GYM"), (["no_such_gym"], "no gym 'no_such_gym'"), ([GYM, "--task", "99"], "no task #99"),
             ([GYM, "--difficulty", "hard", "--task", "x"], "no task 'x'"), ([GYM, "--bank", "/nonexistent"], "not a bank"))
    procs = [subprocess.Popen([*SERVER, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO) for args, _ in cases]
    for proc, (args, expected) in zip(procs, cases):
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 2 and expected in stderr, (args, stderr)


async def test_in_process_server_object(bank: Bank) -> None:
    """The same server as an in-process object: what an evaluator embeds without a subprocess."""
    from mcp_gyms.gym_server import open_gym_server

    async with open_gym_server(bank, GYM) as server, connect(server) as gym:
        eps = [await gym.start(task=i) for i in range(4)]
        with anyio.fail_after(30):
            results = [await ep.play_oracle() for ep in eps]
        assert [r.reward for r in results] == [1.0] * 4


def test_python_m_help() -> None:
    done = subprocess.run([sys.executable, "-m", "mcp_gyms.server", "--help"], capture_output=True, text=True,
                          timeout=30, cwd=REPO)
    assert done.returncode == 0
    for option in ("--bank", "--task", "--difficulty", "--seed", "--http", "--host", "--port", "--token",
                   "--workers", "--max-episodes", "--idle-timeout", "--time-limit"):
        assert option in done.stdout
    assert alive(1)  # sanity of the /proc helper
