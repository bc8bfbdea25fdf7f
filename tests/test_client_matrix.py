"""MCP clients nobody here wrote, each playing a whole episode to reward 1 against ``codegym serve`` (stdio)
and ``codegym serve --http``, with only what that client can send (see tests/client_matrix.py):

- the official MCP Python SDK ``Client``, default mode (2026-07-28 when offered) and ``mode="legacy"``;
- fastmcp's ``Client`` and its CLI (in .venv/fastmcp, ``make fastmcp``);
- the official TypeScript SDK 1.x and the v2 client with ``versionNegotiation: {mode: "auto"}``, and the
  MCP Inspector CLI, under Node.js (tests/clients, ``make node-clients``: pinned, package-lock.json);
- ``codegym install claude-desktop`` into a temporary config, then the Inspector CLI started from that
  config, as Claude Desktop starts it, with a PATH that does not hold the venv;
- two and three plain clients at once on one HTTP endpoint, each seeing only its own episode.

A client that is not installed fails the test under CI (``CI=true``) and is skipped elsewhere, saying so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from client_matrix import (
    BAD_CALLS,
    GYM,
    NODE_CLIENTS,
    REPO,
    check,
    check_short,
    missing_client,
    node,
    oracle_calls,
    python_sdk_transcript,
    script,
    short_script,
)
from mcp import Client, StdioServerParameters
from server_support import SERVER, have_codegym_script, spawn_http

from mcp_gyms.bank import Bank

FASTMCP_PYTHON = REPO / ".venv" / "fastmcp" / "bin" / "python"
INSPECTOR = NODE_CLIENTS / "node_modules" / "@modelcontextprotocol" / "inspector-cli" / "build"
STDIO = {"command": SERVER[0], "args": [*SERVER[1:], GYM]}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    """A real ``python -m mcp_gyms.server --http`` serving the gym; its base URL. Two server processes
    (``--procs 2``): every client here talks to the first, and must notice no difference."""
    proc, url = spawn_http("--workers", "2", "--procs", "2", GYM)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def episode_url(base: str, name: str) -> str:
    return f"{base}/gyms/{GYM}/mcp/{name}"


def run_json(argv: list[str], *, cwd: Path = REPO, env: dict[str, str] | None = None) -> Any:
    """Run a client process; its stdout's JSON (the last JSON document in it)."""
    out = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=180, env=env or os.environ.copy(),
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"{argv[:3]} failed ({out.returncode}): {out.stderr[-3000:]}"
    start = out.stdout.find("{")
    assert start >= 0, f"no JSON from {argv[:3]}: {out.stdout[-2000:]} {out.stderr[-2000:]}"
    return json.loads(out.stdout[start:])


def script_file(tmp_path: Path, target: dict[str, Any]) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"target": target, "calls": script()}))
    return str(path)


# --- the official Python SDK ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_python_sdk_client_over_stdio(bank: Bank, mode: str) -> None:
    check(await python_sdk_transcript(StdioServerParameters(**STDIO), mode), bank)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_python_sdk_client_over_http(base: str, bank: Bank, mode: str) -> None:
    check(await python_sdk_transcript(episode_url(base, f"py-{mode}"), mode), bank)


async def test_bare_url_error_names_the_url_to_use(base: str, bank: Bank) -> None:
    async with Client(f"{base}/gyms/{GYM}/mcp") as client:  # 2026-07-28, no handle, no session
        tools = [t.name for t in (await client.list_tools()).tools]
        assert "StartTask" not in tools
        refused = await client.call_tool("Observe", {})
    assert refused.is_error and refused.structured_content["error"] == "no_episode"
    text = refused.content[0].text
    urls = re.findall(rf"{re.escape(base)}/gyms/{GYM}/mcp/[A-Za-z0-9_.~-]+", text)
    assert urls, text
    check(await python_sdk_transcript(urls[0], "auto"), bank)  # the URL it names works as told


# --- fastmcp -------------------------------------------------------------------------------------
def _fastmcp_python() -> str:
    if not FASTMCP_PYTHON.exists():
        missing_client("fastmcp", "`make fastmcp`")
    return str(FASTMCP_PYTHON)


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_fastmcp_client(base: str, bank: Bank, tmp_path: Path, transport: str) -> None:
    target = STDIO if transport == "stdio" else {"url": episode_url(base, "fastmcp-client")}
    python = _fastmcp_python()
    check(run_json([python, str(NODE_CLIENTS / "fastmcp_play.py"), script_file(tmp_path, target)]), bank)


