"""How ``eval`` reaches gyms: an adapter over :mod:`mcp_gyms.client` (MCP only, never gym code).

The evaluator needs five things from a gym server, stated here as a small interface so that the
policies and the runner do not depend on the client's details:

- the gyms it serves (:meth:`GymAccess.gym_ids`);
- a gym's tools and tasks (:meth:`GymAccess.describe`; the tasks listing comes from the server's
  ``codegym://{gym}/tasks`` resource: index, id, difficulty, oracle steps — never hidden inputs);
- a fresh episode on (gym, task, seed) (:meth:`GymAccess.start`), whose calls return a
  :class:`StepReply` (the ``structuredContent`` of the tool result) and which can fetch the oracle's
  plan for its own (task, seed);
- closing it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import httpx2

from mcp_gyms.client import ConnectionLost, EpisodeRequestError, GymClientError, connect
from mcp_gyms.protocol import EpisodeInfo, OraclePlan, StepOutcome

__all__ = ["EpisodeSession", "GymAccess", "GymEntry", "McpGymAccess", "ServerError", "StepReply", "TaskEntry"]


class ServerError(Exception):
    """The gym server failed a request (transport error, JSON-RPC error, unexpected reply).

    ``retryable`` is true for failures that may pass on a retry (connection trouble, a full server);
    false for requests that cannot succeed (unknown gym or task).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class TaskEntry:
    """A task as the server lists it (no hidden configuration)."""

    index: int
    id: str
    difficulty: str
    oracle_steps: int | None = None


@dataclass(frozen=True)
class GymEntry:
    """A gym as the server describes it: tools (as MCP lists them) and tasks."""

    id: str
    tools: list[dict[str, Any]]  # {"name", "description", "input_schema"}
    tasks: list[TaskEntry]
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


#: The outcome of one tool call: the tool result's ``structuredContent``, as the client parses it.
StepReply = StepOutcome


class EpisodeSession(Protocol):
    """A live episode on the server."""

    info: EpisodeInfo

    async def call(self, name: str, arguments: dict[str, Any]) -> StepReply: ...

    async def oracle(self) -> OraclePlan: ...

    async def aclose(self) -> None: ...


class GymAccess(Protocol):
    """A gym server, reached over MCP."""

    async def gym_ids(self) -> list[str]: ...

    async def describe(self, gym_id: str) -> GymEntry: ...

    async def start(self, gym_id: str, task: int | str, seed: int | None = None) -> EpisodeSession: ...

    async def release(self, gym_id: str) -> None: ...


# --- the adapter over mcp_gyms.client ------------------------------------------------------------------
class _McpSession:
    """An :class:`EpisodeSession` over :class:`mcp_gyms.client.Episode`."""

    def __init__(self, episode: Any, info: EpisodeInfo) -> None:
        self._episode = episode
        self.info = info

    async def call(self, name: str, arguments: dict[str, Any]) -> StepReply:
        try:
            out = await self._episode.call(name, arguments)
        except GymClientError as exc:
            raise ServerError(f"tool call {name!r} failed on the gym server: {exc}") from None
        return out

    async def oracle(self) -> OraclePlan:
        try:
            return await self._episode.oracle_plan()
        except GymClientError as exc:
            raise ServerError(f"the oracle plan could not be fetched: {exc}") from None

    async def aclose(self) -> None:
        try:
            await self._episode.close()
        except GymClientError as exc:
            raise ServerError(f"closing the episode failed: {exc}") from None


_RETRYABLE_KINDS = frozenset({"too_many_episodes", "gym_unavailable"})


