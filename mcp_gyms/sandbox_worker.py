"""The sandbox worker: a locked-down process that hosts the episodes of one untrusted gym.

Forked by :mod:`mcp_gyms.zygote` for :mod:`mcp_gyms.sandbox` (never started by hand). It talks to
its host over two private pipes (fds 0-2 point at /dev/null and Python's ``print`` goes nowhere). Each message is a 4-byte big-endian length plus a JSON object. Requests::

    {"id": n, "op": "load",      "key": k, "code": "...", "class_name": "..."}
                                 -> {"tools": [...], "max_steps": m, "custom_check": bool}
    {"id": n, "op": "describe",  "key": k}                                         -> (as load)
    {"id": n, "op": "open",      "key": k, "ep": e, "task": {...}, "seed": s, "max_steps": m,
                                 "replay": [[tool, args_json], ...], "steps": n}
    {"id": n, "op": "call",      "ep": e, "tool": t, "args": "{...}"}
                                 -> {"result": StepOutcome fields, "answer": the answer, for a good Done}
    {"id": n, "op": "close",     "ep": e}
    {"id": n, "op": "reference", "key": k, "task": {...}}                          -> {"answer": ...}
    {"id": n, "op": "check",     "key": k, "answer": a, "reference": r}           -> {"correct": bool}
    {"id": n, "op": "oracle",    "key": k, "task": {...}, "seed": s, "max_steps": m}
                                 -> {"steps": n, "calls": [...], "done": bool, "answer": a, "oracle_error": ...}
    {"id": n, "op": "exec",      "code": "...", "entry": "main", "args": {...}}  -> {"result": ...}
    {"id": n, "op": "ping"}

A worker loads one gym only (the host starts one worker per gym, so no gym's code shares a process
with another gym's episodes). ``Done`` does not decide the reward here: the worker reports the answer
and the host judges it against the stored reference answer, where gym code cannot reach. Oracle runs
obey the per-call limits: every call gets its own CPU budget, and a call over the wall-time limit ends
the run with an error. After every request the temp dir is emptied (files never carry state).

``exec`` is the one op that is not about gyms: it runs a code string in a fresh module namespace,
calls its function ``entry`` (default ``main``) with ``args`` as keyword arguments, and returns the
function's JSON-serialisable value. It runs under the same jail and per-call limits (one call's CPU
time) as a tool call; the synthesis pipeline uses it to run a problem's tests and its original
solution, which are as untrusted as gym code.

Every reply has ``id`` and ``ok``; a failed request has ``error``. A reply with ``"restart": true``
asks the host to replace this worker (after a memory error its heap cannot be trusted).

Memory: the episodes of one task share one decoded copy of its configuration's immutable values
(numbers, strings). Each episode's ``setup`` still gets containers of its own (a gym that mutates
its task changes nothing for the others), and ``LocalEpisode.task`` decodes a fresh copy of the task's
JSON text whenever it is read (at ``Done``), so gym code never holds anything another episode uses.
A thousand-number task thus costs an idle episode what its gym keeps, not a private copy of every
number twice over.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
import time
import traceback
from collections import OrderedDict
from typing import Any

from .constants import ErrorKind
from .episode import LocalEpisode, _describe
from .gym import Gym, GymSpec, normalise_answer
from .jail import harden
from .outcome import StepOutcome

_PRELOAD = (
    "collections", "heapq", "bisect", "itertools", "functools", "math", "random", "re", "string",
    "typing", "dataclasses", "copy", "statistics", "fractions", "decimal", "operator", "enum", "json",
    "ast", "numbers", "array", "queue", "textwrap", "unicodedata",
)
MAX_FRAME = 64 * 1024 * 1024
_TASK_CACHE = 1024  # decoded task configurations kept for sharing (least recently used dropped first)
_ATOMS = (int, float, str, bool, type(None))


class _NullWriter:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def load_gym_class(code: str, class_name: str, key: str) -> type[Gym]:
    """Execute gym code in a fresh module namespace and return its gym class (checked)."""
    namespace: dict[str, Any] = {"__name__": f"codegym_gym_{key[:12]}", "__builtins__": __builtins__}
    exec(compile(code, f"<gym {class_name}>", "exec"), namespace)
    cls = namespace.get(class_name)
    if cls is None:
        raise LookupError(f"the code defines no class named {class_name!r}")
    GymSpec.of(cls)
    return cls


def fresh_copy(value: Any) -> Any:
    """A copy of decoded JSON with new containers (dicts, lists) and shared immutable leaves."""
    if isinstance(value, dict):
        return {k: v if type(v) in _ATOMS else fresh_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v if type(v) in _ATOMS else fresh_copy(v) for v in value]
    return value


class WorkerEpisode(LocalEpisode):
    """An :class:`LocalEpisode` whose task configuration is kept as (shared) JSON text, and whose ``Done``
    records the answer for the host to judge (``submitted``) instead of deciding a reward.

    ``task`` decodes a fresh dict each time it is read, so nothing gym code receives is shared with
    another episode; the text itself is immutable and shared by every episode of the same task."""

    submitted: Any = None

    def _done(self, answer: Any) -> StepOutcome:
        try:
            self.submitted = normalise_answer(answer)
        except (TypeError, ValueError, RecursionError) as exc:
            return self._error(ErrorKind.INVALID_ARGUMENTS, f"the answer is not JSON: {_describe(exc)}")
        self.terminated = True
        return StepOutcome.of("", 0.0, True, False, self.steps)

    def __init__(self, gym_class: type[Gym], task_text: str, shared_task: Any, seed: int = 0,
                 **kwargs: Any) -> None:
        self._task_text = task_text
        super().__init__(gym_class, fresh_copy(shared_task), seed, **kwargs)

    @property  # type: ignore[override]
    def task(self) -> dict[str, Any]:
        return json.loads(self._task_text)

    @task.setter
    def task(self, value: dict[str, Any]) -> None:
        # LocalEpisode.__init__ assigns the copy it handed to setup; the text given to __init__ already says it
        if "_task_text" not in self.__dict__:
            self._task_text = json.dumps(value)


class _OracleOverrun(BaseException):
    """An oracle call over the per-call wall-time limit (a BaseException: the oracle cannot catch it
    by accident; one that catches it anyway is still failed, see ``Worker._oracle``)."""


class Worker:
    def __init__(self, cpu_limit_s: float, max_observation_chars: int, time_limit_s: float = 3.0) -> None:
        self.cpu_limit_s = cpu_limit_s
        self.time_limit_s = time_limit_s
        self.max_observation_chars = max_observation_chars
        self.classes: dict[str, type[Gym]] = {}
        self.episodes: dict[str, LocalEpisode] = {}
        self._tasks: OrderedDict[str, tuple[str, Any]] = OrderedDict()  # task JSON -> (that text, decoded)
        self._cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        self._cpu_soft = -1  # the soft CPU limit this worker last set

    def _arm_cpu_limit(self, calls: int = 1) -> None:
        """Give the next request ``cpu_limit_s`` seconds of CPU per call (SIGXCPU ends the worker).

        Only the soft limit moves: raising a hard limit needs a privilege the worker may not have."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime + self.cpu_limit_s * calls) + 1
        if soft == self._cpu_soft:  # already armed to that second (the limit has a 1 s resolution)
            return
        resource.setrlimit(resource.RLIMIT_CPU, (soft, self._cpu_hard))
        self._cpu_soft = soft

    def _shared_task(self, task: Any) -> tuple[str, Any]:
        """(JSON text, shared decoded value) of a task configuration. Key order is kept as sent: a
        gym may read its task in order."""
        text = json.dumps(task, separators=(",", ":"))
        cached = self._tasks.get(text)
        if cached is None:
            cached = self._tasks[text] = (text, task)
            if len(self._tasks) > _TASK_CACHE:
                self._tasks.popitem(last=False)
        else:
            self._tasks.move_to_end(text)
        return cached

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "ping":
            return {}
        if op in ("load", "describe"):
            if op == "load":
                if self.classes and req["key"] not in self.classes:
                    raise ValueError("this worker already hosts another gym (one gym per worker)")
                self.classes[req["key"]] = load_gym_class(req["code"], req["class_name"], req["key"])
            cls = self._class(req["key"])
            custom = getattr(cls.check_answer, "__func__", None) is not Gym.check_answer.__func__
            return {"tools": GymSpec.of(cls).public_tools(), "max_steps": cls.max_steps, "custom_check": custom}
        if op == "open":
            replay = req.get("replay") or []
            cls = self._class(req["key"])
            task_text, shared = self._shared_task(req["task"])
            self._arm_cpu_limit(1 + len(replay))
            ep = WorkerEpisode(cls, task_text, shared, req.get("seed", 0), max_steps=req.get("max_steps"),
                               max_observation_chars=self.max_observation_chars)
            for tool, args in replay:
                result = ep.call(tool, args)
                if result.error:
                    raise RuntimeError(f"replay of {tool} failed ({result.observation}); the gym is not deterministic")
            ep.steps = req.get("steps", ep.steps)
            self.episodes[req["ep"]] = ep
            return {}
        if op == "call":
            ep = self.episodes.get(req["ep"])
            if ep is None:
                return {"error": f"episode {req['ep']} is not open in this worker", "lost": True}
            self._arm_cpu_limit()
            r = ep.call(req["tool"], req.get("args") or "{}")
            reply = {"result": {"observation": r.observation, "reward": r.reward, "terminated": r.terminated,
                                "truncated": r.truncated, "steps": r.steps, "error": r.error, "done": r.done},
                     "restart": r.error == ErrorKind.MEMORY_LIMIT}
            if r.terminated and r.error is None and isinstance(ep, WorkerEpisode):
                reply["answer"] = ep.submitted
            return reply
        if op == "close":
            self.episodes.pop(req["ep"], None)
            return {}
        if op == "reference":
            self._arm_cpu_limit()
            answer = self._class(req["key"]).reference_answer(req["task"])
            return {"answer": json.loads(json.dumps(answer))}
        if op == "exec":
            self._arm_cpu_limit()
            namespace: dict[str, Any] = {"__name__": "codegym_exec", "__builtins__": __builtins__}
            exec(compile(req["code"], "<exec>", "exec"), namespace)
            entry = req.get("entry") or "main"
            fn = namespace.get(entry)
            if not callable(fn):
                raise LookupError(f"the code defines no function named {entry!r}")
            return {"result": json.loads(json.dumps(fn(**(req.get("args") or {}))))}
        if op == "check":
            self._arm_cpu_limit()
            cls = self._class(req["key"])
            return {"correct": bool(cls.check_answer(req.get("answer"), req.get("reference")))}
        if op == "oracle":
            return self._oracle(req)
        raise ValueError(f"unknown op {op!r}")

    def _oracle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Play a task with the gym's oracle; each call under the per-call limits (CPU re-armed per call,
        a call over the wall-time limit fails the run). The host judges the answer."""
        cls = self._class(req["key"])
        task_text, shared = self._shared_task(req["task"])
        self._arm_cpu_limit()
        ep = WorkerEpisode(cls, task_text, shared, req.get("seed", 0), max_steps=req.get("max_steps"),
                           max_observation_chars=self.max_observation_chars)
        calls: list[tuple[str, dict[str, Any]]] = []
        overrun: list[str] = []

        def call(name: str, /, **arguments: Any) -> str:  # positional-only: a tool may have a `name` parameter
            if overrun:
                raise _OracleOverrun(overrun[0])
            calls.append((name, arguments))
            self._arm_cpu_limit()
            started = time.monotonic()
            observation = ep.call(name, arguments).observation
            took = time.monotonic() - started
            if took > self.time_limit_s:
                overrun.append(f"the oracle's call {len(calls)} ({name}) took {took:.1f} s, over the per-call "
                               f"limit of {self.time_limit_s:g} s")
                raise _OracleOverrun(overrun[0])
            return observation

        error = None
        try:
            cls.solve(call)
        except _OracleOverrun:
            pass
        except (Exception, SystemExit) as exc:
            error = f"the oracle raised {_describe(exc)}"
        if overrun:
            error = overrun[0]
        elif error is None and not ep.terminated:
            error = "the oracle ended without calling Done"
        return {"steps": ep.steps, "calls": calls, "done": ep.terminated and not overrun,
                "answer": ep.submitted, "oracle_error": error}

    def _class(self, key: str) -> type[Gym]:
        try:
            return self.classes[key]
        except KeyError:
            raise LookupError(f"gym {key} is not loaded in this worker") from None


class _FrameReader:
    """Length-prefixed frames from a file descriptor, read in large chunks: the host may write many
    requests at once (pipelined calls), and they are then taken one by one without a syscall each."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def _fill(self, n: int) -> None:
        while len(self.buffer) < n:
            chunk = os.read(self.fd, max(65536, n - len(self.buffer)))
            if not chunk:
                raise EOFError
            self.buffer += chunk

    def read_exact(self, n: int) -> bytes:
        self._fill(n)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data


