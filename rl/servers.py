"""Gym servers for training: one ``codegym serve --http`` per Ray node, or a given list of URLs.

- :class:`GymServerProcess` runs ``python -m mcp_gyms.server --http --host 127.0.0.1 --port 0`` (the public
  ``codegym serve`` command, ``--procs`` server processes) as a child process, reads the addresses they bound
  from its ``--ready-file``, and checks that ``GET /healthz`` answers on each. :meth:`GymServerProcess.stop` ends it with SIGTERM (the server then lets
  in-flight calls finish and stops its sandbox workers), SIGKILL after a grace period.
- :func:`start_node_servers` starts one :class:`GymServerProcess` inside a Ray actor on every alive node of
  the cluster veRL runs on, named ``{prefix}-{node_id}``; the agent loops on a node find theirs by that
  name (:func:`rl.gyms.server_for`) and talk to it over loopback. The driver keeps the actors' handles, so
  they live as long as it does; a server process ends with its parent (Linux parent-death signal), so a
  killed actor or test leaves no server behind.

Used by the launcher (:mod:`rl.train`) when ``codegym.servers`` is empty, and by the agent loop under plain
``main_ppo`` (:func:`node_server_actor`, the first loop on a node); with a URL list nothing is started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from mcp_gyms.ready import ReadyInfo

from .settings import ServerSettings

__all__ = ["GymServerProcess", "ServerStartError", "node_server_actor", "start_node_servers"]

class ServerStartError(RuntimeError):
    """A gym server did not come up; the message carries the tail of its log."""


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent process dies (PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class GymServerProcess:
    """One ``codegym serve --http`` child process on this machine (loopback only, no token needed).

    Args:
        settings: bank, workers, limits and the start-up timeout.
        host: bind address (loopback by default: only this node's agent loops reach it).
    """

    def __init__(self, settings: ServerSettings | None = None, host: str = "127.0.0.1") -> None:
        self.settings = settings or ServerSettings()
        self.host = host
        self.urls: list[str] = []  # every server process's base URL; spread episodes over them
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._ready_dir: Path | None = None

    @property
    def url(self) -> str | None:
        """The first server process's base URL (an ordinary server: all a plain client needs)."""
        return self.urls[0] if self.urls else None

    def command(self, ready_file: str | None = None) -> list[str]:
        s = self.settings
        cmd = [sys.executable, "-m", "mcp_gyms.server", "--http", "--host", self.host, "--port", "0",
               "--max-episodes", str(s.max_episodes), "--idle-timeout", str(s.idle_timeout_s),
               "--time-limit", str(s.time_limit_s)]
        if s.bank:
            cmd += ["--bank", s.bank]
        if s.workers:
            cmd += ["--workers", str(s.workers)]
        if s.procs:
            cmd += ["--procs", str(s.procs)]
        if ready_file:
            cmd += ["--ready-file", ready_file]
        return cmd

    def log_tail(self, chars: int = 2000) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def start(self) -> str:
        """Start the server and wait until every process of it is healthy. Returns the first base URL
        (``http://127.0.0.1:PORT``); :attr:`urls` has them all.

        Raises:
            ServerStartError: it exited, or did not become healthy within ``startup_timeout_s``.
        """
        if self._proc is not None:
            raise RuntimeError("this server process was already started")
        fd, log = tempfile.mkstemp(prefix="codegym-server-", suffix=".log")
        self._log_path = Path(log)
        self._ready_dir = Path(tempfile.mkdtemp(prefix="codegym-server-"))
        ready_file = self._ready_dir / "ready.json"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with os.fdopen(fd, "wb") as log_file:
            self._proc = subprocess.Popen(self.command(str(ready_file)), stdout=log_file, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                          preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerStartError(f"the gym server exited with code {self._proc.returncode}:\n{self.log_tail()}")
            ready = ReadyInfo.read(ready_file)
            if ready is not None and all(_healthy(url) for url in ready.urls):
                self.urls = ready.urls
                return ready.url
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(f"the gym server was not healthy after {self.settings.startup_timeout_s:g} s:\n"
                               f"{self.log_tail()}")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL the server's process group. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with _suppress_lookup():
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with _suppress_lookup():
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
        if self._ready_dir is not None:
            shutil.rmtree(self._ready_dir, ignore_errors=True)

    def __enter__(self) -> GymServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return exc_type is not None and issubclass(exc_type, ProcessLookupError)


class _NodeGymServer:
    """Body of the per-node Ray actor: owns one :class:`GymServerProcess`."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.process = GymServerProcess(ServerSettings.model_validate(settings))
        self._url = self.process.start()

    def url(self) -> str:
        return self._url

    def urls(self) -> list[str]:
        """Every server process's base URL (``ServerSettings.procs`` of them)."""
        return self.process.urls

    def healthy(self) -> bool:
        return self.process.alive()

    def stop(self) -> None:
        self.process.stop()


_NODE_ACTORS: list[Any] = []


def node_server_actor(node_id: str, settings: ServerSettings, prefix: str = "codegym-gym-server") -> Any:
    """The gym-server actor of one Ray node, named ``{prefix}-{node_id}``: the running one, else a new one
    pinned to that node (Ray must be initialised). Ray ends it when its creator's process ends."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor_class = ray.remote(num_cpus=0)(_NodeGymServer)
    actor = actor_class.options(
        name=f"{prefix}-{node_id}", get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(settings.model_dump())
    _NODE_ACTORS.append(actor)  # Ray ends an actor once no handle to it is left
    return actor


def start_node_servers(settings: ServerSettings, prefix: str = "codegym-gym-server") -> dict[str, str]:
    """Start one gym server actor on every alive Ray node (Ray must be initialised). Returns node id -> URL.

    Raises:
        ServerStartError: a node's server did not come up.
    """
    import ray

    actors = {node["NodeID"]: node_server_actor(node["NodeID"], settings, prefix)
              for node in ray.nodes() if node.get("Alive")}
    urls = {}
    for node_id, actor in actors.items():
        try:
            urls[node_id] = ray.get(actor.url.remote())
        except ray.exceptions.RayActorError as exc:
            raise ServerStartError(f"the gym server on node {node_id} did not start: {exc}") from exc
    return urls