class McpGymAccess:
    """:class:`GymAccess` over MCP with :func:`mcp_gyms.client.connect`, for a gym server's HTTP endpoints.

    ``url`` is either a server's base URL (``http://host:port``; gyms at ``/gyms/{id}/mcp``, listed by
    ``GET /gyms``) or one gym's endpoint (``.../gyms/{id}/mcp`` or any URL ending in ``/mcp``). One
    connection per gym is opened on first use, held by a task of its own, and kept until
    :meth:`release` or the end of the ``async with`` block.
    """

    def __init__(self, url: str, *, token: str | None = None, call_timeout: float | None = 300.0,
                 request_timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--server must be an http(s) URL, not {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.call_timeout = call_timeout
        self.request_timeout = request_timeout
        self._single: str | None = None
        if self.url.endswith("/mcp"):
            parts = self.url.split("/")
            self._single = parts[-2] if len(parts) >= 2 and parts[-2] else "gym"
        self._tg: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._conns: dict[str, Any] = {}
        self._stops: dict[str, anyio.Event] = {}
        self._entries: dict[str, GymEntry] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def __aenter__(self) -> McpGymAccess:
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def endpoint(self, gym_id: str) -> str:
        """The MCP endpoint URL of a gym."""
        if self._single is not None:
            return self.url
        return f"{self.url}/gyms/{gym_id}/mcp"

    async def gym_ids(self) -> list[str]:
        """The gyms the server serves (``GET /gyms``), or the one gym of a single-endpoint URL."""
        if self._single is not None:
            return [self._single]
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with httpx2.AsyncClient(timeout=self.request_timeout, headers=headers) as http:
                response = await http.get(f"{self.url}/gyms")
        except httpx2.HTTPError as exc:
            raise ServerError(f"cannot reach the gym server at {self.url}: {type(exc).__name__}: {exc}",
                              retryable=True) from None
        if response.status_code == 401:
            raise ServerError(f"the gym server at {self.url} wants a bearer token (--token or $CODEGYM_TOKEN)")
        if response.status_code != 200:
            raise ServerError(f"GET {self.url}/gyms answered HTTP {response.status_code}; is this a codegym server? "
                              "(pass one gym's endpoint URL, ending in /mcp, for other servers)")
        try:
            return [str(g["id"]) for g in response.json()["gyms"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerError(f"GET {self.url}/gyms returned an unexpected body: {exc}") from None

    async def _hold(self, gym_id: str, stop: anyio.Event, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold one gym's connection open in a task of its own (a connection's task group must be entered
        and left by the same task, while its episodes run in many). A failure to connect reaches the caller
        of ``start``; a failure while closing is dropped (there is nothing left to do with it)."""
        started = False
        try:
            async with connect(self.endpoint(gym_id), token=self.token, call_timeout=self.call_timeout,
                               request_timeout=self.request_timeout) as conn:
                task_status.started(conn)
                started = True
                await stop.wait()
        except Exception as exc:
            if started:
                return
            if isinstance(exc, (GymClientError, OSError)):
                raise ServerError(f"cannot connect to gym {gym_id!r} at {self.endpoint(gym_id)}: {exc}",
                                  retryable=True) from None
            raise

    async def _connection(self, gym_id: str) -> Any:
        conn = self._conns.get(gym_id)
        if conn is not None:
            return conn
        if self._tg is None:
            raise RuntimeError("McpGymAccess is used outside its `async with` block")
        async with self._locks.setdefault(gym_id, anyio.Lock()):
            if gym_id in self._conns:
                return self._conns[gym_id]
            stop = anyio.Event()
            conn = await self._tg.start(self._hold, gym_id, stop)
            self._conns[gym_id], self._stops[gym_id] = conn, stop
            return conn

    async def describe(self, gym_id: str) -> GymEntry:
        """The gym's tools (``tools/list``) and tasks (the ``codegym://{gym}/tasks`` resource)."""
        if gym_id in self._entries:
            return self._entries[gym_id]
        conn = await self._connection(gym_id)
        try:
            tools = await conn.list_tools()
            tasks = [TaskEntry(index=t.index, id=t.id, difficulty=t.difficulty, oracle_steps=t.oracle_steps)
                     for t in await conn.tasks()]
        except GymClientError as exc:
            raise ServerError(f"cannot describe gym {gym_id!r}: {exc}") from None
        entry = GymEntry(id=gym_id, tools=[t.model_dump() for t in tools], tasks=tasks)
        self._entries[gym_id] = entry
        return entry

    async def start(self, gym_id: str, task: int | str, seed: int | None = None) -> EpisodeSession:
        """A fresh episode of ``gym_id`` on a task (index or id) and seed (default: the task's own)."""
        conn = await self._connection(gym_id)
        try:
            episode = await conn.start(task=task, seed=seed)
        except EpisodeRequestError as exc:
            raise ServerError(f"the server refused to start gym {gym_id!r} task {task!r}: {exc.message}",
                              retryable=exc.kind in _RETRYABLE_KINDS) from None
        except ConnectionLost as exc:
            raise ServerError(f"could not start gym {gym_id!r} task {task!r}: {exc}", retryable=True) from None
        except GymClientError as exc:
            raise ServerError(f"could not start gym {gym_id!r} task {task!r}: {exc}") from None
        if episode.info is None:
            raise ServerError(f"the server of {gym_id!r} does not speak the codegym episode protocol "
                              "(codegym/episodes/start); the evaluator needs it to pick tasks")
        return _McpSession(episode, episode.info)

    async def release(self, gym_id: str) -> None:
        """Close the connection to one gym (when its episodes are all done); it reopens on next use."""
        self._conns.pop(gym_id, None)
        stop = self._stops.pop(gym_id, None)
        if stop is not None:
            stop.set()

    async def aclose(self) -> None:
        """Close every connection."""
        for gym_id in list(self._stops):
            await self.release(gym_id)
        if self._stack is not None:
            stack, self._stack, self._tg = self._stack, None, None
            await stack.aclose()
