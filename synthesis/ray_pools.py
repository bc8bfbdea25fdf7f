"""Sandbox pools on a Ray cluster: ``codegym synth --ray ADDRESS|auto|local``.

The synthesis stages need only a small part of :class:`mcp_gyms.sandbox.SandboxPool`: ``describe``,
``reference_answer``, ``run_oracle``, ``execute``, ``slots`` (its length sets how many requests a stage
sends at once), ``stats`` and ``aclose``. :class:`RayCluster` provides that part for the three pools
of a run (``tests``, ``reference``, ``gyms``) with the work spread over a Ray cluster:

- **Actors.** One :class:`SandboxHost` actor per :data:`MAX_WORKERS_PER_ACTOR` CPUs of each node
  (at least one per node with a CPU), pinned to its node. It owns three local ``SandboxPool``\\ s, one
  per limit set, of ``workers`` processes each (``--workers``; default: the actor's CPUs), and
  reserves that many CPUs. Gym and solution code reach it as plain strings and run only inside its
  sandbox workers, exactly as on one machine; the actor process never imports or executes them.
- **Dispatch.** :class:`RemotePool` sends each request to the live actor with the fewest requests in
  flight for that pool (relative to its workers); ``describe`` answers are cached per gym. ``slots``
  has one entry per remote worker, so the stages' concurrency grows with the cluster.
- **Errors.** A gym's failure comes back as :class:`~mcp_gyms.sandbox.SandboxError` with the message
  the local pool would give (actors return it as data, so no Ray wrapper or remote traceback leaks
  into drop reasons). A lost actor or node, a lost object or an unexpected error inside the actor is
  the cluster's fault, not the gym's: it raises :class:`SandboxUnavailable`, a
  :class:`~synthesis.errors.TransientError`, so the problem is left incomplete and a rerun continues
  it. A dead actor gets no more requests; the run goes on with the others.
- **Lifetime.** :meth:`RayCluster.start` connects (``ray.init``) unless this process is connected
  already, starts the actors and waits until they are up; :meth:`RayCluster.aclose` closes their
  pools, kills them and disconnects (``ray.shutdown``) only when ``start`` connected. Actors are not
  detached, so Ray also removes them when this process exits however it ends; their sandbox workers
  die with them (``PR_SET_PDEATHSIG``).

Every node needs this package installed (the actor class is imported there by name). Requests are
awaited as asyncio futures, so callers run on anyio's asyncio backend (the pipeline's default).
``ray`` is imported only here and only when a cluster is started: the core install does not need it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from mcp_gyms.episode import OracleResult
from mcp_gyms.sandbox import GymCode, PoolStats, SandboxError, SandboxLimits, SandboxPool

from .errors import TransientError
from .packages import SANDBOX_PRELOAD

__all__ = ["ActorPlan", "ClusterError", "RayCluster", "RemotePool", "SandboxHost", "SandboxUnavailable",
           "plan_actors"]

POOL_NAMES = ("tests", "reference", "gyms")
MAX_WORKERS_PER_ACTOR = 16  # one actor's event loop serves this many workers per pool at most (by default)
CONNECT_TIMEOUT_S = 10.0  # reaching the head node's port before ray.init (which would retry for minutes)
READY_TIMEOUT_S = 120.0  # actors that are not up by then (no free CPUs, broken node) are given up
CLOSE_TIMEOUT_S = 30.0  # for actors to stop their sandbox workers before they are killed
_MAX_CONCURRENCY = 10_000  # requests one actor accepts at once; its pools queue them for their workers
_OPS = ("describe", "reference_answer", "run_oracle", "execute")
_DESCRIBE_CACHE = 4096  # gyms whose description the driver keeps (a problem needs its own for minutes at most)
RAY_MISSING = "--ray needs the ray package (pip install 'codegym-mcp[rl]' or pip install ray)"


class ClusterError(ValueError):
    """A Ray cluster that cannot be used: ray missing, an unreachable address, no CPUs, no actor up."""


class SandboxUnavailable(TransientError):
    """A sandbox request lost to the cluster (actor or node died, object lost): not the gym's fault."""


