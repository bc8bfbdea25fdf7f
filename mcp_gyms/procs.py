"""``codegym serve --http --procs N``: one bank served by N server processes, so capacity grows with cores.

This process (the supervisor) binds N listening sockets (ports PORT..PORT+N-1, or N free ports with
``--port 0``) and starts N children (``python -m mcp_gyms.procs``). Each child is a full
:class:`~mcp_gyms.http_service.HttpService` on one of those sockets: its own event loop, episodes, MCP sessions,
sandbox pool and ``/metrics``; ``--workers`` and ``--max-episodes`` are shared out among them
(:func:`mcp_gyms.server.http_service`). The supervisor serves nothing itself and costs nothing per call.

Why N ports and not one: an MCP session (``Mcp-Session-Id``) and an episode handle live in the process
that made them. One port shared with ``SO_REUSEPORT`` would let the kernel hand a session's or an episode's
next connection to another process; a routing proxy would spend a hop of CPU on every call. So a client
that runs many episodes spreads them over the URLs (the ready file lists them; :mod:`mcp_gyms.client`
takes several base URLs), and a plain client (Claude Desktop, the Inspector) given the first URL sees an
ordinary server.

Lifecycle:

- Ready: each child says so through a pipe once its app serves. When all have, the supervisor prints the
  URLs and writes ``--ready-file`` (:class:`~mcp_gyms.ready.ReadyInfo`, atomically). If a port cannot be
  bound, nothing starts (exit 2). If a child exits before it is ready, or is not ready within
  :data:`START_TIMEOUT_S`, the others are stopped and the supervisor exits 1, naming the process and port.
- A child that exits later (a crash): the supervisor stops the others and exits 1; whoever runs it
  (systemd, Ray, a test) restarts the whole. Restarting one child in place would lose its episodes anyway.
- SIGTERM or SIGINT to the supervisor: SIGTERM to every child (each lets in-flight calls finish and stops
  its sandbox workers), then exit 0; a child still alive after :data:`STOP_GRACE_S` gets SIGKILL.
- The supervisor dies, even by SIGKILL: the kernel sends every child SIGTERM (``PR_SET_PDEATHSIG``), and
  they shut down the same way. No orphans.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from pydantic import BaseModel

from .bank import Bank
from .http_service import announce, base_url, bind_socket, uvicorn_config
from .ready import ReadyInfo
from .server import http_service

__all__ = ["START_TIMEOUT_S", "STOP_GRACE_S", "serve_processes"]

#: Seconds every child has to start serving.
START_TIMEOUT_S = 300.0
#: Seconds children get to shut down gracefully before SIGKILL (their own grace is 10 s + uvicorn's 5 s).
STOP_GRACE_S = 30.0
_CHILD_ENV = "CODEGYM_SERVE_PROCESS"
_PR_SET_PDEATHSIG = 1


class _ChildSpec(BaseModel):
    """What a child needs, passed in its environment (not argv: the token stays out of ``ps``)."""

    args: dict[str, Any]
    procs: int
    listen_fd: int
    ready_fd: int
    parent: int


@dataclass
class _Child:
    index: int
    port: int
    proc: subprocess.Popen[bytes]
    ready_fd: int | None
    ready: bool = False

    def name(self, procs: int) -> str:
        return f"server process {self.index + 1} of {procs} (port {self.port}, pid {self.proc.pid})"


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies (the supervisor starts no threads, so
    the parent-death signal is tied to its one thread, i.e. to the process)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _stop(children: list[_Child], grace_s: float = STOP_GRACE_S) -> None:
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
        if child.ready_fd is not None:
            os.close(child.ready_fd)
            child.ready_fd = None


def serve_processes(args: argparse.Namespace, procs: int) -> int:
    """Serve ``codegym serve --http`` ARGS from ``procs`` child processes until SIGTERM/SIGINT (see the
    module docstring). Returns the exit code: 0 after a requested stop, 1 if a child failed, 2 if a port
    could not be bound."""
    sockets: list[socket.socket] = []
    for i in range(procs):
        port = args.port + i if args.port else 0
        try:
            sockets.append(bind_socket(args.host, port))
        except OSError as exc:
            print(f"codegym serve: cannot listen on {args.host}:{port} (server process {i + 1} of {procs}): {exc}",
                  file=sys.stderr)
            for sock in sockets:
                sock.close()
            return 2
    urls = [base_url(sock) for sock in sockets]
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    children: list[_Child] = []
    try:
        spec_args = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, type(None)))}
        for i, sock in enumerate(sockets):
            read_fd, write_fd = os.pipe()
            spec = _ChildSpec(args=spec_args, procs=procs, listen_fd=sock.fileno(), ready_fd=write_fd,
                              parent=os.getpid())
            proc = subprocess.Popen([sys.executable, "-m", "mcp_gyms.procs"], stdin=subprocess.DEVNULL,
                                    pass_fds=(sock.fileno(), write_fd), preexec_fn=_die_with_parent,
                                    env={**os.environ, _CHILD_ENV: spec.model_dump_json()})
            os.close(write_fd)
            sock.close()  # the child holds it now
            children.append(_Child(i, int(urls[i].rsplit(":", 1)[1]), proc, read_fd))
        failure = _wait_ready(children, procs, lambda: stop_requested)
        if failure is None and not stop_requested:
            announce(http_service(args, Bank.open(args.bank), procs), urls)
            if args.ready_file:
                ReadyInfo.of(urls, [c.proc.pid for c in children]).write(args.ready_file)
            while not stop_requested and failure is None:
                time.sleep(0.2)
                for child in children:
                    if child.proc.poll() is not None:
                        failure = f"{child.name(procs)} exited with code {child.proc.returncode}; stopping the others"
                        break
        if failure is not None:
            print(f"codegym serve: {failure}", file=sys.stderr, flush=True)
        return 1 if failure is not None else 0
    finally:
        _stop(children)
        for sock in sockets:
            sock.close()
        if args.ready_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.ready_file)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_ready(children: list[_Child], procs: int, stopping: Callable[[], bool]) -> str | None:
    """Wait until every child reports ready. Returns None, or why not (a child exited first, or timed out)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not all(c.ready for c in children) and not stopping():
        pending = {c.ready_fd: c for c in children if not c.ready and c.ready_fd is not None}
        readable, _, _ = select.select(list(pending), [], [], 0.2)
        for fd in readable:
            child = pending[fd]
            child.ready = os.read(fd, 64).startswith(b"ready")
            os.close(fd)
            child.ready_fd = None
            if not child.ready:  # EOF: it closed the pipe without saying ready, i.e. it is exiting
                code = child.proc.wait()
                return f"{child.name(procs)} exited with code {code} before it was ready (its messages are above)"
        if time.monotonic() > deadline:
            return f"not every server process was ready after {START_TIMEOUT_S:g} s"
    return None


def _child_main() -> int:
    """One server process: serve the inherited socket until SIGTERM (run by :func:`serve_processes`)."""
    spec = _ChildSpec.model_validate_json(os.environ.pop(_CHILD_ENV))
    if os.getppid() != spec.parent:  # the supervisor died before the parent-death signal was set
        return 1
    args = argparse.Namespace(**spec.args)
    service = http_service(args, Bank.open(args.bank), spec.procs)
    sock = socket.socket(fileno=spec.listen_fd)

    def ready() -> None:
        os.write(spec.ready_fd, b"ready\n")
        os.close(spec.ready_fd)

    service.on_ready = ready
    uvicorn.Server(uvicorn_config(service)).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    if _CHILD_ENV not in os.environ:
        sys.exit("python -m mcp_gyms.procs is started by `codegym serve --http --procs N`, not by hand")
    sys.exit(_child_main())
