"""Running untrusted gym code: a pool of locked-down worker processes, with trial then overwrite.

Gym code never runs in this process. A :class:`SandboxPool` owns a few worker processes
(:mod:`mcp_gyms.sandbox_worker`, locked down by :mod:`mcp_gyms.jail`); one worker hosts many
episodes, and an episode stays on its worker while that worker lives.

Guarantees, per call:

- **Limits.** Wall time (default 3 s), CPU time (default = wall time) and memory (default 256 MiB
  per worker beyond the interpreter's own). A call that hits a limit returns an error observation
  within the limit + 1 s, and its worker is replaced.
- **Trial then overwrite.** Inside the worker a call runs against the live state with a snapshot
  taken first; any failure restores the snapshot. If the worker dies (limit, crash, ``os._exit``),
  the host still holds each episode's *committed call log* and rebuilds the episode on a fresh
  worker by replaying it before the episode's next call — so the episode keeps its last committed
  state and no other episode loses state. Replay relies on gyms being deterministic in
  ``(task, seed, calls)`` (the contract in :mod:`mcp_gyms.gym`).
- The host never trusts a worker: it reads length-prefixed JSON only (never pickle), bounds the
  frame size, checks reply ids, and treats anything odd as a dead worker.
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
import subprocess
import sys
import tempfile
import uuid
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from .episode import ErrorKind, OracleResult, StepResult, parse_action
from .gym import DONE
from .jail import protect_host

__all__ = ["GymCode", "SandboxError", "SandboxEpisode", "SandboxLimits", "SandboxPool"]

MAX_FRAME = 64 * 1024 * 1024
_STARTUP_TIMEOUT_S = 60.0
_MAX_REPLAY_S = 120.0  # every replayed call once finished within the limit; this only bounds the worst case
_SLACK_S = 0.5  # IPC allowance on top of a limit; the error still comes within limit + 1 s
_BATCH_CALLS = 64  # most calls written to a worker in one go
_MAX_LOADED_GYMS = 128  # gym classes one worker keeps; beyond, the least recently used without episodes go
_MAX_DESCRIPTIONS = 4096  # gym descriptions a pool remembers (a long synthesis run meets many gyms)
_BATCH_BYTES = 32 * 1024  # ... and most bytes: well under a pipe's buffer, so writing a batch never blocks


@dataclass(frozen=True)
class SandboxLimits:
    """Per-call limits. ``cpu_s`` defaults to ``time_s``."""

    time_s: float = 3.0
    memory_mb: int = 256
    cpu_s: float | None = None
    max_observation_chars: int = 16_384

    @property
    def cpu(self) -> float:
        return self.cpu_s if self.cpu_s is not None else self.time_s


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
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class PoolStats:
    """Counters for metrics and benchmarks."""

    requests: int = 0
    calls: int = 0
    call_errors: int = 0
    timeouts: int = 0
    worker_restarts: int = 0
    replays: int = 0


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

    @property
    def settled(self) -> bool:
        return self.reply is not None or self.error is not None


def _frame(msg: dict[str, Any]) -> bytes:
    data = json.dumps(msg).encode()
    return struct.pack(">I", len(data)) + data


class _Slot:
    """One worker process (restarted on demand) and the episodes it hosts."""

    def __init__(self, pool: SandboxPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.process: Process | None = None
        self.reader: BufferedByteReceiveStream | None = None
        self.generation = 0
        self.loaded: OrderedDict[str, None] = OrderedDict()  # gyms loaded in the worker, least recently used first
        self.episodes = 0
        self.in_use: Counter[str] = Counter()  # gym key -> open episodes on this slot
        self.lock = anyio.Lock()
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
        self.tmpdir = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-")
        limits = self.pool.limits
        config = {"tmpdir": self.tmpdir, "memory_mb": limits.memory_mb, "cpu_s": limits.cpu,
                  "max_observation_chars": limits.max_observation_chars,
                  "keep_stderr": bool(os.environ.get("CODEGYM_WORKER_STDERR"))}
        package_parent = str(Path(__file__).resolve().parent.parent)
        bootstrap = f"import sys; sys.path.insert(0, {package_parent!r}); from mcp_gyms.sandbox_worker import main; main()"
        self.process = await anyio.open_process(
            [sys.executable, "-I", "-c", bootstrap, json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None if config["keep_stderr"] else subprocess.DEVNULL,
            cwd=self.tmpdir, env=_worker_env(self.tmpdir), start_new_session=True,
        )
        self.reader = BufferedByteReceiveStream(self.process.stdout)  # type: ignore[arg-type]
        self.generation += 1
        self.loaded = OrderedDict()
        with anyio.move_on_after(_STARTUP_TIMEOUT_S):
            try:
                self.hello = (await self._receive()).get("hello", {})
                return
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError, ValueError):
                pass
        code = await self._exit_code()
        await self._replace()
        raise _WorkerLost(ErrorKind.SANDBOX_ERROR, f"could not start a sandbox worker (exit status {code})")

    async def _kill(self) -> None:
        process, self.process, self.reader = self.process, None, None
        self.loaded = OrderedDict()
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

    async def _receive(self) -> dict[str, Any]:
        assert self.reader is not None
        (length,) = struct.unpack(">I", await self.reader.receive_exactly(4))
        if length > MAX_FRAME:
            raise ValueError(f"worker sent a {length}-byte frame (limit {MAX_FRAME})")
        reply = json.loads(await self.reader.receive_exactly(length))
        if not isinstance(reply, dict):
            raise ValueError("worker sent a reply that is not a JSON object")
        return reply

    async def _exchange(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request/reply. Caller holds the lock. Raises _WorkerLost (worker replaced) on trouble."""
        if self.process is None:
            await self._start()
        assert self.process is not None and self.process.stdin is not None
        msg = {**msg, "id": self.next_id}
        self.next_id += 1
        self.pool.stats.requests += 1
        data = json.dumps(msg).encode()
        failure: _WorkerLost | None = None
        reply: dict[str, Any] = {}
        with anyio.move_on_after(timeout + _SLACK_S) as scope:
            try:
                await self.process.stdin.send(struct.pack(">I", len(data)) + data)
                reply = await self._receive()
                if reply.get("id") != msg["id"]:
                    failure = _WorkerLost(ErrorKind.SANDBOX_ERROR, "the sandbox worker sent a garbled reply")
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError):
                failure = _WorkerLost(*_death_reason(await self._exit_code(), self.pool.limits))
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                failure = _WorkerLost(ErrorKind.SANDBOX_ERROR, f"the sandbox worker broke protocol: {exc}")
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

    async def request(self, msg: dict[str, Any], timeout: float, gym: GymCode | None = None) -> dict[str, Any]:
        """Send one request (loading ``gym`` first if this worker lacks it)."""
        async with self.lock:
            with anyio.CancelScope(shield=True):  # a started exchange always completes or fails clearly
                await self._check_alive()
                if gym is not None:
                    await self._ensure_loaded(gym)
                return await self._exchange(msg, timeout)

    async def _check_alive(self) -> None:
        """A worker that died while idle (killed from outside, OOM killer) is replaced before use, so
        the next request does not take the blame."""
        if self.process is not None and self.process.returncode is not None:
            await self._replace()

    def attach(self, gym: GymCode) -> None:
        """Count an episode of ``gym`` as open on this slot (its class stays loaded while it is)."""
        self.episodes += 1
        self.in_use[gym.key] += 1

    def detach(self, gym: GymCode) -> None:
        self.episodes -= 1
        self.in_use[gym.key] -= 1
        if self.in_use[gym.key] <= 0:
            del self.in_use[gym.key]

    async def _ensure_loaded(self, gym: GymCode) -> dict[str, Any] | None:
        if self.process is not None and gym.key in self.loaded:
            self.loaded.move_to_end(gym.key)
            return None
        reply = await self._exchange({"op": "load", "key": gym.key, "code": gym.code, "class_name": gym.class_name},
                                     self.pool.limits.time_s * 2)
        if not reply.get("ok"):
            raise SandboxError(f"gym {gym.class_name} failed to load: {reply.get('error')}")
        self.loaded[gym.key] = None
        self.pool._remember(gym.key, reply)
        await self._unload_surplus(gym.key)
        return reply

    async def _unload_surplus(self, keep: str) -> None:
        """Past :data:`_MAX_LOADED_GYMS`, unload the least recently used gyms without open episodes here,
        so a worker that meets thousands of gyms (synthesis, a large bank) does not fill its memory."""
        surplus = len(self.loaded) - _MAX_LOADED_GYMS
        if surplus <= 0:
            return
        evict = [k for k in self.loaded if k != keep and not self.in_use.get(k)][:surplus]
        if evict:
            await self._exchange({"op": "unload", "keys": evict}, self.pool.limits.time_s)
            for key in evict:
                del self.loaded[key]

    async def _ensure_episode(self, ep: SandboxEpisode) -> None:
        """Make sure ``ep`` lives in the current worker: open it, replaying its committed calls."""
        await self._ensure_loaded(ep.gym)
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
                await self._check_alive()
                await self._ensure_episode(ep)

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
                except (_WorkerLost, SandboxError) as exc:  # this call's episode could not be rebuilt
                    call.error = exc
            if any(call.ep._generation != self.generation for call in ready) or self.process is None:
                pending = ready  # the worker was replaced while rebuilding: rebuild the others again
                continue
            pending = await self._exchange_calls(ready)

    async def _exchange_calls(self, calls: list[_Call]) -> list[_Call]:
        """Write ``calls`` in one go, settle each from its reply. On trouble the worker is replaced:
        the call it happened on fails; the calls behind it had not started and are returned, to run
        again on the fresh worker."""
        assert self.process is not None and self.process.stdin is not None
        ids = list(range(self.next_id, self.next_id + len(calls)))
        self.next_id += len(calls)
        self.pool.stats.requests += len(calls)
        data = b"".join(_frame({"op": "call", "ep": c.ep.id, "tool": c.tool, "args": c.args, "id": i})
                        for c, i in zip(calls, ids))
        limit = self.pool.limits.time_s
        for n, (call, rid) in enumerate(zip(calls, ids)):
            failure: _WorkerLost | None = None
            with anyio.move_on_after(limit + _SLACK_S) as scope:  # from the previous reply: when this call began
                try:
                    if n == 0:
                        await self.process.stdin.send(data)
                    reply = await self._receive()
                    if reply.get("id") != rid:
                        failure = _WorkerLost(ErrorKind.SANDBOX_ERROR, "the sandbox worker sent a garbled reply")
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                        anyio.ClosedResourceError, OSError):
                    failure = _WorkerLost(*_death_reason(await self._exit_code(), self.pool.limits))
                except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                    failure = _WorkerLost(ErrorKind.SANDBOX_ERROR, f"the sandbox worker broke protocol: {exc}")
            if scope.cancelled_caught:
                self.pool.stats.timeouts += 1
                failure = _WorkerLost(ErrorKind.TIME_LIMIT, f"exceeded the time limit of {limit:g} s")
            if failure is not None:
                call.error = failure
                await self._replace()
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