# --- the actor (runs on a cluster node) ---------------------------------------------------------
class SandboxHost:
    """The body of one Ray actor: three local sandbox pools on its node, driven with plain data.

    Made into an actor by :meth:`RayCluster.start` (``ray.remote(SandboxHost)``); it has async
    methods, so Ray runs it as an async actor and serves many requests at once. Its pools are created
    on the actor's event loop at the first request; their workers start on demand as usual."""

    def __init__(self, limits: Mapping[str, SandboxLimits], workers: int) -> None:
        self._limits = dict(limits)
        self._workers = workers
        self._pools: dict[str, SandboxPool] = {}
        self._closed = False

    def _pool(self, name: str) -> SandboxPool:
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        if name not in self._pools:
            self._pools[name] = SandboxPool(self._workers, self._limits[name],  # KeyError: a caller's bug
                                            preload=SANDBOX_PRELOAD if name != "gyms" else ())
        return self._pools[name]

    async def ready(self) -> dict[str, Any]:
        """Where the actor runs: ``{"node_id", "host", "pid", "workers"}`` (answered once it is up)."""
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
                "pid": os.getpid(), "workers": self._workers}

    async def call(self, pool: str, op: str, payload: dict[str, Any]) -> tuple[bool, Any, dict[str, int]]:
        """Run one request on pool ``pool``; return ``(ok, value, stats)``.

        ``ok`` False means the sandbox refused the code: ``value`` is the :class:`SandboxError`'s
        message. ``stats`` is that pool's :class:`~mcp_gyms.sandbox.PoolStats` after the request.
        ``op`` is one of ``describe``, ``reference_answer``, ``run_oracle``, ``execute``; the payload
        holds the matching arguments of the :class:`SandboxPool` method (a gym as ``code`` and
        ``class_name``). Anything else raised here is a bug or a broken node, not the gym's doing."""
        if op not in _OPS:
            raise ValueError(f"unknown sandbox operation {op!r}")
        target = self._pool(pool)
        try:
            if op == "execute":
                value: Any = await target.execute(payload["code"], payload["entry"], payload["args"],
                                                  payload.get("scope"))
            else:
                gym = GymCode(payload["code"], payload["class_name"])
                if op == "describe":
                    value = await target.describe(gym)
                elif op == "reference_answer":
                    value = await target.reference_answer(gym, payload["task"])
                else:
                    result = await target.run_oracle(gym, payload["task"], payload["seed"], payload["max_steps"],
                                                      timeout=payload["timeout"])
                    value = dataclasses.asdict(result)
        except SandboxError as exc:
            return False, str(exc), vars(target.stats).copy()
        return True, value, vars(target.stats).copy()

    async def worker_pids(self) -> list[int]:
        """The process ids of this actor's live sandbox workers (for diagnostics and tests)."""
        return [slot.process.pid for pool in self._pools.values() for slot in pool.slots
                if slot.process is not None]

    async def close(self) -> None:
        """Stop every sandbox worker (requests in flight finish first) and remove their temp dirs."""
        self._closed = True
        for pool in self._pools.values():
            await pool.aclose()


# --- planning -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActorPlan:
    """One actor to start: on which node, with how many workers per pool, reserving how many CPUs."""

    node_id: str
    workers: int
    cpus: int


