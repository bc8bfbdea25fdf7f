"""An MCP client written by others: the fastmcp CLI (``make test`` installs it in .venv/fastmcp).

It lists a bundled gym's tools and calls Observe, a wrong call and StartTask over stdio (its own
subprocess of ``python -m mcp_gyms.server``, handle-less: the implicit episode), and lists the tools of
an HTTP endpoint, where a handle-less call on the bare URL gets a ``no_episode`` error naming an episode
URL, and calls on an episode URL (``/gyms/{gym}/mcp/{name}``) share one episode between processes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess

import pytest
from client_matrix import missing_client
from server_support import REPO, SERVER, spawn_http

from mcp_gyms.bank import Bank

GYM = "mountain_peak"


def _fastmcp() -> str | None:
    for candidate in (os.environ.get("CODEGYM_FASTMCP"), str(REPO / ".venv" / "fastmcp" / "bin" / "fastmcp")):
        if candidate and os.path.exists(candidate):
            return candidate
    return shutil.which("fastmcp")


FASTMCP = _fastmcp()


@pytest.fixture(autouse=True)
def _installed() -> None:
    if FASTMCP is None:
        missing_client("the fastmcp CLI", "`make fastmcp`")  # fails under CI=true


def fastmcp_all(*runs: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """Run several fastmcp commands at once; (exit code, stdout, stderr) of each."""
    assert FASTMCP is not None
    env = {**os.environ, "NO_COLOR": "1", "FASTMCP_LOG_LEVEL": "ERROR"}
    procs = [subprocess.Popen([FASTMCP, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=REPO) for args in runs]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out, err))
    return results


def fastmcp(*args: str) -> tuple[int, str, str]:
    return fastmcp_all(args)[0]


def command(*extra: str) -> str:
    return shlex.join([*SERVER, GYM, *extra])


def test_fastmcp_over_stdio(bank: Bank) -> None:
    tasks = bank.tasks(GYM)
    listed, observed, wrong, started, done = fastmcp_all(
        ("list", "--command", command(), "--json"),
        ("call", "--command", command("--task", "hard-1"), "--target", "Observe", "--json"),
        ("call", "--command", command(), "--target", "Height", "--input-json", '{"position": "x"}', "--json"),
        ("call", "--command", command(), "--target", "StartTask", "--input-json", '{"task": "medium-2"}', "--json"),
        ("call", "--command", command("--task", "easy-1"), "--target", "Done", "--input-json",
         json.dumps({"answer": tasks[1].answer}), "--json"),  # a one-call episode, to reward 1
    )
    rc, out, err = listed
    assert rc == 0, err
    tools = json.loads(out)["tools"]
    names = [t["name"] for t in tools]
    assert names == [t.name for t in bank.gym(GYM).tools] + ["StartTask"]
    assert tools[2]["inputSchema"]["properties"]["position"]["type"] == "integer"

    rc, out, err = observed
    assert rc == 0, err
    result = json.loads(out)
    assert result["is_error"] is False
    assert f"{len(tasks[9].config['heights'])} positions" in result["content"][0]["text"]
    assert result["structured_content"]["steps"] == 1 and result["structured_content"]["done"] is False

    rc, out, err = wrong
    result = json.loads(out)
    assert result["is_error"] is True and rc != 0
    assert result["structured_content"]["error"] == "invalid_arguments"
    assert "position" in result["content"][0]["text"]

    rc, out, err = started
    assert rc == 0, err
    assert json.loads(out)["structured_content"]["taskId"] == "medium-2"

    rc, out, err = done
    assert rc == 0, err
    assert json.loads(out)["structured_content"] == {**json.loads(out)["structured_content"], "done": True,
                                                     "reward": 1.0, "steps": 1}


def test_fastmcp_over_http() -> None:
    proc, base = spawn_http("--workers", "1", GYM)
    try:
        url = f"{base}/gyms/{GYM}/mcp"
        (rc, out, err), (_, called, _) = fastmcp_all(("list", url, "--json"),
                                                     ("call", url, "--target", "Observe", "--json"))
        assert rc == 0, err
        assert [t["name"] for t in json.loads(out)["tools"]] == ["Observe", "Length", "Height", "Rises", "Done"]
        result = json.loads(called)  # the bare URL has no episode for a handle-less 2026-07-28 client ...
        assert result["is_error"] is True and result["structured_content"]["error"] == "no_episode"
        assert f"{url}/" in result["content"][0]["text"]  # ... and says which URL has one
        mine = f"{url}/fastmcp"
        (_, first, _), = fastmcp_all(("call", mine, "--target", "Observe", "--json"))
        (_, second, _), = fastmcp_all(("call", mine, "--target", "Observe", "--json"))
        assert [json.loads(r)["structured_content"]["steps"] for r in (first, second)] == [1, 2]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
