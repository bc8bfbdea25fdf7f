"""Episodes of many gyms in one process: handles, lifecycle, limits and metrics.

The :class:`EpisodeManager` is what every MCP endpoint of a server shares. It

- loads gyms lazily from a bank (record, code, tasks; the tool list from ``SandboxPool.describe``), so
  a bank of 13k gyms costs nothing until a gym is first used;
- mints episode handles (unguessable tokens) for (gym, task, seed) and runs every call of an episode
  in the :class:`~mcp_gyms.sandbox.SandboxPool` (gym code never runs in this process);
- ends episodes at ``Done``, at the step budget, after ``idle_timeout`` seconds without a call, on
  ``close`` and on shutdown. An ended episode frees its sandbox state at once and leaves a small
  *tombstone* (its final status), so a late call gets "the episode is over" rather than "unknown";
- caps the number of open episodes (``max_episodes``), reaping idle ones before refusing a start;
- keeps implicit episodes for clients that carry no handle, keyed by (gym, key) — the key is
  ``"stdio"`` for a stdio server, the ``Mcp-Session-Id`` for an HTTP session;
- counts what ``GET /metrics`` reports.

Errors a client can cause raise :class:`EpisodeError` (kind, message, JSON-RPC code); the server turns
them into ``isError`` tool results or JSON-RPC errors. Programming errors raise as usual.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .bank import Bank, BankError, GymRecord, TaskRecord
from .constants import ErrorKind
from .episode import OracleResult
from .outcome import StepOutcome
from .protocol import EpisodeInfo, EpisodeStatus, ErrorCode
from .sandbox import UNKNOWN, GymCode, SandboxEpisode, SandboxError, SandboxPool

__all__ = ["EpisodeError", "EpisodeManager", "ServedEpisode", "LoadedGym", "Metrics", "rejection", "resolve_task"]

DEFAULT_MAX_EPISODES = 10_000
DEFAULT_IDLE_TIMEOUT_S = 900.0
_TOMBSTONES = 100_000
_GYM_RETRY_S = 30.0  # a gym that failed to load is not retried before this


class EpisodeError(Exception):
    """A request about episodes that cannot be served; ``kind`` is machine-readable."""

    NO_EPISODE = ErrorKind.NO_EPISODE
    UNKNOWN_EPISODE = ErrorKind.UNKNOWN_EPISODE
    EPISODE_OVER = ErrorKind.EPISODE_OVER
    WRONG_GYM = ErrorKind.WRONG_GYM
    UNKNOWN_GYM = ErrorKind.UNKNOWN_GYM
    UNKNOWN_TASK = ErrorKind.UNKNOWN_TASK
    GYM_UNAVAILABLE = ErrorKind.GYM_UNAVAILABLE
    TOO_MANY_EPISODES = ErrorKind.TOO_MANY_EPISODES
    SHUTTING_DOWN = ErrorKind.SHUTTING_DOWN
    SANDBOX_ERROR = ErrorKind.SANDBOX_ERROR

    _CODES = {
        NO_EPISODE: ErrorCode.INVALID_PARAMS,
        UNKNOWN_EPISODE: ErrorCode.UNKNOWN_EPISODE,
        EPISODE_OVER: ErrorCode.UNKNOWN_EPISODE,
        WRONG_GYM: ErrorCode.WRONG_GYM,
        UNKNOWN_GYM: ErrorCode.INVALID_PARAMS,
        UNKNOWN_TASK: ErrorCode.INVALID_PARAMS,
        GYM_UNAVAILABLE: ErrorCode.GYM_UNAVAILABLE,
        TOO_MANY_EPISODES: ErrorCode.TOO_MANY_EPISODES,
        SHUTTING_DOWN: ErrorCode.SHUTTING_DOWN,
        SANDBOX_ERROR: ErrorCode.SANDBOX_ERROR,
    }

    def __init__(self, kind: str, message: str, status: EpisodeStatus | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status  # the final status, for an episode that is over

    @property
    def code(self) -> int:
        return self._CODES.get(self.kind, ErrorCode.INVALID_PARAMS)


@dataclass
class LoadedGym:
    """A gym ready to serve: its record, code, tasks and tool list (as the sandbox describes it)."""

    id: str
    record: GymRecord
    code: GymCode
    tools: list[dict[str, Any]]
    max_steps: int
    tasks: list[TaskRecord]

    def input_schema(self, name: str) -> dict[str, Any] | None:
        for t in self.tools:
            if t["name"] == name:
                return t["input_schema"]
        return None

    def resolve_task(self, task: int | str | None = None, difficulty: str | None = None) -> int:
        """The index of a task named by index, id, or difficulty (first of it); task 0 by default."""
        return resolve_task(self.id, self.tasks, task, difficulty)


def rejection(record: GymRecord) -> str | None:
    """Why a gym failed verification ("failed verification: <checks>"), or None if it did not fail
    (verified, or never verified at all)."""
    report = record.verification
    if report is None or report.verified:
        return None
    failed = [f"{name}: {why}" for name, why in report.checks.items() if why != "ok"]
    return "failed verification" + (f" ({'; '.join(failed)[:300]})" if failed else "")


def resolve_task(gym_id: str, tasks: list[TaskRecord], task: int | str | None = None,
                 difficulty: str | None = None) -> int:
    """The index in ``tasks`` of a task named by index (int), id (str), or difficulty (its first task);
    task 0 when neither is given. Raises :class:`EpisodeError` (``unknown_task``) naming what exists."""
    if not tasks:
        raise EpisodeError(EpisodeError.UNKNOWN_TASK, f"gym {gym_id!r} has no tasks")
    if task is not None:
        if isinstance(task, bool):
            raise EpisodeError(EpisodeError.UNKNOWN_TASK, "task must be an index (integer) or a task id")
        if isinstance(task, int):
            if 0 <= task < len(tasks):
                return task
            raise EpisodeError(EpisodeError.UNKNOWN_TASK,
                               f"gym {gym_id!r} has {len(tasks)} tasks (0..{len(tasks) - 1}); there is no task #{task}")
        for i, t in enumerate(tasks):
            if t.id == task:
                return i
        if task.isdigit() and int(task) < len(tasks):  # "3" typed by a person
            return int(task)
        ids = ", ".join(t.id for t in tasks[:12])
        raise EpisodeError(EpisodeError.UNKNOWN_TASK,
                           f"gym {gym_id!r} has no task {task!r} (tasks: {ids}{', ...' if len(tasks) > 12 else ''})")
    if difficulty is not None:
        for i, t in enumerate(tasks):
            if t.difficulty == difficulty:
                return i
        raise EpisodeError(EpisodeError.UNKNOWN_TASK, f"gym {gym_id!r} has no {difficulty!r} task")
    return 0


@dataclass(eq=False)
class ServedEpisode:
    """An open episode: its handle, what it plays, its sandbox episode and bookkeeping."""

    handle: str
    gym: LoadedGym
    task_index: int
    seed: int
    sandbox: SandboxEpisode
    implicit_key: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0

    @property
    def task(self) -> TaskRecord:
        return self.gym.tasks[self.task_index]

    def info(self) -> EpisodeInfo:
        return EpisodeInfo(episode=self.handle, gym=self.gym.id, task_id=self.task.id, task_index=self.task_index,
                           task_count=len(self.gym.tasks), difficulty=self.task.difficulty, seed=self.seed,
                           max_steps=self.sandbox.max_steps, task_text=self.gym.record.task_text)

    def status(self, ended: str | None = None) -> EpisodeStatus:
        sb = self.sandbox
        return EpisodeStatus(episode=self.handle, gym=self.gym.id, task_id=self.task.id, steps=sb.steps,
                             reward=sb.reward, done=sb.done, terminated=sb.terminated, truncated=sb.truncated,
                             open=ended is None, ended=ended)


class Metrics:
    """Counters and a latency histogram, rendered as Prometheus text by :mod:`mcp_gyms.metrics`."""

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.episodes_started = 0
        self.episodes_ended: Counter[str] = Counter()
        self.calls = 0
        self.hot_path_requests: Counter[str] = Counter()  # by method: answered by mcp_gyms.hot_path, not the SDK
        self.call_errors: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()  # requests refused before reaching a gym
        self.oracle_runs = 0
        self.latency_counts = [0] * (len(self.BUCKETS) + 1)
        self.latency_sum = 0.0

    def observe_latency(self, seconds: float) -> None:
        for i, bound in enumerate(self.BUCKETS):
            if seconds <= bound:
                self.latency_counts[i] += 1
                break
        else:
            self.latency_counts[-1] += 1
        self.latency_sum += seconds


class EpisodeManager:
    """Open episodes of the gyms of one bank, on one sandbox pool. Use as ``async with``.

    Args:
        bank: where gyms come from.
        pool: the sandbox pool every call runs in (the caller owns it and closes it after this).
        gyms: serve only these gym ids (default: every gym of the bank).
        max_episodes: cap on open episodes.
        idle_timeout: seconds without a call after which an episode is closed (None: never).
        shutdown_grace: seconds :meth:`aclose` waits for in-flight calls before closing episodes.
        allow_unverified: serve gyms that failed verification too (they are refused by default; gyms
            never verified at all, such as hand-written ones, are served).
    """

    def __init__(self, bank: Bank, pool: SandboxPool, *, gyms: list[str] | None = None,
                 max_episodes: int = DEFAULT_MAX_EPISODES, idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
                 shutdown_grace: float = 10.0, allow_unverified: bool = False) -> None:
        if max_episodes < 1:
            raise ValueError("max_episodes must be at least 1")
        if idle_timeout is not None and not (math.isfinite(idle_timeout) and idle_timeout > 0):
            raise ValueError("idle_timeout must be a positive number of seconds (or None)")
        self.bank = bank
        self.pool = pool
        self.allowed = set(gyms) if gyms is not None else None
        for gym_id in self.allowed or ():
            if gym_id not in bank:
                raise BankError(f"no gym {gym_id!r} in bank {bank.root}")
        self.max_episodes = max_episodes
        self.idle_timeout = idle_timeout
        self.shutdown_grace = shutdown_grace
        self.allow_unverified = allow_unverified
        self.metrics = Metrics()
        self.started_at = time.time()
        self._gyms: dict[str, LoadedGym] = {}
        self._gym_failures: dict[str, tuple[float, str]] = {}
        self._gym_locks: dict[str, anyio.Lock] = {}
        self._live: dict[str, ServedEpisode] = {}
        self._ended: OrderedDict[str, EpisodeStatus] = OrderedDict()
        self._implicit: dict[tuple[str, str], str] = {}
        self._implicit_of: dict[str, tuple[str, str]] = {}
        self._starting = 0
        self._in_flight = 0
        self._quiet = anyio.Event()
        self._quiet.set()
        self._closing = False
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._reaper_scope = anyio.CancelScope()

    # --- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> EpisodeManager:
        self._stack = contextlib.AsyncExitStack()
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        if self.idle_timeout is not None:
            self._tg.start_soon(self._reaper)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closing(self) -> bool:
        return self._closing

    async def shutdown(self) -> None:
        """Stop taking calls, let in-flight calls finish (up to ``shutdown_grace`` s), close every episode.

        Idempotent; may be called from any task (``aclose``/``async with`` exit call it too)."""
        self._closing = True
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.shutdown_grace):
                await self._quiet.wait()
            async with anyio.create_task_group() as tg:
                for ep in list(self._live.values()):
                    tg.start_soon(self._end, ep, "shutdown")
        self._reaper_scope.cancel()

    async def aclose(self) -> None:
        """:meth:`shutdown`, then stop the idle reaper (call from the task that entered ``async with``)."""
        await self.shutdown()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def _reaper(self) -> None:
        assert self.idle_timeout is not None
        period = max(0.05, min(self.idle_timeout / 4, 30.0))
        with self._reaper_scope:
            while True:
                await anyio.sleep(period)
                await self.reap_idle()

    async def reap_idle(self) -> int:
        """Close the episodes idle for longer than ``idle_timeout``; return how many."""
        if self.idle_timeout is None:
            return 0
        cutoff = time.monotonic() - self.idle_timeout
        stale = [ep for ep in self._live.values() if ep.in_flight == 0 and ep.last_used < cutoff]
        for ep in stale:
            await self._end(ep, "idle")
        return len(stale)

    # --- gyms --------------------------------------------------------------------------------
    def serves(self, gym_id: str) -> bool:
        """Whether ``gym_id`` is one of this server's gyms (index only; loads nothing)."""
        return gym_id in self.bank and (self.allowed is None or gym_id in self.allowed)

    @property
    def gym_ids(self) -> list[str]:
        return [g for g in self.bank.gym_ids if self.allowed is None or g in self.allowed]

    async def gym(self, gym_id: str) -> LoadedGym:
        """The loaded gym (loading it on first use). Raises EpisodeError for unknown or broken gyms."""
        loaded = self._gyms.get(gym_id)
        if loaded is not None:
            return loaded
        if not self.serves(gym_id):
            raise EpisodeError(EpisodeError.UNKNOWN_GYM, f"no gym {gym_id!r} on this server")
        lock = self._gym_locks.setdefault(gym_id, anyio.Lock())
        async with lock:
            if gym_id in self._gyms:
                return self._gyms[gym_id]
            failed = self._gym_failures.get(gym_id)
            if failed is not None and time.monotonic() - failed[0] < _GYM_RETRY_S:
                raise EpisodeError(EpisodeError.GYM_UNAVAILABLE, failed[1])
            try:
                record, code, tasks = await anyio.to_thread.run_sync(self._read_gym, gym_id)
                rejected = rejection(record)
                if rejected and not self.allow_unverified:
                    raise BankError(f"{rejected}; the server refuses it unless started with --allow-unverified")
                gym_code = GymCode(code, record.class_name)
                described = await self.pool.describe(gym_code)
            except (BankError, SandboxError) as exc:
                message = f"gym {gym_id!r} cannot be served: {exc}"
                self._gym_failures[gym_id] = (time.monotonic(), message)
                raise EpisodeError(EpisodeError.GYM_UNAVAILABLE, message) from None
            loaded = LoadedGym(gym_id, record, gym_code, list(described["tools"]), int(described["max_steps"]),
                               tasks)
            self._gyms[gym_id] = loaded
            return loaded

    def _read_gym(self, gym_id: str) -> tuple[GymRecord, str, list[TaskRecord]]:
        return self.bank.gym(gym_id), self.bank.code(gym_id), self.bank.tasks(gym_id)

    # --- episodes ----------------------------------------------------------------------------
    @property
    def open_episodes(self) -> int:
        return len(self._live)

    async def start(self, gym_id: str, task: int | str | None = None, difficulty: str | None = None,
                    seed: int | None = None, *, implicit_key: str | None = None) -> ServedEpisode:
        """Open an episode of ``gym_id`` on a task (see :meth:`LoadedGym.resolve_task`).

        With ``implicit_key`` the episode becomes the implicit episode of that key (replacing, and
        closing, the previous one)."""
        self._check_open()
        gym = await self.gym(gym_id)
        index = gym.resolve_task(task, difficulty)
        record = gym.tasks[index]
        if len(self._live) + self._starting >= self.max_episodes:
            await self.reap_idle()
        replaced = self._live.get(self._implicit.get((gym_id, implicit_key), "")) if implicit_key else None
        if len(self._live) + self._starting - (replaced is not None) >= self.max_episodes:
            self.metrics.rejected[EpisodeError.TOO_MANY_EPISODES] += 1
            raise EpisodeError(EpisodeError.TOO_MANY_EPISODES,
                               f"too many open episodes (the cap is {self.max_episodes}); close finished "
                               "episodes or try again later")
        if replaced is not None:
            await self._end(replaced, "closed")
        self._starting += 1
        try:
            seed = record.seed if seed is None else seed
            try:
                answer = UNKNOWN if record.answer is None else record.answer  # the bank's answer judges Done
                sandbox = await self.pool.open(gym.code, record.config, seed, answer=answer)
            except SandboxError as exc:
                raise EpisodeError(EpisodeError.SANDBOX_ERROR, f"could not start an episode of {gym_id!r}: {exc}") \
                    from None
        finally:
            self._starting -= 1
        handle = secrets.token_urlsafe(18)
        ep = ServedEpisode(handle, gym, index, seed, sandbox, implicit_key)
        self._live[handle] = ep
        if implicit_key is not None:
            self._implicit[(gym_id, implicit_key)] = handle
            self._implicit_of[handle] = (gym_id, implicit_key)
        self.metrics.episodes_started += 1
        if self._closing:  # shutdown began while the sandbox opened it
            await self._end(ep, "shutdown")
            raise EpisodeError(EpisodeError.SHUTTING_DOWN, "the server is shutting down")
        return ep

    def get(self, handle: str, gym_id: str | None = None) -> ServedEpisode:
        """The open episode ``handle`` (of ``gym_id`` when given). Raises EpisodeError otherwise."""
        ep = self._live.get(handle)
        if ep is None:
            ended = self._ended.get(handle)
            if ended is None:
                raise EpisodeError(EpisodeError.UNKNOWN_EPISODE,
                                   f"unknown episode {handle!r}: start one with codegym/episodes/start")
            if gym_id is not None and ended.gym != gym_id:
                raise EpisodeError(EpisodeError.WRONG_GYM, f"episode {handle!r} belongs to gym {ended.gym!r}")
            raise EpisodeError(EpisodeError.EPISODE_OVER, f"the episode is over ({_ENDED[ended.ended or 'closed']}); "
                               "start a new one", status=ended)
        if gym_id is not None and ep.gym.id != gym_id:
            raise EpisodeError(EpisodeError.WRONG_GYM,
                               f"episode {handle!r} belongs to gym {ep.gym.id!r}, not {gym_id!r}")
        return ep

    def implicit(self, gym_id: str, key: str) -> str | None:
        """The handle of the implicit episode of (gym, key), if there is one (open or ended)."""
        return self._implicit.get((gym_id, key))

    def status(self, handle: str, gym_id: str | None = None) -> EpisodeStatus:
        try:
            return self.get(handle, gym_id).status()
        except EpisodeError as exc:
            if exc.status is not None:
                return exc.status
            raise

    async def call(self, ep: ServedEpisode, tool: str, arguments: str) -> StepOutcome:
        """One tool call on an open episode (arguments as JSON text). Never raises for a bad call."""
        self._check_open()
        ep.in_flight += 1
        self._in_flight += 1
        self._quiet = self._quiet if self._in_flight > 1 else anyio.Event()
        started = time.monotonic()
        try:
            try:
                result = await ep.sandbox.call(tool, arguments)
            except SandboxError as exc:
                sb = ep.sandbox
                result = StepOutcome.of(f"Error: {exc}", 0.0, sb.terminated, sb.truncated, sb.steps,
                                    error=ErrorKind.SANDBOX_ERROR)
        finally:
            elapsed = time.monotonic() - started
            ep.in_flight -= 1
            ep.last_used = time.monotonic()
            self._in_flight -= 1
            if self._in_flight == 0:
                self._quiet.set()
            self.metrics.calls += 1
            self.metrics.observe_latency(elapsed)
        if result.error is not None:
            self.metrics.call_errors[result.error] += 1
        if result.done and ep.handle in self._live:
            await self._end(ep, "done" if result.terminated else "truncated")
        return result

    async def close(self, handle: str, gym_id: str | None = None) -> EpisodeStatus:
        """Close an episode (idempotent: closing an ended episode returns its final status)."""
        try:
            ep = self.get(handle, gym_id)
        except EpisodeError as exc:
            if exc.status is not None:
                return exc.status
            raise
        return await self._end(ep, "closed")

    async def oracle(self, ep: ServedEpisode) -> OracleResult:
        """Play the gym's oracle on the episode's (task, seed) in the sandbox; the episode is untouched."""
        self._check_open()
        self.metrics.oracle_runs += 1
        try:
            return await self.pool.run_oracle(ep.gym.code, ep.task.config, ep.seed, ep.sandbox.max_steps,
                                              answer=ep.sandbox.answer)
        except SandboxError as exc:
            raise EpisodeError(EpisodeError.SANDBOX_ERROR, f"the oracle failed: {exc}") from None

    async def _end(self, ep: ServedEpisode, reason: str) -> EpisodeStatus:
        if self._live.pop(ep.handle, None) is None:
            return self._ended.get(ep.handle) or ep.status("closed")
        with anyio.CancelScope(shield=True):
            try:
                await ep.sandbox.aclose()  # waits for a call in flight on this episode
            except Exception:  # noqa: BLE001 - a dead worker has nothing left to free
                pass
        status = ep.status(reason)
        self._ended[ep.handle] = status
        self.metrics.episodes_ended[reason] += 1
        while len(self._ended) > _TOMBSTONES:
            old, _ = self._ended.popitem(last=False)
            key = self._implicit_of.pop(old, None)
            if key is not None and self._implicit.get(key) == old:
                del self._implicit[key]
        return status

    def _check_open(self) -> None:
        if self._closing:
            self.metrics.rejected[EpisodeError.SHUTTING_DOWN] += 1
            raise EpisodeError(EpisodeError.SHUTTING_DOWN, "the server is shutting down; no new calls are taken")

    # --- metrics -----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"status": "stopping" if self._closing else "ok", "gyms": len(self.gym_ids),
                "gyms_loaded": len(self._gyms), "episodes_open": len(self._live),
                "max_episodes": self.max_episodes, "workers": self.pool.concurrency, "live_workers": self.pool.live_workers,
                "uptime_s": round(time.time() - self.started_at, 1)}


_ENDED = {"done": "Done was called", "truncated": "the step budget is spent", "closed": "it was closed",
          "idle": "it was closed after its idle timeout", "shutdown": "the server shut down"}
