"""How the agent loop reaches gym servers: only over MCP, through :mod:`mcp_gyms.client`.

- :func:`server_for` picks the gym server for one trajectory: the next URL of ``LoopSettings.servers``
  (round robin), or — when that list is empty — the URL of this node's gym-server Ray actor
  (:mod:`rl.servers`), looked up once per process; under plain ``main_ppo`` (no launcher) the first
  agent-loop worker on a node that finds none starts it.
- :class:`GymServer` lists a gym's tools (cached per worker) and starts episodes. Gym endpoints are
  ``{server}/gyms/{gym}/mcp``; each (server, gym) gets **one pooled** :class:`mcp_gyms.client.GymConnection`
  per worker process and event loop, shared by every trajectory of that worker (the client multiplexes
  requests). Connections are opened and closed by an owner task of their own, so no trajectory's task
  ever owns a connection's task group; idle ones beyond ``max_pooled_gyms`` are closed, least recently used
  first.
- :class:`GymEpisode` is one episode: ``call`` returns the server's :class:`~mcp_gyms.protocol.StepOutcome`
  (a bad call is an outcome with ``error`` set, never an exception); ``close`` returns the final status.

Every transport or server failure surfaces as :class:`GymServerError` (the loop records it and ends the
trajectory); nothing else from the client leaks out.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from mcp_gyms.client import (
    CallInterrupted,
    Episode,
    EpisodeRequestError,
    GymClientError,
    GymConnection,
    connect,
)
from mcp_gyms.protocol import TOKEN_ENV, EpisodeStatus, ErrorCode, StepOutcome

from .settings import EpisodeSpec, LoopSettings

__all__ = ["GymEpisode", "GymServer", "GymServerError", "StepOutcome", "close_all", "server_for"]



class GymServerError(Exception):
    """The gym server could not serve a request (unreachable, refused, timed out, episode gone)."""


class _Pooled:
    """One open connection, held by its own owner task until :meth:`aclose`."""

    def __init__(self, url: str, settings: LoopSettings) -> None:
        self.url = url
        self.settings = settings
        self.connection: GymConnection | None = None
        self.tools: list[dict[str, Any]] | None = None
        self.users = 0
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._owner: asyncio.Task[None] | None = None

    async def open(self) -> GymConnection:
        if self._owner is None:
            self._owner = asyncio.get_running_loop().create_task(self._own(), name=f"codegym-connection {self.url}")
        await self._ready.wait()
        if self.connection is None:
            raise GymServerError(f"cannot connect to {self.url}: {self._error!r}") from self._error
        return self.connection

    async def _own(self) -> None:
        try:
            token = self.settings.token or os.environ.get(TOKEN_ENV) or None
            async with connect(self.url, token=token, call_timeout=self.settings.call_timeout_s,
                               request_timeout=self.settings.call_timeout_s,
                               retries=self.settings.reconnect_retries) as connection:
                self.connection = connection
                self._ready.set()
                await self._stop.wait()
        except (GymClientError, OSError, ValueError) as exc:
            self._error = exc
        except BaseException as exc:  # never let the owner task die silently
            self._error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            self.connection = None
            self._ready.set()

    @property
    def broken(self) -> bool:
        return self._ready.is_set() and self.connection is None

    async def aclose(self) -> None:
        self._stop.set()
        if self._owner is not None:
            await asyncio.gather(self._owner, return_exceptions=True)


class _Pool:
    """The pooled connections of one event loop (one veRL agent-loop worker), keyed by endpoint and the
    settings a connection is made with (token, timeout)."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, _Pooled] = OrderedDict()
        self.lock = asyncio.Lock()

    async def acquire(self, url: str, settings: LoopSettings) -> _Pooled:
        key = (f"{url} token={hash(settings.token)} timeout={settings.call_timeout_s} "
               f"retries={settings.reconnect_retries}")
        async with self.lock:
            entry = self.entries.get(key)
            if entry is None or entry.broken:
                if entry is not None:
                    await entry.aclose()
                entry = _Pooled(url, settings)
                self.entries[key] = entry
            self.entries.move_to_end(key)
            entry.users += 1
            excess = len(self.entries) - settings.max_pooled_gyms
            for old_key in [k for k, e in self.entries.items() if e.users == 0][:max(0, excess)]:
                await self.entries.pop(old_key).aclose()
        try:
            await entry.open()
        except BaseException:
            entry.users -= 1
            raise
        return entry

    @staticmethod
    def release(entry: _Pooled) -> None:
        entry.users = max(0, entry.users - 1)


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()
_ROUND_ROBIN = itertools.count()
_NODE_URL: dict[str, str] = {}


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = _Pool()
    return pool


async def close_all() -> None:
    """Close every pooled connection of the running event loop (tests, worker shutdown)."""
    pool = _POOLS.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        for entry in list(pool.entries.values()):
            await entry.aclose()


def _error(exc: BaseException, what: str) -> GymServerError:
    if isinstance(exc, EpisodeRequestError):
        return GymServerError(f"{what}: the server refused ({exc.kind or exc.code}): {exc.message}")
    if isinstance(exc, CallInterrupted):
        return GymServerError(f"{what}: {exc}")
    return GymServerError(f"{what}: {exc}")