def _death_reason(code: int | None, limits: SandboxLimits) -> tuple[str, str]:
    """(error kind, message) for a worker that died during a request, from its exit status."""
    if code == -24:  # SIGXCPU: the per-call CPU limit
        return ErrorKind.TIME_LIMIT, f"exceeded the CPU time limit of {limits.cpu:g} s"
    if code == -9:
        return ErrorKind.SANDBOX_ERROR, "was interrupted: the sandbox worker was killed"
    if code is not None and code < 0:
        return ErrorKind.SANDBOX_ERROR, f"crashed the sandbox worker (signal {-code})"
    if code is not None:
        return ErrorKind.SANDBOX_ERROR, f"made the sandbox worker exit (status {code})"
    return ErrorKind.SANDBOX_ERROR, "made the sandbox worker stop answering"


class SandboxPool:
    """A pool of sandbox workers. Use as ``async with SandboxPool() as pool:``.

    Args:
        workers: number of worker processes (default: the number of CPUs).
        limits: per-call limits.
    """

    def __init__(self, workers: int | None = None, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.slots = [_Slot(self, i) for i in range(max(1, workers or os.cpu_count() or 1))]
        self.stats = PoolStats()
        self._descriptions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._closed = False
        self._rr = 0

    async def __aenter__(self) -> SandboxPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every worker (in-flight calls finish first) and remove their temp dirs."""
        self._closed = True
        async with anyio.create_task_group() as tg:
            for slot in self.slots:
                tg.start_soon(slot.shutdown)

    def _slot(self) -> _Slot:
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        best = min(self.slots, key=lambda s: (s.episodes, (s.index - self._rr) % len(self.slots)))
        self._rr += 1
        return best

    async def _request(self, msg: dict[str, Any], gym: GymCode, timeout: float, what: str) -> dict[str, Any]:
        try:
            reply = await self._slot().request(msg, timeout, gym)
        except _WorkerLost as exc:
            raise SandboxError(f"{what} of {gym.class_name}: {exc}") from None
        if not reply.get("ok"):
            raise SandboxError(f"{what} of {gym.class_name} failed: {reply.get('error')}")
        return reply

    def _remember(self, key: str, description: dict[str, Any]) -> None:
        self._descriptions.setdefault(key, description)
        while len(self._descriptions) > _MAX_DESCRIPTIONS:
            self._descriptions.popitem(last=False)

    async def describe(self, gym: GymCode) -> dict[str, Any]:
        """Load the gym in a worker; return ``{"tools": [...], "max_steps": n}``. Raises SandboxError."""
        if gym.key not in self._descriptions:
            reply = await self._request({"op": "describe", "key": gym.key}, gym, self.limits.time_s, "loading")
            self._remember(gym.key, reply)
        described = self._descriptions.get(gym.key) or reply
        return {"tools": described["tools"], "max_steps": described["max_steps"]}

    async def reference_answer(self, gym: GymCode, task: dict[str, Any]) -> Any:
        """The gym's reference answer for ``task``, computed in the sandbox within the limits."""
        reply = await self._request({"op": "reference", "key": gym.key, "task": task}, gym, self.limits.time_s,
                                    "the reference answer")
        return reply["answer"]

    async def run_oracle(self, gym: GymCode, task: dict[str, Any], seed: int = 0,
                         max_steps: int | None = None, timeout: float | None = None) -> OracleResult:
        """Play ``task`` with the gym's oracle in the sandbox (each call within the per-call limits).

        ``timeout`` caps the wall time of the whole run (default: the per-call limit times the step
        budget); past it the worker is replaced and SandboxError says the time limit was exceeded."""
        budget = max_steps or 256
        limit = timeout if timeout is not None else self.limits.time_s * budget
        reply = await self._request({"op": "oracle", "key": gym.key, "task": task, "seed": seed, "max_steps": max_steps},
                                    gym, limit, "the oracle")
        calls = [(str(name), dict(args)) for name, args in reply.get("calls", [])]
        return OracleResult(float(reply["reward"]), int(reply["steps"]), calls, reply.get("oracle_error"))

    async def execute(self, code: str, entry: str = "main", args: dict[str, Any] | None = None) -> Any:
        """Run untrusted code that is not a gym: ``entry(**args)`` from ``code``, in a worker.

        Returns the function's value (JSON round-tripped). The call runs within the pool's per-call
        limits; code that raises, loops or runs out of memory raises :class:`SandboxError` saying why
        (the worker is replaced when needed)."""
        try:
            reply = await self._slot().request({"op": "exec", "code": code, "entry": entry, "args": args or {}},
                                               self.limits.time_s)
        except _WorkerLost as exc:
            raise SandboxError(f"code execution {exc}") from None
        if not reply.get("ok"):
            raise SandboxError(f"code execution failed: {reply.get('error')}")
        return reply["result"]

    async def open(self, gym: GymCode, task: dict[str, Any], seed: int = 0,
                   max_steps: int | None = None) -> SandboxEpisode:
        """Start an episode. The gym is loaded (and checked) first; a broken gym raises SandboxError."""
        described = await self.describe(gym)
        slot = self._slot()
        ep = SandboxEpisode(self, slot, gym, task, seed, max_steps or described["max_steps"])
        slot.attach(gym)
        try:
            await slot.open_episode(ep)
        except _WorkerLost as exc:
            slot.detach(gym)
            raise SandboxError(f"could not open an episode of {gym.class_name}: {exc}") from None
        except BaseException:
            slot.detach(gym)
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
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    steps: int = 0
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    closed: bool = False
    committed: list[list[str]] = field(default_factory=list)
    _generation: int = -2  # -2: never opened; -1: lost with its worker
    _lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    async def call(self, tool: str, arguments: str | dict[str, Any] | None = None) -> StepResult:
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
            self.steps, self.reward = result.steps, result.reward
            self.terminated, self.truncated = result.terminated, result.truncated
            if result.error is None:
                self.committed.append([tool, arguments])
            else:
                self.pool.stats.call_errors += 1
            return result

    def _checked(self, tool: str, reply: dict[str, Any]) -> StepResult:
        """The worker's reply as a result the host stands behind. The worker runs untrusted code and
        could forge its reply, so the host counts the steps itself, only a good ``Done`` may end the
        episode or carry reward (0 or 1), the observation must be a string within the limit, and
        anything malformed is a sandbox error (the call counts; the episode is rebuilt next time)."""
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
        terminated = tool == DONE and error is None and r.get("terminated") is True
        reward = 1.0 if terminated and r.get("reward") == 1 else 0.0
        truncated = not terminated and steps >= self.max_steps
        return StepResult(r["observation"], reward, terminated, truncated, steps, error)

    def _error_at(self, steps: int, kind: str, message: str) -> StepResult:
        return StepResult(f"Error: {message}", 0.0, self.terminated, not self.terminated and steps >= self.max_steps,
                          steps, error=kind)

    def _local_error(self, kind: str, message: str) -> StepResult:
        return StepResult(f"Error: {message}", 0.0, self.terminated, self.truncated, self.steps, error=kind)

    async def step(self, action: str | dict[str, Any]) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Gymnasium-style step; see :meth:`mcp_gyms.episode.Episode.step`."""
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
            self.slot.detach(self.gym)
            await self.slot.close_episode(self)
