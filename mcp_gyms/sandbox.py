"""Running untrusted gym code: a pool of locked-down worker processes, with trial then overwrite.

Gym code never runs in this process. A :class:`SandboxPool` owns worker processes
(:mod:`mcp_gyms.sandbox_worker`, locked down by :mod:`mcp_gyms.jail`). **A worker hosts one gym only**:
the episodes of a gym (up to ``workers`` processes of it, when it is busy), its oracle runs (workers of
their own, so a slow oracle never holds up episodes), and each ``execute`` scope get processes of their
own, so no gym's code can read, rewrite or poison another gym's episodes, rewards or verdicts. At most
``max_workers`` processes live at once; past that the least recently used idle one is stopped (its
episodes are rebuilt by replay when next used). An episode stays on its worker while that worker lives.

Guarantees, per call:

- **Rewards are decided here.** A worker reports the answer given to ``Done``; the host compares it
  with the task's reference answer (the one stored in the bank, or computed once per task by the
  gym's own worker) after a JSON round trip. Only a gym that overrides ``check_answer`` has its answer
  checked by code of its own (in its own worker: it can only judge itself).

- **Limits.** Wall time (default 3 s), CPU time (default = wall time) and memory (default 256 MiB
  per worker beyond the interpreter's own). A call that hits a limit returns an error observation
  within the limit + 1 s, and its worker is replaced.
- **Trial then overwrite.** Inside the worker a call runs against the live state with a snapshot
  taken first; any failure restores the snapshot. If the worker dies (limit, crash, ``os._exit``),
  the host still holds each episode's *committed call log* and rebuilds the episode on a fresh
  worker by replaying it before the episode's next call — so the episode keeps its last committed
  state and no other episode loses state. Replay relies on gyms being deterministic in
  ``(task, seed, calls)`` (the contract in :mod:`mcp_gyms.gym`).
- The host never trusts a worker: it reads length-prefixed JSON only (never pickle), bounds each
  frame near the largest real reply (a tool call's: the observation limit, JSON-escaped), checks reply
  ids, and treats anything odd as a broken worker, which it replaces.
- **Bystanders are not blamed.** When a worker dies of something the call in flight did not cause (a
  kill from outside, a reply that does not belong to it), the call is run again on a fresh worker after
  replay (at most 5 times; ``PoolStats.retries`` counts them). A call that hit its own limit, crashed
  or exited the worker gets the error.
- **Oracle runs** obey the per-call limits (each call its own CPU budget; a call over the wall-time
  limit fails the run), their step budget is capped at :data:`MAX_STEPS`, and a whole run is capped at
  ``SandboxLimits.oracle_s``.
- **Disk.** A worker's temp dir is a tmpfs of ``SandboxLimits.disk_mb`` where the kernel allows it, and
  is emptied after every request: files never carry state.
- **Pipelining.** Tool calls of different episodes that wait for the same worker are written to it
  together and answered one by one, back to back, each under its own limits (the worker re-arms its
  CPU limit per call; the host gives every reply its own wall-time deadline, counted from the
  previous reply). If the worker dies during one of them, that call gets the error and the calls
  queued behind it — which had not started — run on the fresh worker as if they had just arrived.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from .constants import ErrorKind
from .episode import OracleResult, parse_action
from .gym import DONE, normalise_answer
from .jail import protect_host
from .outcome import StepOutcome
from .zygote import WorkerProcess, Zygote, ZygoteLost, package_parent

__all__ = ["GymCode", "MAX_STEPS", "SandboxError", "SandboxEpisode", "SandboxLimits", "SandboxPool", "UNKNOWN"]

MAX_STEPS = 1024  # the most calls any episode or oracle run may take, whatever a gym declares
MAX_REPLY_FRAME = 4 * 1024 * 1024  # any reply but a tool call's (gym descriptions, oracle runs, exec results)
_STARTUP_TIMEOUT_S = 60.0
_MAX_REPLAY_S = 120.0  # every replayed call once finished within the limit; this only bounds the worst case
_SLACK_S = 0.5  # IPC allowance on top of a limit; the error still comes within limit + 1 s
_BATCH_CALLS = 64  # most calls written to a worker in one go
_BATCH_BYTES = 32 * 1024  # ... and most bytes: well under a pipe's buffer, so writing a batch never blocks
_MAX_DESCRIPTIONS = 4096  # gym descriptions a pool remembers (a long synthesis run meets many gyms)
_MAX_ANSWERS = 16384  # reference answers a pool remembers, per (gym, task)
_MAX_RETRIES = 5  # times a call is run again after its worker died of something it did not cause
_SPREAD_AT = 1  # open episodes on every worker of a gym before it gets another (up to ``workers``)
UNKNOWN: Any = object()  # "the reference answer is not known": the pool computes it
_KEEP_STDERR = bool(os.environ.get("CODEGYM_WORKER_STDERR"))  # debugging: workers' stderr to the host's


@dataclass(frozen=True)
class SandboxLimits:
    """Per-call limits. ``cpu_s`` defaults to ``time_s``; ``oracle_s`` caps a whole oracle run;
    ``disk_mb`` is the size of a worker's temp dir (where a tmpfs can be mounted for it)."""

    time_s: float = 3.0
    memory_mb: int = 256
    cpu_s: float | None = None
    max_observation_chars: int = 16_384
    oracle_s: float = 120.0
    disk_mb: int = 32

    @property
    def cpu(self) -> float:
        return self.cpu_s if self.cpu_s is not None else self.time_s

    @property
    def call_frame(self) -> int:
        """The largest reply a tool call can honestly produce: every observation character JSON-escaped
        (``\\uXXXX``), plus the result's other fields and the submitted answer."""
        return 6 * (self.max_observation_chars + 200) + 64 * 1024


