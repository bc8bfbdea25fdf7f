"""One gym over stdio (Claude Desktop, ``fastmcp``, the Inspector): :func:`serve_stdio`, with one implicit
episode on the task chosen at start-up and the ``StartTask`` tool to pick or restart a task."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from .bank import Bank
from .episode_manager import (
    DEFAULT_MAX_EPISODES,
)
from .gym_server import StartupTask, running_gym
from .sandbox import SandboxLimits

__all__ = ["serve_stdio"]

#: At end of stdin, how long the server waits for the calls in flight to answer before it exits (s).
_EOF_GRACE_S = 120.0


class _AnsweredWriter:
    """The stdio write stream; every response or error sent takes its request id off ``pending``."""

    def __init__(self, inner: Any, pending: set[Any]) -> None:
        self.inner = inner
        self.pending = pending

    async def send(self, item: SessionMessage) -> None:
        await self.inner.send(item)
        if isinstance(item.message, (types.JSONRPCResponse, types.JSONRPCError)):
            self.pending.discard(item.message.id)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> _AnsweredWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _AnsweringReader:
    """The stdio read stream, but a line that is not JSON-RPC gets a JSON-RPC error reply (id null:
    -32700 for bad JSON, -32600 for a bad message) instead of being dropped without a word; and end of
    input waits (up to :data:`_EOF_GRACE_S`) until every request read so far has been answered, so
    ``printf REQUEST | codegym serve GYM`` gets its answer."""

    def __init__(self, inner: Any, write_stream: Any) -> None:
        self.inner = inner
        self.pending: set[Any] = set()
        self.write_stream = _AnsweredWriter(write_stream, self.pending)

    @property
    def last_context(self) -> Any:
        return getattr(self.inner, "last_context", None)

    async def receive(self) -> Any:
        while True:
            try:
                item = await self.inner.receive()
            except anyio.EndOfStream:
                with anyio.move_on_after(_EOF_GRACE_S):
                    while self.pending:
                        await anyio.sleep(0.01)
                raise
            if isinstance(item, SessionMessage):
                message = item.message
                if isinstance(message, types.JSONRPCRequest):
                    self.pending.add(message.id)
                elif isinstance(message, types.JSONRPCNotification) and message.method == "notifications/cancelled":
                    self.pending.discard((message.params or {}).get("requestId"))
                return item
            if not isinstance(item, Exception):
                return item
            bad_json = isinstance(item, ValidationError) and any(
                e.get("type") == "json_invalid" for e in item.errors(include_url=False))
            error = types.ErrorData(code=types.PARSE_ERROR if bad_json else types.INVALID_REQUEST,
                                    message="Parse error: not JSON" if bad_json else
                                    "Invalid request: not a JSON-RPC 2.0 message")
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await self.write_stream.send(SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=None, error=error)))

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __aiter__(self) -> _AnsweringReader:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


async def serve_stdio(bank: Bank, gym_id: str, *, startup: StartupTask | None = None, workers: int | None = 1,
                      limits: SandboxLimits | None = None, idle_timeout: float | None = None,
                      max_episodes: int = DEFAULT_MAX_EPISODES, allow_unverified: bool = False) -> None:
    """Serve one gym over stdio until stdin closes (then return) or SIGTERM/SIGINT/SIGHUP.

    On a signal the episodes are closed and every sandbox worker stopped, then the process exits at
    once (status 0): the thread blocked reading stdin cannot be interrupted, so it is not waited for."""
    async with running_gym(bank, gym_id, workers=workers, limits=limits, handleless="process", startup=startup,
                           max_episodes=max_episodes, idle_timeout=idle_timeout,
                           allow_unverified=allow_unverified) as gym_server:
        manager, pool, server = gym_server.manager, gym_server.manager.pool, gym_server.mcp
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                    async for _ in signals:
                        with anyio.CancelScope(shield=True):
                            await manager.shutdown()
                            await pool.aclose()
                        sys.stderr.flush()
                        os._exit(0)

            async def serve() -> None:
                async with stdio_server() as (read_stream, write_stream):
                    reader = _AnsweringReader(read_stream, write_stream)
                    await server.run(reader, reader.write_stream, server.create_initialization_options())
                tg.cancel_scope.cancel()

            tg.start_soon(on_signal)
            tg.start_soon(serve)
