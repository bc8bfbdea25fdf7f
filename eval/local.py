"""A local gym server for an evaluation run: a bank served over streamable HTTP on 127.0.0.1.

:class:`LocalServer` runs :class:`mcp_gyms.http_service.HttpService` (the same service as
``codegym serve --http``) under uvicorn in a background thread with its own event loop, on a free
loopback port, and stops it (gracefully: in-flight calls finish, sandbox workers stop) on exit. The
evaluator then talks to it over MCP exactly as it would to a remote server; nothing of the gyms runs in
the evaluator's process or event loop.

Running it in a thread (not as a task of the evaluator's loop) keeps uvicorn's signal handling out of the
way: Ctrl-C reaches the evaluator, which stops its episodes and writes what finished, and only then stops
the server.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["LocalServer", "LocalServerError"]


class LocalServerError(RuntimeError):
    """The local gym server could not start."""


class LocalServer:
    """Serve a bank on ``http://127.0.0.1:PORT`` for the duration of a ``with`` block.

    Args:
        bank: the bank folder (None: the bundled bank).
        gyms: serve only these gyms (None: all of the bank's).
        workers: sandbox worker processes (None: the CPU count).
        max_episodes: the cap on open episodes (at least the run's concurrency).
        startup_timeout: seconds to wait for the server to answer.
    """

    def __init__(self, bank: str | Path | None = None, *, gyms: list[str] | None = None, workers: int | None = None,
                 max_episodes: int = 10_000, startup_timeout: float = 120.0) -> None:
        self.bank_path = bank
        self.gyms = gyms
        self.workers = workers
        self.max_episodes = max_episodes
        self.startup_timeout = startup_timeout
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """The server's base URL (gyms are at ``{url}/gyms/{gym_id}/mcp``)."""
        if self.port is None:
            raise LocalServerError("the local server is not running")
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalServer:
        import uvicorn

        from mcp_gyms.bank import Bank
        from mcp_gyms.http_service import HttpService, bind_socket, uvicorn_config

        bank = Bank.open(self.bank_path)
        missing = [g for g in self.gyms or () if g not in bank]
        if missing:
            known = ", ".join(bank.gym_ids[:20]) + (", ..." if len(bank) > 20 else "")
            raise LocalServerError(f"no gym {', '.join(map(repr, missing))} in bank {bank.root} (gyms: {known})")
        service = HttpService(bank, gyms=self.gyms, workers=self.workers,
                              max_episodes=self.max_episodes, host="127.0.0.1")
        sock = bind_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        # "critical": on Ctrl-C the evaluator drops its in-flight requests, and uvicorn would print a
        # ClientDisconnect traceback for each; failures reach the evaluator as error results anyway
        self._server = uvicorn.Server(uvicorn_config(service, log_level="critical"))

        def serve() -> None:
            try:
                self._server.run(sockets=[sock])
            except BaseException as exc:  # noqa: BLE001 - reported by __enter__
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name="codegym-eval-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                why = f": {self._error}" if self._error else " (see the log above)"
                raise LocalServerError(f"the local gym server did not start{why}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self.port = None