@dataclass(frozen=True)
class GymCode:
    """The code of one gym, as the sandbox receives it."""

    code: str
    class_name: str

    @cached_property
    def key(self) -> str:
        return hashlib.sha256(f"{self.class_name}\0{self.code}".encode()).hexdigest()[:24]


class SandboxError(RuntimeError):
    """Gym code that could not be loaded or run (the message says why), or a pool that is closed."""


class _WorkerLost(Exception):
    """The worker died or broke protocol during a request. ``blameless``: the request in flight did not
    cause it (a kill from outside, a reply that was not its own), so it may run again elsewhere."""

    def __init__(self, kind: str, message: str, blameless: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.blameless = blameless


@dataclass
class PoolStats:
    """Counters for metrics and benchmarks."""

    requests: int = 0
    calls: int = 0
    call_errors: int = 0
    timeouts: int = 0
    worker_restarts: int = 0
    replays: int = 0
    retries: int = 0
    evictions: int = 0


_TMP_PREFIX = "codegym-worker-"
_swept = False


def sweep_stale_tmpdirs(root: str | None = None) -> list[str]:
    """Remove worker temp dirs left by hosts that died without cleaning up (e.g. SIGKILLed servers).

    A worker's dir is named ``codegym-worker-<host pid>-<random>``; it is removed only when no
    process has that pid any more, so a live server's workers are never touched. Returns the removed
    paths. Called once per process, when its first worker starts."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        names = [n for n in os.listdir(root) if n.startswith(_TMP_PREFIX)]
    except OSError:
        return removed
    for name in names:
        pid_text = name[len(_TMP_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # the host still runs
        except ProcessLookupError:
            pass
        except OSError:
            continue  # e.g. EPERM: some other user's live process
        path = os.path.join(root, name)
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(path)
    return removed


def _worker_env(tmpdir: str) -> dict[str, str]:
    """The whole environment a worker gets: nothing from the parent (no keys, no tokens)."""
    return {"PATH": "/usr/bin:/bin", "HOME": tmpdir, "TMPDIR": tmpdir, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(eq=False)
class _Call:
    """A tool call queued for a worker; settled with the worker's ``reply`` or an ``error``."""

    ep: SandboxEpisode
    tool: str
    args: str
    reply: dict[str, Any] | None = None
    error: Exception | None = None
    retries: int = 0

    @property
    def settled(self) -> bool:
        return self.reply is not None or self.error is not None


def _frame(msg: dict[str, Any]) -> bytes:
    data = json.dumps(msg).encode()
    return struct.pack(">I", len(data)) + data


_IO_ERRORS = (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError,
              OSError)


class _Slot:
    """One worker process (restarted on demand) for one gym (or one ``execute`` scope), and the
    episodes it hosts."""

    def __init__(self, pool: SandboxPool, group: str, gym: GymCode | None) -> None:
        self.pool = pool
        self.group = group
        self.gym = gym
        self.process: WorkerProcess | None = None
        self.reader: BufferedByteReceiveStream | None = None
        self.generation = 0
        self.loaded = False
        self.episodes = 0
        self.last_used = time.monotonic()
        self.lock = anyio.Lock(fast_acquire=True)  # no trip through the event loop when it is free
        self.next_id = 1
        self.tmpdir: str | None = None
        self.hello: dict[str, Any] = {}
        self.queue: deque[_Call] = deque()  # tool calls waiting for this worker, in arrival order

    async def _start(self) -> None:
        if self.pool._closed:
            raise SandboxError("the sandbox pool is closed")
        protect_host()
        global _swept
        if not _swept:
            _swept = True
            sweep_stale_tmpdirs()
        await self.pool._make_room(self)
        self.tmpdir = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-")
        limits = self.pool.limits
        config = {"tmpdir": self.tmpdir, "memory_mb": limits.memory_mb, "cpu_s": limits.cpu, "time_s": limits.time_s,
                  "max_observation_chars": limits.max_observation_chars, "disk_mb": limits.disk_mb,
                  "audit_hooks": self.pool.audit_hooks, "keep_stderr": _KEEP_STDERR,
                  "env": _worker_env(self.tmpdir)}
        try:
            self.process = await self.pool._zygote.fork(config)
        except ZygoteLost as exc:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
            raise _WorkerLost(ErrorKind.SANDBOX_ERROR, f"could not start a sandbox worker: {exc}", True) from None
        self.reader = BufferedByteReceiveStream(self.process.stdout)
        self.generation += 1
        self.loaded = False
        with anyio.move_on_after(_STARTUP_TIMEOUT_S):
            try:
                self.hello = (await self._receive(MAX_REPLY_FRAME)).get("hello", {})
                return
            except (*_IO_ERRORS, ValueError):
                pass
        code = await self._exit_code()
        await self._replace()
        raise _WorkerLost(ErrorKind.SANDBOX_ERROR, f"could not start a sandbox worker (exit status {code})",
                          blameless=code == -9)

    @property
    def alive(self) -> bool:
        return self.process is not None

    async def _kill(self) -> None:
        process, self.process, self.reader = self.process, None, None
        self.loaded = False
        if process is not None:
            with anyio.CancelScope(shield=True):
                try:
                    process.kill()
                except ProcessLookupError:
                    pass
                with anyio.move_on_after(5):
                    await process.wait()
                await process.aclose()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    async def _receive(self, limit: int) -> dict[str, Any]:
        assert self.reader is not None
        (length,) = struct.unpack(">I", await self.reader.receive_exactly(4))
        if length > limit:
            raise ValueError(f"worker sent a {length}-byte frame (limit {limit})")
        reply = json.loads(await self.reader.receive_exactly(length))
        if not isinstance(reply, dict):
            raise ValueError("worker sent a reply that is not a JSON object")
        return reply

    async def _read_reply(self, rid: int, limit: int) -> tuple[dict[str, Any], _WorkerLost | None]:
        """Read the reply to request ``rid`` (caller holds the lock and a deadline)."""
        try:
            reply = await self._receive(limit)
        except _IO_ERRORS:
            return {}, _WorkerLost(*_death_reason(await self._exit_code(), self.pool.limits))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return {}, _WorkerLost(ErrorKind.SANDBOX_ERROR, f"the sandbox worker broke protocol: {exc}")
        if reply.get("id") != rid:  # a frame written by gym code, or one left behind by it
            return {}, _WorkerLost(ErrorKind.SANDBOX_ERROR, "the sandbox worker sent a reply out of turn", True)
        return reply, None

    async def _exchange(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request/reply. Caller holds the lock. Raises _WorkerLost (worker replaced) on trouble."""
        if self.process is None:
            await self._start()
        assert self.process is not None and self.process.stdin is not None
        msg = {**msg, "id": self.next_id}
        self.next_id += 1
        self.pool.stats.requests += 1
        self.last_used = time.monotonic()
        limit = self.pool.limits.call_frame if msg["op"] == "call" else MAX_REPLY_FRAME
        failure: _WorkerLost | None = None
        reply: dict[str, Any] = {}
        with anyio.move_on_after(timeout + _SLACK_S) as scope:
            try:
                await self.process.stdin.send(_frame(msg))
            except _IO_ERRORS:
                failure = _WorkerLost(*_death_reason(await self._exit_code(), self.pool.limits))
            else:
                reply, failure = await self._read_reply(msg["id"], limit)
        if scope.cancelled_caught:
            self.pool.stats.timeouts += 1
            failure = _WorkerLost(ErrorKind.TIME_LIMIT, f"exceeded the time limit of {timeout:g} s")
        if failure is None and reply.get("restart"):
            await self._replace()
            return reply
        if failure is not None:
            await self._replace()
            raise failure
        return reply

    async def _exit_code(self) -> int | None:
        if self.process is None:
            return None
        with anyio.move_on_after(1):
            return await self.process.wait()
        return None

    async def _replace(self) -> None:
        self.pool.stats.worker_restarts += 1
        await self._kill()  # the next request starts a fresh worker

    async def request(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request (loading this slot's gym first), run again on a fresh worker when the worker
        died of something the request did not cause."""
        async with self.lock:
            with anyio.CancelScope(shield=True):  # a started exchange always completes or fails clearly
                for attempt in range(_MAX_RETRIES + 1):
                    await self._check_alive()
                    try:
                        await self._ensure_loaded()
                        return await self._exchange(msg, timeout)
                    except _WorkerLost as exc:
                        if not exc.blameless or attempt == _MAX_RETRIES:
                            raise
                        self.pool.stats.retries += 1
        raise AssertionError("unreachable")

    async def _check_alive(self) -> None:
        """A worker that died while idle (killed from outside, OOM killer) is replaced before use, so
        the next request does not take the blame."""
        if self.process is not None and self.process.returncode is not None:
            await self._replace()

    async def _ensure_loaded(self) -> None:
        if self.gym is None or (self.process is not None and self.loaded):
            return
        gym = self.gym
        reply = await self._exchange({"op": "load", "key": gym.key, "code": gym.code, "class_name": gym.class_name},
                                     self.pool.limits.time_s * 2)
        if not reply.get("ok"):
            raise SandboxError(f"gym {gym.class_name} failed to load: {reply.get('error')}")
        self.loaded = True
        self.pool._remember(gym.key, reply)

    async def _ensure_episode(self, ep: SandboxEpisode) -> None:
        """Make sure ``ep`` lives in the current worker: open it, replaying its committed calls."""
        await self._ensure_loaded()
        if ep._generation == self.generation and self.process is not None:
            return
        if ep._generation != -2:
            self.pool.stats.replays += 1
        reply = await self._exchange(
            {"op": "open", "key": ep.gym.key, "ep": ep.id, "task": ep.task, "seed": ep.seed,
             "max_steps": ep.max_steps, "replay": ep.committed, "steps": ep.steps},
            min(self.pool.limits.time_s * (1 + len(ep.committed)), _MAX_REPLAY_S),
        )
        if not reply.get("ok"):
            raise SandboxError(f"could not open an episode of {ep.gym.class_name}: {reply.get('error')}")
        ep._generation = self.generation

    async def open_episode(self, ep: SandboxEpisode) -> None:
        async with self.lock:
            with anyio.CancelScope(shield=True):
                for attempt in range(_MAX_RETRIES + 1):
                    await self._check_alive()
                    try:
                        return await self._ensure_episode(ep)
                    except _WorkerLost as exc:
                        if not exc.blameless or attempt == _MAX_RETRIES:
                            raise
                        self.pool.stats.retries += 1

    async def call_episode(self, ep: SandboxEpisode, tool: str, args: str) -> dict[str, Any]:
        """Run one call of ``ep`` (rebuilding the episode here first if its worker was replaced).

        The call joins the queue; whoever holds the lock writes every queued call to the worker in one
        go and reads the replies. A caller cancelled before its call was written takes it back out of
        the queue (nothing ran); once written, the call completes (or fails clearly) first, as an
        exchange always does. Raises :class:`_WorkerLost` or :class:`SandboxError` for its own call."""
        call = _Call(ep, tool, args)
        self.queue.append(call)
        try:
            async with self.lock:
                with anyio.CancelScope(shield=True):
                    while not call.settled:
                        await self._run_queued()
        except anyio.get_cancelled_exc_class():
            if call in self.queue:  # never written: as if it had not been made
                self.queue.remove(call)
                raise
            with anyio.CancelScope(shield=True):
                async with self.lock:  # the holder settles its whole batch before it lets go
                    pass
            if not call.settled:
                raise
        if call.error is not None:
            raise call.error
        assert call.reply is not None
        return call.reply

    def _take_batch(self) -> list[_Call]:
        batch, size = [], 0
        while self.queue and len(batch) < _BATCH_CALLS:
            size += len(self.queue[0].args) + len(self.queue[0].tool) + 128
            if batch and size > _BATCH_BYTES:
                break
            batch.append(self.queue.popleft())
        return batch

    async def _run_queued(self) -> None:
        """Run the calls at the head of the queue (caller holds the lock, shielded)."""
        pending = self._take_batch()
        while pending:
            await self._check_alive()
            ready: list[_Call] = []
            for call in pending:
                try:
                    await self._ensure_episode(call.ep)
                    ready.append(call)
                except _WorkerLost as exc:
                    if exc.blameless and call.retries < _MAX_RETRIES:  # rebuilt again on the fresh worker
                        call.retries += 1
                        self.pool.stats.retries += 1
                        ready.append(call)
                    else:
                        call.error = exc
                except SandboxError as exc:  # this call's episode could not be rebuilt
                    call.error = exc
            if any(call.ep._generation != self.generation for call in ready) or self.process is None:
                pending = ready  # the worker was replaced while rebuilding: rebuild the others again
                continue
            pending = await self._exchange_calls(ready)

    async def _exchange_calls(self, calls: list[_Call]) -> list[_Call]:
        """Write ``calls`` in one go, settle each from its reply. On trouble the worker is replaced: the
        call it happened on fails (or, when it was not to blame, runs again); the calls behind it had not
        started and are returned, to run again on the fresh worker."""
        assert self.process is not None and self.process.stdin is not None
        ids = list(range(self.next_id, self.next_id + len(calls)))
        self.next_id += len(calls)
        self.pool.stats.requests += len(calls)
        self.last_used = time.monotonic()
        data = b"".join(_frame({"op": "call", "ep": c.ep.id, "tool": c.tool, "args": c.args, "id": i})
                        for c, i in zip(calls, ids))
        limit = self.pool.limits.time_s
        for n, (call, rid) in enumerate(zip(calls, ids)):
            failure: _WorkerLost | None = None
            reply: dict[str, Any] = {}
            with anyio.move_on_after(limit + _SLACK_S) as scope:  # from the previous reply: when this call began
                try:
                    if n == 0:
                        await self.process.stdin.send(data)
                except _IO_ERRORS:
                    failure = _WorkerLost(*_death_reason(await self._exit_code(), self.pool.limits))
                else:
                    reply, failure = await self._read_reply(rid, self.pool.limits.call_frame)
            if scope.cancelled_caught:
                self.pool.stats.timeouts += 1
                failure = _WorkerLost(ErrorKind.TIME_LIMIT, f"exceeded the time limit of {limit:g} s")
            if failure is not None:
                await self._replace()
                if failure.blameless and call.retries < _MAX_RETRIES:
                    call.retries += 1
                    self.pool.stats.retries += 1
                    return calls[n:]
                call.error = failure
                return calls[n + 1:]
            call.reply = reply
            if reply.get("restart"):  # the worker stops after this reply; the calls behind it never ran
                call.ep._generation = -1
                await self._replace()
                return calls[n + 1:]
        return []

    async def close_episode(self, ep: SandboxEpisode) -> None:
        async with self.lock:
            if self.process is not None and ep._generation == self.generation:
                with anyio.CancelScope(shield=True):
                    try:
                        await self._exchange({"op": "close", "ep": ep.id}, self.pool.limits.time_s)
                    except _WorkerLost:
                        pass

    async def shutdown(self) -> None:
        async with self.lock:
            if self.process is not None and self.process.stdin is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await self.process.stdin.aclose()  # EOF: the worker exits by itself
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass
                    with anyio.move_on_after(1):
                        await self.process.wait()
            await self._kill()


def _death_reason(code: int | None, limits: SandboxLimits) -> tuple[str, str, bool]:
    """(error kind, message, blameless) for a worker that died during a request, from its exit status.
    SIGKILL is never the call's own doing: the host kills only after a timeout (reported as such), and
    memory is bounded by RLIMIT_AS, so it came from outside."""
    if code == -24:  # SIGXCPU: the per-call CPU limit
        return ErrorKind.TIME_LIMIT, f"exceeded the CPU time limit of {limits.cpu:g} s", False
    if code == -9:
        return ErrorKind.SANDBOX_ERROR, "was interrupted: the sandbox worker was killed", True
    if code is not None and code < 0:
        return ErrorKind.SANDBOX_ERROR, f"crashed the sandbox worker (signal {-code})", False
    if code is not None:
        return ErrorKind.SANDBOX_ERROR, f"made the sandbox worker exit (status {code})", False
    return ErrorKind.SANDBOX_ERROR, "made the sandbox worker stop answering", False


class SandboxPool:
    """A pool of sandbox workers. Use as ``async with SandboxPool() as pool:``.

    Args:
        workers: the most worker processes one gym's episodes spread over (default: the number of CPUs).
        limits: per-call limits.
        max_workers: the most worker processes alive at once, all gyms together (default:
            ``max(64, 8 * workers)``); past it the least recently used idle worker is stopped.
        audit_hooks: ``False`` leaves the audit hook out of the workers, to test the kernel layers alone.
        preload: more modules to import before any worker is locked down (shared by every worker), for
            packages that need what a locked-down worker may not do at import (scipy loads ctypes).
    """

    def __init__(self, workers: int | None = None, limits: SandboxLimits | None = None, *,
                 max_workers: int | None = None, audit_hooks: bool = True, preload: tuple[str, ...] = ()) -> None:
        self.limits = limits or SandboxLimits()
        self.per_gym = max(1, workers or os.cpu_count() or 1)
        self.max_workers = max(max_workers or max(64, 8 * self.per_gym), 1)
        self.audit_hooks = audit_hooks
        self.groups: dict[str, list[_Slot]] = {}
        self.stats = PoolStats()
        self._descriptions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._answers: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._oracle_limiter: anyio.CapacityLimiter | None = None
        self._zygote = Zygote(package_parent(), _worker_env("/"), _KEEP_STDERR, preload)
        self._closed = False

    async def __aenter__(self) -> SandboxPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def slots(self) -> list[_Slot]:
        """Every worker slot, of every gym."""
        return [slot for group in self.groups.values() for slot in group]

    @property
    def concurrency(self) -> int:
        """How many requests of one kind this pool runs at once (``workers``): what callers size
        their own concurrency by."""
        return self.per_gym

    @property
    def live_workers(self) -> int:
        return sum(slot.alive for slot in self.slots)

    async def aclose(self) -> None:
        """Stop every worker (in-flight calls finish first) and remove their temp dirs."""
        self._closed = True
        async with anyio.create_task_group() as tg:
            for slot in self.slots:
                tg.start_soon(slot.shutdown)
        with anyio.CancelScope(shield=True):
            await self._zygote.aclose()

    # --- placement --------------------------------------------------------------------------
    def _slot(self, group: str, gym: GymCode | None, spread: int | None = None) -> _Slot:
        """The least busy worker slot of ``group``; a new one when the group has none, or when every
        slot holds ``spread`` episodes or more and the group has fewer than ``workers`` slots."""
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        slots = self.groups.setdefault(group, [])
        best = min(slots, key=lambda s: (s.episodes, len(s.queue), s.lock.locked()), default=None)
        if best is None or (spread is not None and best.episodes >= spread and len(slots) < self.per_gym):
            best = _Slot(self, group, gym)
            slots.append(best)
        return best

    def _gym_slot(self, gym: GymCode) -> _Slot:
        return self._slot(f"gym:{gym.key}", gym, _SPREAD_AT)

    def _oracle_slot(self, gym: GymCode) -> _Slot:
        """Where an oracle run goes: an idle worker of the gym without episodes (verification), else a
        worker of the gym's own kept for oracle runs, so a slow oracle never holds up an episode."""
        for slot in self.groups.get(f"gym:{gym.key}", []):
            if slot.episodes == 0 and not slot.queue and not slot.lock.locked():
                return slot
        return self._slot(f"oracle:{gym.key}", gym)

    async def _make_room(self, starting: _Slot) -> None:
        """Before ``starting`` starts a worker: stop the least recently used idle workers (those without
        episodes first) while ``max_workers`` are alive. Busy ones are skipped: the cap is then exceeded
        for a while rather than anyone waiting."""
        alive = [s for s in self.slots if s.alive and s is not starting]
        excess = len(alive) + 1 - self.max_workers
        for slot in sorted(alive, key=lambda s: (s.episodes > 0, s.last_used)):
            if excess <= 0:
                break
            try:
                slot.lock.acquire_nowait()
            except anyio.WouldBlock:
                continue
            try:
                await slot._kill()
                self.stats.evictions += 1
                excess -= 1
                if slot.episodes == 0 and not slot.queue:
                    group = self.groups.get(slot.group, [])
                    if slot in group:
                        group.remove(slot)
                    if not group:
                        self.groups.pop(slot.group, None)
            finally:
                slot.lock.release()

    # --- requests ---------------------------------------------------------------------------
    async def _request(self, slot: _Slot, msg: dict[str, Any], timeout: float, what: str, name: str) -> dict[str, Any]:
        try:
            reply = await slot.request(msg, timeout)
        except _WorkerLost as exc:
            raise SandboxError(f"{what} of {name}: {exc}") from None
        if not reply.get("ok"):
            raise SandboxError(f"{what} of {name} failed: {reply.get('error')}")
        return reply

    def _remember(self, key: str, description: dict[str, Any]) -> None:
        self._descriptions.setdefault(key, description)
        while len(self._descriptions) > _MAX_DESCRIPTIONS:
            self._descriptions.popitem(last=False)

    async def describe(self, gym: GymCode) -> dict[str, Any]:
        """Load the gym in a worker; return ``{"tools": [...], "max_steps": n, "custom_check": bool}``.
        Raises SandboxError, also for a gym whose step budget is over :data:`MAX_STEPS`."""
        described = self._descriptions.get(gym.key)
        if described is None:
            described = await self._request(self._gym_slot(gym), {"op": "describe", "key": gym.key},
                                            self.limits.time_s, "loading", gym.class_name)
            self._remember(gym.key, described)
        max_steps = described.get("max_steps")
        if not isinstance(max_steps, int) or not 1 <= max_steps <= MAX_STEPS:
            raise SandboxError(f"gym {gym.class_name} declares max_steps={max_steps!r}; it must be an integer "
                               f"from 1 to {MAX_STEPS}")
        return {"tools": described["tools"], "max_steps": max_steps,
                "custom_check": bool(described.get("custom_check"))}

    async def reference_answer(self, gym: GymCode, task: dict[str, Any]) -> Any:
        """The gym's reference answer for ``task``, computed in the gym's own worker within the limits
        (and remembered per task)."""
        key = (gym.key, json.dumps(task, sort_keys=True))
        if key in self._answers:
            self._answers.move_to_end(key)
            return self._answers[key]
        reply = await self._request(self._gym_slot(gym), {"op": "reference", "key": gym.key, "task": task},
                                    self.limits.time_s, "the reference answer", gym.class_name)
        self._answers[key] = reply.get("answer")
        while len(self._answers) > _MAX_ANSWERS:
            self._answers.popitem(last=False)
        return reply.get("answer")

    async def judge(self, gym: GymCode, answer: Any, reference: Any) -> bool:
        """Whether ``answer`` earns reward 1 against ``reference``: equal after a JSON round trip, here
        in the host; else, only for a gym that overrides ``check_answer``, that check, in the gym's own
        worker (a check that fails counts as a no)."""
        try:
            if normalise_answer(answer) == normalise_answer(reference):
                return True
        except (TypeError, ValueError, RecursionError):
            return False
        if not (await self.describe(gym))["custom_check"]:
            return False
        try:
            reply = await self._request(self._gym_slot(gym), {"op": "check", "key": gym.key, "answer": answer,
                                                              "reference": reference},
                                        self.limits.time_s, "the answer check", gym.class_name)
        except SandboxError:
            return False
        return reply.get("correct") is True

    async def run_oracle(self, gym: GymCode, task: dict[str, Any], seed: int = 0,
                         max_steps: int | None = None, timeout: float | None = None,
                         answer: Any = UNKNOWN) -> OracleResult:
        """Play ``task`` with the gym's oracle, in a worker of the gym's (see :meth:`_oracle_slot`).

        Every call obeys the per-call limits; the step budget is at most :data:`MAX_STEPS`; the whole run
        is capped by ``timeout`` (default: the per-call limit times the budget, at most
        ``SandboxLimits.oracle_s``), past which the worker is replaced and SandboxError says so. The
        reward is judged here, against ``answer`` (default: the gym's reference answer for the task)."""
        described = await self.describe(gym)
        budget = min(max_steps or described["max_steps"], MAX_STEPS)
        limit = timeout if timeout is not None else min(self.limits.time_s * budget, self.limits.oracle_s)
        if self._oracle_limiter is None:
            self._oracle_limiter = anyio.CapacityLimiter(self.per_gym)
        async with self._oracle_limiter:  # oracle runs never take more than ``workers`` workers at once
            reply = await self._request(self._oracle_slot(gym),
                                        {"op": "oracle", "key": gym.key, "task": task, "seed": seed,
                                         "max_steps": budget}, limit, "the oracle", gym.class_name)
        calls = [(str(name), dict(args)) for name, args in reply.get("calls", [])][:MAX_STEPS]
        steps = min(int(reply.get("steps", 0)), budget)
        reward = 0.0
        if reply.get("done") is True:
            reference = await self.reference_answer(gym, task) if answer is UNKNOWN else answer
            reward = 1.0 if await self.judge(gym, reply.get("answer"), reference) else 0.0
        error = reply.get("oracle_error")
        return OracleResult(reward, steps, calls, error if isinstance(error, str) else None)

    async def execute(self, code: str, entry: str = "main", args: dict[str, Any] | None = None,
                      scope: str | None = None) -> Any:
        """Run untrusted code that is not a gym: ``entry(**args)`` from ``code``, in a worker.

        Runs of one ``scope`` (default: this code with these arguments) share a worker and nothing else
        does, so one problem's code never shares a process with another's: pass the problem's id to reuse
        its worker across calls. Returns the function's value (JSON round-tripped). The call runs within
        the pool's per-call limits; code that raises, loops or runs out of memory raises
        :class:`SandboxError` saying why (the worker is replaced when needed)."""
        args = args or {}
        if scope is None:
            scope = hashlib.sha256(json.dumps([code, entry, args], sort_keys=True).encode()).hexdigest()[:24]
        slot = self._slot(f"exec:{scope}", None)
        try:
            reply = await slot.request({"op": "exec", "code": code, "entry": entry, "args": args}, self.limits.time_s)
        except _WorkerLost as exc:
            raise SandboxError(f"code execution {exc}") from None
        if not reply.get("ok"):
            raise SandboxError(f"code execution failed: {reply.get('error')}")
        return reply["result"]

    async def open(self, gym: GymCode, task: dict[str, Any], seed: int = 0, max_steps: int | None = None,
                   answer: Any = UNKNOWN) -> SandboxEpisode:
        """Start an episode. The gym is loaded (and checked) first; a broken gym raises SandboxError.

        ``answer`` is the task's reference answer (the one stored in the bank); when it is not given,
        the gym's own worker computes it once per task. ``Done`` is judged against it here."""
        described = await self.describe(gym)
        if answer is UNKNOWN:
            answer = await self.reference_answer(gym, task)
        slot = self._gym_slot(gym)
        ep = SandboxEpisode(self, slot, gym, task, seed, min(max_steps or described["max_steps"], MAX_STEPS), answer)
        slot.episodes += 1
        try:
            await slot.open_episode(ep)
        except _WorkerLost as exc:
            slot.episodes -= 1
            raise SandboxError(f"could not open an episode of {gym.class_name}: {exc}") from None
        except BaseException:
            slot.episodes -= 1
            raise
        return ep


@dataclass(eq=False)
class SandboxEpisode:
    """One episode living in a sandbox worker. Calls on one episode are serialised."""

    pool: SandboxPool
    slot: _Slot
    gym: GymCode
    task: dict[str, Any]
    seed: int
    max_steps: int
    answer: Any = None  # the reference answer ``Done`` is judged against
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    steps: int = 0
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    closed: bool = False
    committed: list[list[str]] = field(default_factory=list)
    _generation: int = -2  # -2: never opened; -1: lost with its worker
    _lock: anyio.Lock = field(default_factory=lambda: anyio.Lock(fast_acquire=True))

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    async def call(self, tool: str, arguments: str | dict[str, Any] | None = None) -> StepOutcome:
        """Make one call; never raises for a bad call (the result is an error observation)."""
        if not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments if arguments is not None else {})
            except (TypeError, ValueError) as exc:
                return self._local_error(ErrorKind.INVALID_ARGUMENTS, f"arguments are not JSON-serialisable: {exc}")
        async with self._lock:
            if self.closed:
                return self._local_error(ErrorKind.EPISODE_OVER, "the episode was closed; start a new one")
            if self.done:
                why = "Done was called" if self.terminated else f"the step budget of {self.max_steps} calls is spent"
                return self._local_error(ErrorKind.EPISODE_OVER, f"the episode is over ({why}); start a new one")
            self.pool.stats.calls += 1
            try:
                reply = await self.slot.call_episode(self, tool, arguments)
            except _WorkerLost as exc:
                self.steps += 1  # the call happened (and counts), but its effects were discarded
                self._generation = -1
                self.pool.stats.call_errors += 1
                message = f"{tool} {exc}; the sandbox was reset and the state is unchanged"
                if not self.terminated and self.steps >= self.max_steps:
                    self.truncated = True
                return self._local_error(exc.kind, message)
            result = self._checked(tool, reply)
            if result.terminated:
                correct = await self.pool.judge(self.gym, reply.get("answer"), self.answer)
                result.reward = 1.0 if correct else 0.0
                result.observation = f"Answer {'correct' if correct else 'incorrect'}. reward={int(correct)}"
            self.steps, self.reward = result.steps, result.reward
            self.terminated, self.truncated = result.terminated, result.truncated
            if result.error is None:
                self.committed.append([tool, arguments])
            else:
                self.pool.stats.call_errors += 1
            return result

    def _checked(self, tool: str, reply: dict[str, Any]) -> StepOutcome:
        """The worker's reply as a result the host stands behind. The worker runs untrusted code and
        could forge its reply, so the host counts the steps itself, only a good ``Done`` that reports an
        answer may end the episode (its reward is judged by the caller, never taken from the reply), the
        observation must be a string within the limit, and anything malformed is a sandbox error (the
        call counts; the episode is rebuilt next time)."""
        steps = self.steps + 1
        r = reply.get("result") if reply.get("ok") else None
        if not isinstance(r, dict) or not isinstance(r.get("observation"), str) or not (
                r.get("error") is None or isinstance(r.get("error"), str)):
            self._generation = -1
            why = reply.get("error") if isinstance(reply.get("error"), str) else "a malformed reply"
            return self._error_at(steps, ErrorKind.SANDBOX_ERROR, f"{tool} failed in the sandbox: {str(why)[:300]}")
        error = r.get("error")
        if len(r["observation"]) > self.pool.limits.max_observation_chars + 200:  # + the truncation notice
            self._generation = -1  # the worker may have committed it: rebuild from the host's log
            return self._error_at(steps, ErrorKind.OUTPUT_TOO_LARGE, f"{tool} returned an oversized observation")
        terminated = tool == DONE and error is None and r.get("terminated") is True and "answer" in reply
        truncated = not terminated and steps >= self.max_steps
        return StepOutcome.of(r["observation"], 0.0, terminated, truncated, steps, error)

    def _error_at(self, steps: int, kind: str, message: str) -> StepOutcome:
        return StepOutcome.of(f"Error: {message}", 0.0, self.terminated, not self.terminated and steps >= self.max_steps,
                          steps, error=kind)

    def _local_error(self, kind: str, message: str) -> StepOutcome:
        return StepOutcome.of(f"Error: {message}", 0.0, self.terminated, self.truncated, self.steps, error=kind)

    async def step(self, action: str | dict[str, Any]) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Gymnasium-style step; see :meth:`mcp_gyms.episode.LocalEpisode.step`."""
        name, arguments = parse_action(action)
        result = self._local_error(ErrorKind.INVALID_ARGUMENTS, arguments) if name is None else await self.call(
            name, arguments)
        return result.observation, result.reward, result.terminated, result.truncated, {
            "steps": result.steps, "error": result.error}

    async def aclose(self) -> None:
        """Free the episode's state in its worker. Idempotent."""
        async with self._lock:
            if self.closed:
                return
            self.closed = True
            self.slot.episodes -= 1
            await self.slot.close_episode(self)
