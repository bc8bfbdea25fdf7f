"""``codegym serve --http --procs N`` and ``--ready-file``, with real server processes.

Covers: two processes on two ports, each a full server (tools, an episode played to Done, its own episodes
and /metrics); the ready file (contents, atomic, removed on a clean stop); no orphans when the supervisor is
SIGKILLed; a port that cannot be bound, a server process that fails before it is ready, and one that dies
later: a clear error, a non-zero exit, no ready file, nothing left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_support import REPO, SERVER, descendants, spawn_http_ready, wait_gone

from mcp_gyms.client import connect
from mcp_gyms.ready import ReadyInfo

GYM = "mountain_peak"


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def two() -> Iterator[tuple[subprocess.Popen[str], ReadyInfo]]:
    proc, ready = spawn_http_ready("--procs", "2", "--workers", "2", GYM)
    try:
        yield proc, ready
    finally:
        _stop(proc)


def _calls(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "codegym_tool_calls":
            return family.samples[0].value
    raise AssertionError("no codegym_tool_calls_total in /metrics")


def test_ready_file_names_every_process(two) -> None:
    proc, ready = two
    assert ready.pid == proc.pid and len(ready.urls) == len(ready.ports) == len(ready.pids) == 2
    assert ready.url == ready.urls[0] and ready.port == ready.ports[0] and len(set(ready.ports)) == 2
    assert ready.urls == [f"http://127.0.0.1:{port}" for port in ready.ports]
    assert set(ready.pids) <= set(descendants(proc.pid))  # the server processes are the supervisor's children


async def test_each_process_is_a_full_server_with_its_own_episodes(two) -> None:
    _, ready = two
    handles = []
    for base in ready.urls:
        async with connect(f"{base}/gyms/{GYM}/mcp") as gym:
            names = [t.name for t in await gym.list_tools()]
            assert names[0] == "Observe" and names[-1] == "Done" and "Height" in names
            ep = await gym.start(task=0)
            assert (await ep.call("Height", position=0)).error is None
            assert (await ep.call("Done", answer=-1)).done
            handles.append((await gym.start(task=1)).handle)
    assert handles[0] != handles[1]
    # an episode lives in the process that started it: the other one does not know it
    async with connect(f"{ready.urls[1]}/gyms/{GYM}/mcp") as gym:
        assert (await gym.attach(handles[0]).call("Observe")).error == "unknown_episode"
        assert (await gym.attach(handles[1]).call("Observe")).error is None
    async with httpx.AsyncClient() as http:  # each process has its own counters
        before = [_calls((await http.get(f"{base}/metrics")).text) for base in ready.urls]
        async with connect(f"{ready.urls[0]}/gyms/{GYM}/mcp") as gym:
            await (await gym.start(task=0)).call("Observe")
        after = [_calls((await http.get(f"{base}/metrics")).text) for base in ready.urls]
        assert after[0] == before[0] + 1 and after[1] == before[1]
        for base in ready.urls:
            assert (await http.get(f"{base}/healthz")).json()["workers"] == 1  # --workers 2 shared out


def _served(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([*SERVER, "--http", "--workers", "1", *args, GYM], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, **(env or {})})


async def test_clean_stop_removes_the_ready_file_and_every_process(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready.json"
    proc = _served("--port", "0", "--procs", "2", "--ready-file", str(ready_file))
    try:
        with anyio.fail_after(60):
            while (ready := ReadyInfo.read(ready_file)) is None:
                assert proc.poll() is None, proc.communicate()[1]
                await anyio.sleep(0.05)
        async with connect(f"{ready.urls[1]}/gyms/{GYM}/mcp") as gym:  # so process 2 has sandbox workers
            await (await gym.start()).call("Observe")
        family = descendants(proc.pid)
        assert len(family) > 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not ready_file.exists() and wait_gone(family) == []
    finally:
        _stop(proc)


async def test_killing_the_supervisor_leaves_no_orphans(tmp_path: Path) -> None:
    proc, ready = spawn_http_ready("--procs", "2", "--workers", "1", GYM)
    try:
        for base in ready.urls:  # start sandbox workers under both server processes
            async with connect(f"{base}/gyms/{GYM}/mcp") as gym:
                await (await gym.start()).call("Observe")
        family = descendants(proc.pid)
        assert set(ready.pids) < set(family)
        proc.kill()
        proc.wait()
        assert wait_gone(family, timeout=30) == []
    finally:
        _stop(proc)


def _free_pair() -> tuple[int, socket.socket]:
    """A port P that is free now while P+1 is held by the socket returned (caller closes it)."""
    for _ in range(50):
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1] - 1
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
            return port, held
        held.close()
    raise AssertionError("no free port below a held one")


def test_a_port_that_cannot_be_bound_is_a_clear_error(tmp_path: Path) -> None:
    port, held = _free_pair()
    with held:
        ready_file = tmp_path / "ready.json"
        proc = _served("--port", str(port), "--procs", "2", "--ready-file", str(ready_file))
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert f"cannot listen on 127.0.0.1:{port + 1} (server process 2 of 2)" in err and "in use" in err
    assert not ready_file.exists()


def test_a_process_that_fails_to_start_stops_the_others(tmp_path: Path) -> None:
    # a real environment fault that only the server processes see (not the supervisor): their interpreter
    # exits at start-up, before it can serve
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""
        import os, sys
        if "CODEGYM_SERVE_PROCESS" in os.environ:
            sys.stderr.write("sitecustomize: this server process cannot start\\n")
            sys.stderr.flush()
            os._exit(3)
    """))
    ready_file = tmp_path / "ready.json"
    proc = _served("--port", "0", "--procs", "2", "--ready-file", str(ready_file),
                   env={"PYTHONPATH": str(site)})
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        _stop(proc)
    assert proc.returncode == 1, err
    assert "this server process cannot start" in err
    assert "exited with code 3 before it was ready" in err and "of 2 (port" in err
    assert not ready_file.exists() and not list(tmp_path.glob(".ready.json*"))


