"""How the agent loop reaches gym servers: only over MCP, through :mod:`mcp_gyms.client`.

- :func:`server_for` gives the trajectory its worker's :class:`WorkerGyms`: one
  :class:`mcp_gyms.client.GymPool` per worker process, event loop and connection settings, over every URL of
  ``LoopSettings.servers`` — or, when that list is empty, the URL of this node's gym-server Ray actor
  (:mod:`rl.servers`), looked up once per process; under plain ``main_ppo`` (no launcher) the first
  agent-loop worker on a node that finds none starts it.
- The pool keeps one connection per (server, gym), shared by every trajectory of the worker (the client
  multiplexes requests; a dropped HTTP exchange fails only its own request). A new episode goes to the
  server with the fewest open episodes of this worker and stays there. Unused connections beyond
  ``max_pooled_gyms`` are closed, least recently used first. The pool is entered and left by an owner task
  of its own, so no trajectory's task ever owns a connection.
- :meth:`WorkerGyms.start` gives the trajectory a :class:`~mcp_gyms.client.RemoteEpisode`: ``call`` returns
  the server's :class:`~mcp_gyms.protocol.StepOutcome` (a bad call is an outcome with ``error`` set, never an
  exception); ``close`` returns the final status.

Every transport or server failure surfaces as the client's :class:`~mcp_gyms.client.GymClientError`: the
loop records it and ends the trajectory.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any

from mcp_gyms.client import GymClientError, GymPool, RemoteEpisode
from mcp_gyms.protocol import TOKEN_ENV

from .settings import EpisodeSpec, LoopSettings

__all__ = ["WorkerGyms", "close_all", "server_for"]



class _OwnedPool:
    """A :class:`GymPool` entered and left by an owner task of its own (veRL calls the loop from many tasks,
    none of which may own the pool's task group)."""

    def __init__(self, pool: GymPool) -> None:
        self.pool = pool
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._owner = asyncio.get_running_loop().create_task(self._own(), name="codegym-gym-pool")

    async def _own(self) -> None:
        try:
            async with self.pool:
                self._ready.set()
                await self._stop.wait()
        finally:
            self._ready.set()

    async def ready(self) -> GymPool:
        await self._ready.wait()
        if self._owner.done():
            raise GymClientError(f"the gym pool stopped: {self._owner.exception()!r}")
        return self.pool

    async def aclose(self) -> None:
        self._stop.set()
        await asyncio.gather(self._owner, return_exceptions=True)


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], _OwnedPool]] = (
    weakref.WeakKeyDictionary())
_NODE_URLS: dict[str, list[str]] = {}


async def _pool(servers: list[str], settings: LoopSettings) -> GymPool:
    """This event loop's pool for ``servers`` and the connection settings."""
    pools = _POOLS.setdefault(asyncio.get_running_loop(), {})
    token = settings.token or os.environ.get(TOKEN_ENV) or None
    key = (tuple(servers), token, settings.call_timeout_s, settings.reconnect_retries, settings.start_retries,
           settings.max_pooled_gyms)
    owned = pools.get(key)
    if owned is None:
        owned = pools[key] = _OwnedPool(GymPool(
            servers, token=token, call_timeout=settings.call_timeout_s, request_timeout=settings.call_timeout_s,
            retries=settings.reconnect_retries, start_retries=settings.start_retries,
            max_connections=settings.max_pooled_gyms))
    return await owned.ready()


async def close_all() -> None:
    """Close every pool of the running event loop (tests, worker shutdown)."""
    for owned in _POOLS.pop(asyncio.get_running_loop(), {}).values():
        await owned.aclose()


class WorkerGyms:
    """The gym servers of one worker (one or more base URLs serving the same bank), through its pool."""

    def __init__(self, pool: GymPool) -> None:
        self.pool = pool
        self.base_url = pool.servers[0]

    async def tools(self, gym: str) -> list[dict[str, Any]]:
        """The gym's tools as the server lists them (name, description, input_schema), cached per worker.

        Raises:
            GymClientError: the server is unreachable or has no such gym.
        """
        return [t.model_dump() for t in await self.pool.tools(gym)]

    async def start(self, spec: EpisodeSpec) -> RemoteEpisode:
        """Start the episode ``spec`` names on the least loaded server; a busy server (too many episodes) is
        retried with back-off.

        Raises:
            GymClientError: the server is unreachable, refused the task, or stayed busy.
        """
        try:
            episode = await self.pool.start(spec.gym, task=spec.task, seed=spec.seed)
        except GymClientError as exc:
            raise GymClientError(f"start {spec.gym}/{spec.task}: {exc}", retryable=exc.retryable) from None
        if episode.handle is None:
            await episode.close()
            raise GymClientError(f"{self.pool.endpoint(self.base_url, spec.gym)} is not a codegym server "
                                 "(it has no episodes)")
        return episode


async def _node_servers(settings: LoopSettings) -> list[str]:
    """The base URL(s) of the gym-server actor on this Ray node (cached per process): its ``url()`` answers
    one URL, or a list when it serves the bank from several processes."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray comes with veRL
        raise GymClientError("no gym servers configured (codegym.servers is empty) and Ray is missing") from exc
    if not ray.is_initialized():
        raise GymClientError("no gym servers configured: set codegym.servers=[http://host:port,...] or launch "
                             "with `python -m rl.train`, which starts one gym server per Ray node")
    node_id = ray.get_runtime_context().get_node_id()
    if node_id in _NODE_URLS:
        return _NODE_URLS[node_id]
    name = f"{settings.server_actor_prefix}-{node_id}"
    try:
        actor = ray.get_actor(name)
    except ValueError:  # plain `main_ppo`: no launcher started one, so the first loop on this node does
        from .servers import node_server_actor

        actor = node_server_actor(node_id, settings.server, settings.server_actor_prefix)
    try:
        url = await actor.urls.remote()  # every process of the node's server (--procs)
    except ray.exceptions.RayActorError as exc:
        raise GymClientError(f"the gym server actor {name!r} did not start: {exc}") from None
    _NODE_URLS[node_id] = [url] if isinstance(url, str) else list(url)
    return _NODE_URLS[node_id]


async def server_for(settings: LoopSettings) -> WorkerGyms:
    """The gym servers for the next trajectory: ``settings.servers`` (episodes spread over them), else this
    node's gym server.

    Raises:
        GymClientError: no server is configured or found.
    """
    servers = list(settings.servers) or await _node_servers(settings)
    try:
        return WorkerGyms(await _pool(servers, settings))
    except ValueError as exc:
        raise GymClientError(f"codegym.servers: {exc}") from None