def _send(fd: int, msg: dict[str, Any]) -> None:
    data = json.dumps(msg, default=repr).encode()
    _write_all(fd, struct.pack(">I", len(data)) + data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _empty(folder: str) -> None:
    """Remove everything inside ``folder`` (files never carry state from one request to the next).
    Path-based only: the audit hook refuses folders opened as descriptors, which ``shutil.rmtree`` uses."""
    try:
        with os.scandir(folder) as entries:
            found = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries]
    except OSError:
        return
    for path, is_folder in found:
        try:
            if is_folder:
                _empty(path)
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError:
            pass


def serve(config: dict[str, Any], proto_in: int, proto_out: int) -> None:
    """Be a worker: lock this process down (see :mod:`mcp_gyms.jail`), say hello, then answer requests
    on ``proto_in``/``proto_out`` until end of input. Runs in a process forked for it by
    :mod:`mcp_gyms.zygote`, with fds 0-2 on /dev/null (Python's ``print`` goes nowhere)."""
    sys.stdout = sys.stderr = _NullWriter()  # type: ignore[assignment]
    report = harden(config["tmpdir"], config["memory_mb"], _PRELOAD, audit_hooks=config.get("audit_hooks", True),
                    disk_mb=config.get("disk_mb", 32), cpu_arming=Worker._arm_cpu_limit.__code__)
    worker = Worker(config["cpu_s"], config["max_observation_chars"], config.get("time_s", 3.0))
    tmpdir = config["tmpdir"]
    _send(proto_out, {"id": 0, "ok": True, "hello": dict(report), "pid": os.getpid()})
    reader = _FrameReader(proto_in)
    while True:
        try:
            (length,) = struct.unpack(">I", reader.read_exact(4))
            if length > MAX_FRAME:
                return
            req = json.loads(reader.read_exact(length))
        except EOFError:
            return
        try:
            reply = {"id": req.get("id"), "ok": True, **worker.handle(req)}
            if reply.get("error"):
                reply["ok"] = False
        except MemoryError:
            reply = {"id": req.get("id"), "ok": False, "error": "out of memory (sandbox memory limit)", "restart": True,
                     "kind": ErrorKind.MEMORY_LIMIT}
        except BaseException as exc:  # noqa: BLE001 - gym code may raise anything, SystemExit included
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            reply = {"id": req.get("id"), "ok": False, "error": tb[:2000]}
        try:
            _send(proto_out, reply)
        except (TypeError, ValueError) as exc:
            _send(proto_out, {"id": req.get("id"), "ok": False, "error": f"reply not serialisable: {exc}"})
        if reply.get("restart"):
            return
        _empty(tmpdir)