def plan_actors(node_cpus: Mapping[str, float], workers: int | None = None) -> list[ActorPlan]:
    """The actors for a cluster whose nodes have ``node_cpus`` (node id -> CPUs; nodes under 1 get none).

    Each actor gets ``workers`` workers per pool (default: ``min(node CPUs, MAX_WORKERS_PER_ACTOR)``)
    and reserves that many CPUs, or the node's CPUs when it has fewer (so it can always be placed);
    a node hosts ``CPUs // workers`` actors, at least one."""
    plans = []
    for node_id, cpus in node_cpus.items():
        have = int(cpus)
        if have < 1:
            continue
        per_actor = workers or min(have, MAX_WORKERS_PER_ACTOR)
        reserve = min(per_actor, have)
        plans += [ActorPlan(node_id, per_actor, reserve)] * max(1, have // per_actor)
    return plans


def _check_reachable(address: str) -> None:
    """Fail fast (ClusterError) when ``HOST:PORT`` (or ``ray://HOST:PORT``) does not accept connections.

    ``ray.init`` would retry an unreachable head node for minutes. Other forms (``auto``, ``local``)
    are left to Ray, which answers them at once."""
    target = address.split("://", 1)[1] if "://" in address else address
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterError(f"cannot reach a Ray cluster at {address}: {why}") from None


@dataclass(eq=False)
class _Actor:
    index: int
    name: str
    handle: Any
    plan: ActorPlan
    host: str = "?"
    pid: int = 0
    alive: bool = True
    in_flight: dict[str, int] = field(default_factory=lambda: dict.fromkeys(POOL_NAMES, 0))


# --- the driver side ----------------------------------------------------------------------------
class RayCluster:
    """The actors of one synthesis run and the three :class:`RemotePool`\\ s that use them."""

    def __init__(self, ray: Any, actors: list[_Actor], address: str, owns_connection: bool) -> None:
        self._ray = ray
        self.actors = actors
        self.address = address
        self._owns_connection = owns_connection
        self._closed = False
        self._rr = 0
        self.pools = {name: RemotePool(self, name) for name in POOL_NAMES}

    @classmethod
    def start(cls, address: str, limits: Mapping[str, SandboxLimits], workers: int | None = None) -> RayCluster:
        """Connect to the cluster at ``address`` (unless connected already), start the actors, wait for them.

        ``limits`` maps each pool name (``tests``, ``reference``, ``gyms``) to its limits; ``workers`` is
        the workers per pool of each actor (default: see :func:`plan_actors`). Blocks until the actors
        are up (at most :data:`READY_TIMEOUT_S`); actors that do not come up are dropped. Raises
        :class:`ClusterError` (ray missing, address unreachable, no CPU, no actor up)."""
        try:
            import ray
        except ImportError:
            raise ClusterError(RAY_MISSING) from None
        owns = False
        if not ray.is_initialized():
            _check_reachable(address)
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except Exception as exc:  # ConnectionError, ValueError, RuntimeError... Ray says why
                raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
            owns = True
        actors: list[_Actor] = []
        try:
            nodes = {n["NodeID"]: n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")}
            plans = plan_actors(nodes, workers)
            if not plans:
                raise ClusterError(f"the Ray cluster at {address} has no live node with a CPU")
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            host_class = ray.remote(SandboxHost)
            token = uuid.uuid4().hex[:8]
            for index, plan in enumerate(plans):
                name = f"codegym-sandbox-{token}-{index}"
                handle = host_class.options(
                    name=name, num_cpus=plan.cpus, max_concurrency=_MAX_CONCURRENCY, max_restarts=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(plan.node_id, soft=False),
                ).remote(dict(limits), plan.workers)
                actors.append(_Actor(index, name, handle, plan))
            up = cls._wait_ready(ray, actors, address)
        except BaseException:
            for actor in actors:
                _kill(ray, actor.handle)
            if owns:
                ray.shutdown()
            raise
        return cls(ray, up, address, owns)

    @staticmethod
    def _wait_ready(ray: Any, actors: list[_Actor], address: str) -> list[_Actor]:
        refs = {actor.handle.ready.remote(): actor for actor in actors}
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=READY_TIMEOUT_S)
        up, errors = [], []
        for ref in done:
            actor = refs[ref]
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as exc:
                errors.append(_short(exc))
                continue
            actor.host, actor.pid = info["host"], info["pid"]
            up.append(actor)
        for actor in actors:
            if actor not in up:
                _kill(ray, actor.handle)
        if not up:
            why = errors[0] if errors else (f"none was up after {READY_TIMEOUT_S:.0f} s (each needs "
                                            f"{min(a.plan.cpus for a in actors)} free CPUs on its node)")
            raise ClusterError(f"no sandbox actor started on the Ray cluster at {address}: {why}")
        return sorted(up, key=lambda a: a.index)

    @property
    def where(self) -> str:
        """Where the sandbox work runs, for the report: ``ray (N actors on M nodes, W workers per pool)``,
        plus how many actors were lost, if any."""
        count = len(self.actors)
        nodes = len({a.plan.node_id for a in self.actors})
        workers = sum(a.plan.workers for a in self.actors)
        lost = sum(not a.alive for a in self.actors)
        return (f"ray ({count} actor{'s' if count != 1 else ''} on {nodes} node{'s' if nodes != 1 else ''}, "
                f"{workers} workers per pool" + (f"; {lost} lost" if lost else "") + ")")

    def _pick(self, pool: str) -> _Actor:
        live = [a for a in self.actors if a.alive]
        if not live:
            raise SandboxUnavailable(f"every sandbox actor on the Ray cluster at {self.address} is lost; "
                                     "run the same command again to continue")
        self._rr += 1
        return min(live, key=lambda a: (a.in_flight[pool] / a.plan.workers, (a.index - self._rr) % len(self.actors)))

    def _lost(self, actor: _Actor, exc: BaseException) -> SandboxUnavailable:
        """The transient error for a request that ``exc`` (a Ray error) ended; retire a dead actor."""
        ray = self._ray
        if isinstance(exc, ray.exceptions.RayActorError) and not isinstance(exc, ray.exceptions.ActorUnavailableError):
            actor.alive = False
            what = "was lost"
        elif isinstance(exc, ray.exceptions.RayTaskError):
            what = "failed"
        else:
            what = "lost a request"
        return SandboxUnavailable(f"the sandbox actor {actor.index} on {actor.host} {what} ({_short(exc)}); "
                                  "run the same command again to continue")

    async def request(self, pool: str, op: str, payload: dict[str, Any]) -> Any:
        """Send one request to the least-loaded live actor; the value, or SandboxError / SandboxUnavailable."""
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        actor = self._pick(pool)
        actor.in_flight[pool] += 1
        try:
            ref = actor.handle.call.remote(pool, op, payload)
            try:
                ok, value, stats = await ref
            except self._ray.exceptions.RayError as exc:
                raise self._lost(actor, exc) from None
            except anyio.get_cancelled_exc_class():
                _cancel(self._ray, ref)
                raise
        finally:
            actor.in_flight[pool] -= 1
        self.pools[pool]._stats[actor.index] = stats
        if not ok:
            raise SandboxError(value)
        return value

    async def aclose(self) -> None:
        """Stop the actors' sandbox workers, kill the actors, disconnect if :meth:`start` connected.

        Idempotent; waits at most :data:`CLOSE_TIMEOUT_S` for the actors to close their pools."""
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        refs = [a.handle.close.remote() for a in self.actors if a.alive]
        with anyio.move_on_after(CLOSE_TIMEOUT_S):
            for ref in refs:
                try:
                    await ref
                except ray.exceptions.RayError:
                    pass
        for actor in self.actors:
            _kill(ray, actor.handle)
        if self._owns_connection:
            ray.shutdown()


class RemotePool:
    """One of a run's three pools (``tests``, ``reference``, ``gyms``), served by a :class:`RayCluster`.

    Has the subset of :class:`~mcp_gyms.sandbox.SandboxPool` the synthesis stages use, with the same
    contracts (values, :class:`SandboxError` messages); cluster trouble raises :class:`SandboxUnavailable`."""

    def __init__(self, cluster: RayCluster, name: str) -> None:
        self.name = name
        self._cluster = cluster
        self._descriptions: OrderedDict[str, dict[str, Any]] = OrderedDict()  # least recently used first
        self._stats: dict[int, dict[str, int]] = {}  # actor index -> that actor's counters for this pool

    @property
    def slots(self) -> Sequence[int]:
        """One entry per sandbox worker of this pool on the live actors (at least one)."""
        return range(max(1, sum(a.plan.workers for a in self._cluster.actors if a.alive)))

    @property
    def concurrency(self) -> int:
        """How many requests this pool runs at once (see ``SandboxPool.concurrency``)."""
        return len(self.slots)

    @property
    def stats(self) -> PoolStats:
        """This pool's counters summed over the actors (as each last reported them)."""
        total = PoolStats()
        for counters in self._stats.values():
            for name, value in counters.items():
                if hasattr(total, name):
                    setattr(total, name, getattr(total, name) + value)
        return total

    async def describe(self, gym: GymCode) -> dict[str, Any]:
        """Load the gym on a worker; ``{"tools": [...], "max_steps": n}``.

        Answers are cached per gym (the :data:`_DESCRIBE_CACHE` most recent), failures are not."""
        described = self._descriptions.get(gym.key)
        if described is None:
            described = await self._cluster.request(self.name, "describe",
                                                    {"code": gym.code, "class_name": gym.class_name})
            self._descriptions[gym.key] = described
            while len(self._descriptions) > _DESCRIBE_CACHE:
                self._descriptions.popitem(last=False)
        self._descriptions.move_to_end(gym.key)
        return {"tools": described["tools"], "max_steps": described["max_steps"]}

    async def reference_answer(self, gym: GymCode, task: dict[str, Any]) -> Any:
        """The gym's reference answer for ``task``, computed in a remote sandbox within the limits."""
        return await self._cluster.request(self.name, "reference_answer",
                                           {"code": gym.code, "class_name": gym.class_name, "task": task})

    async def run_oracle(self, gym: GymCode, task: dict[str, Any], seed: int = 0,
                         max_steps: int | None = None, timeout: float | None = None) -> OracleResult:
        """Play ``task`` with the gym's oracle in a remote sandbox (see ``SandboxPool.run_oracle``)."""
        raw = await self._cluster.request(self.name, "run_oracle", {
            "code": gym.code, "class_name": gym.class_name, "task": task, "seed": seed, "max_steps": max_steps,
            "timeout": timeout})
        calls = [(str(name), dict(args)) for name, args in raw["calls"]]
        return OracleResult(float(raw["reward"]), int(raw["steps"]), calls, raw["error"])

    async def execute(self, code: str, entry: str = "main", args: dict[str, Any] | None = None,
                      scope: str | None = None) -> Any:
        """Run untrusted non-gym code, ``entry(**args)``, in a remote sandbox (see ``SandboxPool.execute``)."""
        return await self._cluster.request(self.name, "execute", {"code": code, "entry": entry, "args": args or {},
                                                                  "scope": scope})

    async def aclose(self) -> None:
        """Nothing to do per pool: :meth:`RayCluster.aclose` stops the actors the three pools share."""


def _short(exc: BaseException) -> str:
    """A Ray error in one line: its type and the first line of its message (no remote traceback)."""
    cause = getattr(exc, "cause", None)  # RayTaskError: the exception raised inside the actor
    if isinstance(cause, BaseException):
        exc = cause
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    head = lines[0] if lines else ""
    return f"{type(exc).__name__}: {head[:200]}" if head else type(exc).__name__


def _cancel(ray: Any, ref: Any) -> None:
    try:
        ray.cancel(ref)
    except Exception:  # the request finished meanwhile, or the actor is gone: nothing to stop
        pass


def _kill(ray: Any, handle: Any) -> None:
    try:
        ray.kill(handle)
    except Exception:  # already dead
        pass