class GymEpisode:
    """One episode on a pooled connection; released back to the pool by :meth:`close`."""

    def __init__(self, episode: Episode, entry: _Pooled) -> None:
        self._episode = episode
        self._entry: _Pooled | None = entry
        self.handle = episode.handle
        self.info = episode.info

    async def call(self, name: str, arguments: Any) -> StepOutcome:
        """One tool call. Arguments that are not a JSON object are refused here as an invalid call (the
        client sends objects only); the server judges everything else.

        Raises:
            GymServerError: the call's outcome is unknown (connection lost or timed out).
        """
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            shown = arguments if isinstance(arguments, str) else type(arguments).__name__
            return StepOutcome(observation=f"Error: invalid arguments for {name}: arguments must be a JSON object "
                                           f"(got {str(shown)[:60]})", error="invalid_arguments",
                               steps=self._episode.steps)
        try:
            return await self._episode.call(name, dict(arguments))
        except GymClientError as exc:
            raise _error(exc, f"tool call {name}") from None

    async def close(self) -> EpisodeStatus | None:
        """Close the episode (idempotent) and give the connection back to the pool.

        Raises:
            GymServerError: the server could not be reached to close it.
        """
        entry, self._entry = self._entry, None
        if entry is None:
            return None
        try:
            return await self._episode.close()
        except GymClientError as exc:
            raise _error(exc, "close") from None
        finally:
            _Pool.release(entry)


class GymServer:
    """One gym server (base URL) as seen from one worker."""

    def __init__(self, base_url: str, settings: LoopSettings) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings

    def endpoint(self, gym: str) -> str:
        return f"{self.base_url}/gyms/{gym}/mcp"

    async def tools(self, gym: str) -> list[dict[str, Any]]:
        """The gym's tools as the server lists them (name, description, input_schema), cached per worker.

        Raises:
            GymServerError: the server is unreachable or has no such gym.
        """
        entry = await _pool().acquire(self.endpoint(gym), self.settings)
        try:
            if entry.tools is None:
                assert entry.connection is not None
                listed = await entry.connection.list_tools()
                entry.tools = [t.model_dump() for t in listed]
            return entry.tools
        except GymClientError as exc:
            raise _error(exc, f"tools/list of gym {gym!r} at {self.base_url}") from None
        finally:
            _Pool.release(entry)

    async def start(self, spec: EpisodeSpec) -> GymEpisode:
        """Start the episode ``spec`` names; a busy server (too many episodes) is retried with back-off.

        Raises:
            GymServerError: the server is unreachable, refused the task, or stayed busy.
        """
        entry = await _pool().acquire(self.endpoint(spec.gym), self.settings)
        delay = 0.5
        try:
            for attempt in range(self.settings.start_retries + 1):
                try:
                    assert entry.connection is not None
                    episode = await entry.connection.start(task=spec.task, seed=spec.seed)
                    break
                except EpisodeRequestError as exc:
                    busy = exc.code in (ErrorCode.TOO_MANY_EPISODES, ErrorCode.SHUTTING_DOWN)
                    if not busy or attempt == self.settings.start_retries:
                        raise
                    await asyncio.sleep(delay)
                    delay *= 2
        except GymClientError as exc:
            _Pool.release(entry)
            raise _error(exc, f"start {spec.gym}/{spec.task}") from None
        except BaseException:
            _Pool.release(entry)
            raise
        if episode.handle is None:
            _Pool.release(entry)
            raise GymServerError(f"{self.endpoint(spec.gym)} is not a codegym server (it has no episodes)")
        return GymEpisode(episode, entry)


async def _node_server_url(settings: LoopSettings) -> str:
    """The URL of the gym-server actor on this Ray node (cached per process)."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray comes with veRL
        raise GymServerError("no gym servers configured (codegym.servers is empty) and Ray is missing") from exc
    if not ray.is_initialized():
        raise GymServerError("no gym servers configured: set codegym.servers=[http://host:port,...] or launch "
                             "with `python -m rl.train`, which starts one gym server per Ray node")
    node_id = ray.get_runtime_context().get_node_id()
    if node_id in _NODE_URL:
        return _NODE_URL[node_id]
    name = f"{settings.server_actor_prefix}-{node_id}"
    try:
        actor = ray.get_actor(name)
    except ValueError:  # plain `main_ppo`: no launcher started one, so the first loop on this node does
        from .servers import node_server_actor

        actor = node_server_actor(node_id, settings.server, settings.server_actor_prefix)
    try:
        url = await actor.url.remote()
    except ray.exceptions.RayActorError as exc:
        raise GymServerError(f"the gym server actor {name!r} did not start: {exc}") from None
    _NODE_URL[node_id] = url
    return url


async def server_for(settings: LoopSettings) -> GymServer:
    """The gym server for the next trajectory (round robin over ``settings.servers``, else this node's).

    Raises:
        GymServerError: no server is configured or found.
    """
    if settings.servers:
        return GymServer(settings.servers[next(_ROUND_ROBIN) % len(settings.servers)], settings)
    return GymServer(await _node_server_url(settings), settings)