async def test_a_process_that_dies_later_stops_the_server(tmp_path: Path) -> None:
    proc, ready = spawn_http_ready("--procs", "2", "--workers", "1", GYM)
    try:
        family = descendants(proc.pid)
        os.kill(ready.pids[1], signal.SIGKILL)
        assert proc.wait(60) == 1
        assert f"(port {ready.ports[1]}, pid {ready.pids[1]}) exited with code -9" in proc.communicate()[1]
        assert wait_gone(family, timeout=30) == []
    finally:
        _stop(proc)


def test_ready_file_and_procs_need_http(tmp_path: Path) -> None:
    done = subprocess.run([*SERVER, GYM, "--ready-file", str(tmp_path / "r.json")], capture_output=True, text=True,
                          cwd=REPO, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "--ready-file and --procs are for --http" in done.stderr
    done = subprocess.run([*SERVER, "--http", "--ready-file", str(tmp_path / "no" / "r.json")], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert done.returncode == 2 and "its folder does not exist" in done.stderr


def test_ready_file_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "ready.json"
    assert ReadyInfo.read(target) is None
    info = ReadyInfo.of(["http://127.0.0.1:8000", "http://127.0.0.1:8001"], [11, 12])
    info.write(target)
    assert ReadyInfo.read(target) == info and info.ports == [8000, 8001] and info.pid == os.getpid()
    assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]  # no temporary file left behind
    inode = target.stat().st_ino  # a reader never sees a partial file: a rewrite is a new file renamed over it
    info.write(target)
    assert target.stat().st_ino != inode and ReadyInfo.read(target) == info


def test_rl_server_process_finds_every_url_through_the_ready_file() -> None:
    from rl.servers import GymServerProcess
    from rl.settings import ServerSettings

    server = GymServerProcess(ServerSettings(workers=2, procs=2, startup_timeout_s=120))
    assert server.command("/x/ready.json")[-4:] == ["--procs", "2", "--ready-file", "/x/ready.json"]
    with server:
        assert server.url == server.urls[0] and len(set(server.urls)) == 2
        assert all(httpx.get(f"{url}/healthz").json()["status"] == "ok" for url in server.urls)
        pid = server._proc.pid if server._proc else 0
        family = descendants(pid)
    assert len(family) >= 2 and wait_gone(family) == []
