"""Helpers shared by the serving tests (this module holds no tests of its own).

- :func:`running_http`: an :class:`~mcp_gyms.http_service.HttpService` under a real uvicorn on 127.0.0.1, a free port.
- :func:`spawn_http` / :func:`spawn_http_ready`: ``python -m mcp_gyms.server --http`` as a real subprocess,
  found through its ``--ready-file``; returns it and its base URL (or the whole ready file).
- :func:`sleepy_bank`: a temporary bank with one bundled gym and a test gym whose ``Sleep`` tool is slow.
- :func:`descendants` / :func:`alive`: process bookkeeping through /proc (no extra package).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import uvicorn
from conftest import gym_code
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import descendants, sandbox_workers  # noqa: F401 - re-exported for the server tests
from mcp_gyms.bank import Bank, GymRecord, Provenance, TaskRecord, default_bank_path
from mcp_gyms.http_service import HttpService, bind_socket
from mcp_gyms.ready import ReadyInfo

SERVER = [sys.executable, "-m", "mcp_gyms.server"]
REPO = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def running_http(service: HttpService) -> AsyncIterator[str]:
    """Serve ``service`` with uvicorn on a free loopback port; yield the base URL; stop gracefully."""
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(service.app(), log_level="warning", timeout_graceful_shutdown=3,
                                           lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        with anyio.fail_after(60):
            while not server.started:
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True


def sleepy_bank(root: Path) -> Bank:
    """A bank with ``mountain_peak`` (copied from the bundled bank) and ``sleepy`` (a ``Sleep(seconds)`` tool)."""
    bundled = Bank.open(default_bank_path())
    bank = Bank.create(root)
    bank.put_gym(bundled.gym("mountain_peak"), bundled.code("mountain_peak"), bundled.tasks("mountain_peak"))
    code = gym_code('''
        @tool
        def Sleep(self, seconds: float) -> str:
            """Sleep, then add one."""
            time.sleep(seconds)
            self.value += 1
            return f"slept {seconds}"
    ''')
    record = GymRecord(id="sleepy", title="Sleepy", class_name=code.class_name,
                       task_text="Find the value and submit it with Done.",
                       provenance=Provenance(source="tests"))
    bank.put_gym(record, code.code, [TaskRecord(id="t0", difficulty="easy", config={"value": 3}),
                                     TaskRecord(id="t1", difficulty="hard", config={"value": 9})])
    return bank


def spawn_http(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0,
               ) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m mcp_gyms.server --http --port 0 ARGS`` (``--procs 1`` unless ARGS say otherwise) and
    wait for its ready file. Returns the process (stderr piped) and its first base URL."""
    proc, ready = spawn_http_ready(*args, env=env, timeout=timeout)
    return proc, ready.url


def spawn_http_ready(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0,
                     ) -> tuple[subprocess.Popen[str], ReadyInfo]:
    """:func:`spawn_http`, returning the whole :class:`~mcp_gyms.ready.ReadyInfo` (every URL and pid)."""
    ready_dir = Path(tempfile.mkdtemp(prefix="codegym-ready-"))
    ready_file = ready_dir / "ready.json"
    procs = [] if "--procs" in args else ["--procs", "1"]
    proc = subprocess.Popen([*SERVER, "--http", "--port", "0", *procs, "--ready-file", str(ready_file), *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            ready = ReadyInfo.read(ready_file)
            if ready is not None:
                return proc, ready
            time.sleep(0.05)
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"the server did not start (exit code {proc.returncode}): {err}")
    finally:
        shutil.rmtree(ready_dir, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies count as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Wait until none of ``pids`` is alive; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def have_codegym_script() -> str | None:
    """The ``codegym`` console script next to this interpreter, if installed."""
    candidate = Path(sys.executable).parent / "codegym"
    return str(candidate) if candidate.exists() else shutil.which("codegym")


def prometheus_samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, parsed by prometheus_client's own parser (so the text must be valid)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