def test_fastmcp_cli_over_http(base: str, bank: Bank) -> None:
    """One ``fastmcp call`` per call, as from a shell: the URL keeps the episode between processes."""
    fastmcp = Path(_fastmcp_python()).parent / "fastmcp"
    url = episode_url(base, "fastmcp-cli")
    env = {**os.environ, "NO_COLOR": "1", "FASTMCP_LOG_LEVEL": "ERROR"}

    def call(name: str, arguments: dict[str, Any]) -> subprocess.Popen[str]:
        return subprocess.Popen([str(fastmcp), "call", url, "--target", name, "--input-json", json.dumps(arguments),
                                 "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL)

    def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
        out, err = proc.communicate(timeout=120)
        if not out.startswith("{"):  # the CLI refused the call itself (it checks names and required
            assert proc.returncode != 0  # arguments against the listing before sending)
            return {"isError": True, "text": out + err, "client": True}
        r = json.loads(out)
        assert (proc.returncode != 0) == r["is_error"], err
        return {"isError": r["is_error"], "text": r["content"][0]["text"], "structured": r["structured_content"]}

    listed = run_json([str(fastmcp), "list", url, "--json"], env=env)
    assert [t["name"] for t in listed["tools"]] == [t.name for t in bank.gym(GYM).tools] + ["StartTask"]
    bad = [call(name, arguments) for name, arguments, _, _ in BAD_CALLS]  # at once: they change nothing
    for proc, (_, _, server_words, client_words) in zip(bad, BAD_CALLS):
        r = result(proc)
        assert r["isError"] and (client_words if r.get("client") else server_words) in r["text"], r
    check_short([result(call(c["name"], c["arguments"])) for c in short_script(bank)])


# --- the official TypeScript SDK (1.x and v2) ------------------------------------------------------
def _node_client(package: str) -> str:
    exe = node()
    if not (NODE_CLIENTS / "node_modules" / package / "package.json").exists():
        missing_client(package, "`make node-clients` installs tests/clients with npm")
    return exe


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("sdk, package", [("v1", "@modelcontextprotocol/sdk"), ("v2", "@modelcontextprotocol/client")])
def test_typescript_sdk(base: str, bank: Bank, tmp_path: Path, sdk: str, package: str, transport: str) -> None:
    exe = _node_client(package)
    target = STDIO if transport == "stdio" else {"url": episode_url(base, f"ts-{sdk}")}
    transcript = run_json([exe, str(NODE_CLIENTS / "play.mjs"), sdk, script_file(tmp_path, target)],
                          cwd=NODE_CLIENTS)
    check(transcript, bank)
    if sdk == "v2":  # version negotiation on: it speaks the current revision with this server
        assert transcript["protocol"] == "2026-07-28"


# --- the MCP Inspector CLI -------------------------------------------------------------------------
def inspector(*args: str, env: dict[str, str] | None = None) -> Any:
    """``mcp-inspector-cli --cli ARGS`` as a person runs it; its JSON answer. (Run from its own folder:
    1.0.3 finds its package.json relative to the working directory.)"""
    exe = _node_client("@modelcontextprotocol/inspector-cli")
    return run_json([exe, str(INSPECTOR / "cli.js"), *args], cwd=INSPECTOR, env=env)


def inspector_call(target: list[str], call: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    args = [f"{k}={json.dumps(v)}" for k, v in call["arguments"].items()]
    r = inspector(*target, "--method", "tools/call", "--tool-name", call["name"],
                  *(["--tool-arg", *args] if args else []), env=env)
    return {"name": call["name"], "isError": bool(r.get("isError")), "text": r["content"][0]["text"],
            "structured": r.get("structuredContent")}


def test_inspector_cli_over_http(base: str, bank: Bank) -> None:
    """One Inspector run per call, as from a shell: the URL keeps the episode between processes."""
    target = ["--cli", episode_url(base, "inspector"), "--transport", "http"]
    tools = [t["name"] for t in inspector(*target, "--method", "tools/list")["tools"]]
    assert tools == [t.name for t in bank.gym(GYM).tools] + ["StartTask"]
    check_short([inspector_call(target, call) for call in short_script(bank)])


def _stdio_session(bank: Bank, target: list[str], env: dict[str, str] | None = None) -> None:
    """Per-invocation stdio (each Inspector run starts its own server, so its own episode): the tool
    list, each bad call, and a one-call episode to reward 1 (Done with task 0's answer)."""
    calls = [{"name": name, "arguments": arguments} for name, arguments, _, _ in BAD_CALLS]
    calls.append({"name": "Done", "arguments": {"answer": bank.tasks(GYM)[0].answer}})
    with ThreadPoolExecutor(len(calls) + 1) as runs:  # independent processes: all at once
        listed = runs.submit(inspector, *target, "--method", "tools/list", env=env)
        *bad, done = runs.map(lambda call: inspector_call(target, call, env), calls)
        tools = [t["name"] for t in listed.result()["tools"]]
    assert tools == [t.name for t in bank.gym(GYM).tools] + ["StartTask"]
    for r, (_, _, words, _) in zip(bad, BAD_CALLS):
        assert r["isError"] and words in r["text"], r
    assert not done["isError"] and done["structured"]["reward"] == 1.0 and done["structured"]["done"], done


def test_inspector_cli_over_stdio(bank: Bank) -> None:
    _stdio_session(bank, ["--cli", *SERVER, GYM])


def test_claude_desktop_install_then_inspector_from_that_config(bank: Bank, tmp_path: Path) -> None:
    """``codegym install claude-desktop`` into a config, then the Inspector starts the server from that
    config with a PATH that has node but not the venv (as a desktop host does)."""
    codegym = have_codegym_script()
    if codegym is None:
        missing_client("the codegym console script", "`make install`")
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(json.dumps({"mcpServers": {"other": {"command": "other-server"}}, "theme": "dark"}))
    out = subprocess.run([codegym, "install", "claude-desktop", GYM, "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    written = json.loads(config.read_text())
    assert written["theme"] == "dark" and written["mcpServers"]["other"] == {"command": "other-server"}
    entry = written["mcpServers"][f"codegym-{GYM}"]
    assert Path(entry["command"]).is_absolute() and entry["args"][:2] == ["serve", GYM]
    path = os.pathsep.join([str(Path(node()).parent), "/usr/bin", "/bin"])
    assert shutil.which("codegym", path=path) is None and Path(sys.executable).parent.as_posix() not in path
    env = {"PATH": path, "HOME": str(tmp_path)}
    _stdio_session(bank, ["--config", str(config), "--server", f"codegym-{GYM}", "--cli"], env)


# --- plain clients at once on one endpoint ------------------------------------------------------------
@pytest.mark.parametrize("clients", [2, 3])
async def test_concurrent_plain_clients_never_mix(base: str, bank: Bank, clients: int) -> None:
    """Each client plays its own task's oracle, interleaved with the others, on its own episode URL (the
    third, on the handshake revision, on the bare URL: its session's episode). Every step count and the
    final rewards show that no call landed in another's episode."""
    tasks = bank.tasks(GYM)
    plans = {i: oracle_calls(i) for i in range(clients)}
    seen: dict[int, list[dict[str, Any]]] = {}

    async def play(i: int) -> None:
        url, mode = (episode_url(base, f"together-{clients}-{i}"), "auto") if i < 2 else (
            f"{base}/gyms/{GYM}/mcp", "legacy")
        async with Client(url, mode=mode) as client:
            started = await client.call_tool("StartTask", {"task": i})
            assert started.structured_content["taskId"] == tasks[i].id
            seen[i] = []
            for call in plans[i]:
                r = await client.call_tool(call["name"], call["arguments"])
                seen[i].append(r.structured_content)
                await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        for i in range(clients):
            tg.start_soon(play, i)
    for i in range(clients):
        assert [s["steps"] for s in seen[i]] == list(range(1, len(plans[i]) + 1))
        assert all(s["error"] is None for s in seen[i])
        assert seen[i][-1]["done"] and seen[i][-1]["reward"] == 1.0
