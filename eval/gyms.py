"""How ``eval`` reaches gyms: an adapter over :mod:`mcp_gyms.client` (MCP only, never gym code).

The evaluator needs five things from a gym server, stated here as a small interface so that the
policies and the runner do not depend on the client's details:

- the gyms it serves (:meth:`GymAccess.gym_ids`);
- a gym's tools and tasks (:meth:`GymAccess.describe`; the tasks listing comes from the server's
  ``codegym://{gym}/tasks`` resource: index, id, difficulty, oracle steps — never hidden inputs);
- a fresh episode on (gym, task, seed) (:meth:`GymAccess.start`), whose calls return a
  :class:`~mcp_gyms.protocol.StepOutcome` (the ``structuredContent`` of the tool result) and which can fetch the oracle's
  plan for its own (task, seed);
- closing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mcp_gyms.client import GymClientError, GymPool, RemoteEpisode

__all__ = ["GymAccess", "GymEntry", "McpGymAccess", "TaskEntry"]



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




class GymAccess(Protocol):
    """A gym server, reached over MCP."""

    async def gym_ids(self) -> list[str]: ...

    async def describe(self, gym_id: str) -> GymEntry: ...

    async def start(self, gym_id: str, task: int | str, seed: int | None = None) -> RemoteEpisode: ...

    async def release(self, gym_id: str) -> None: ...


class McpGymAccess:
    """:class:`GymAccess` over MCP: a :class:`mcp_gyms.client.GymPool` of a gym server's HTTP endpoints.

    ``url`` is a server's base URL (``http://host:port``; gyms at ``/gyms/{id}/mcp``, listed by ``GET /gyms``),
    several base URLs of servers of the same bank (episodes are spread over them), or one gym's endpoint
    (any URL ending in ``/mcp``). One connection per (server, gym) is opened on first use and kept until
    :meth:`release` or the end of the ``async with`` block.
    """

    def __init__(self, url: str | Sequence[str], *, token: str | None = None, call_timeout: float | None = 300.0,
                 request_timeout: float = 60.0) -> None:
        if isinstance(url, str) and "," in url:  # --server URL1,URL2: the processes of `codegym serve --procs N`
            url = [u.strip() for u in url.split(",") if u.strip()]
        try:
            self.pool = GymPool(url, token=token, call_timeout=call_timeout, request_timeout=request_timeout)
        except ValueError as exc:
            raise ValueError(f"--server: {exc}") from None
        self._entries: dict[str, GymEntry] = {}

    async def __aenter__(self) -> McpGymAccess:
        await self.pool.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def endpoint(self, gym_id: str) -> str:
        """The MCP endpoint URL of a gym (on the first server)."""
        return self.pool.endpoint(self.pool.servers[0], gym_id)

    async def gym_ids(self) -> list[str]:
        """The gyms the server serves (``GET /gyms``), or the one gym of a single-endpoint URL."""
        return await self.pool.gym_ids()

    async def describe(self, gym_id: str) -> GymEntry:
        """The gym's tools (``tools/list``) and tasks (the ``codegym://{gym}/tasks`` resource)."""
        if gym_id in self._entries:
            return self._entries[gym_id]
        try:
            tools = await self.pool.tools(gym_id)
            tasks = [TaskEntry(index=t.index, id=t.id, difficulty=t.difficulty, oracle_steps=t.oracle_steps)
                     for t in await self.pool.tasks(gym_id)]
        except GymClientError as exc:
            raise GymClientError(f"cannot describe gym {gym_id!r}: {exc}", retryable=exc.retryable) from None
        entry = GymEntry(id=gym_id, tools=[t.model_dump() for t in tools], tasks=tasks)
        self._entries[gym_id] = entry
        return entry

    async def start(self, gym_id: str, task: int | str, seed: int | None = None) -> RemoteEpisode:
        """A fresh episode of ``gym_id`` on a task (index or id) and seed (default: the task's own)."""
        try:
            episode = await self.pool.start(gym_id, task=task, seed=seed)
        except GymClientError as exc:
            raise GymClientError(f"could not start gym {gym_id!r} task {task!r}: {exc}",
                              retryable=exc.retryable) from None
        if episode.info is None:
            await episode.close()
            raise GymClientError(f"the server of {gym_id!r} does not speak the codegym episode protocol "
                              "(codegym/episodes/start); the evaluator needs it to pick tasks")
        return episode

    async def release(self, gym_id: str) -> None:
        """Close the connections to one gym (when its episodes are all done); they reopen on next use."""
        await self.pool.release(gym_id)

    async def aclose(self) -> None:
        """Close every connection."""
        await self.pool.aclose()
