"""The sandbox worker: a locked-down process that hosts many episodes of untrusted gym code.

Started by :mod:`mcp_gyms.sandbox` (never by hand). It talks to its host over two private file
descriptors (its original stdin/stdout, moved aside; fds 0-2 then point at /dev/null and Python's
``print`` goes nowhere). Each message is a 4-byte big-endian length plus a JSON object. Requests::

    {"id": n, "op": "load",      "key": k, "code": "...", "class_name": "..."}   -> {"tools": [...], "max_steps": m}
    {"id": n, "op": "describe",  "key": k}                                         -> {"tools": [...], "max_steps": m}
    {"id": n, "op": "unload",    "keys": [k, ...]}                                 -> {"classes": n}
    {"id": n, "op": "open",      "key": k, "ep": e, "task": {...}, "seed": s, "max_steps": m,
                                 "replay": [[tool, args_json], ...], "steps": n}
    {"id": n, "op": "call",      "ep": e, "tool": t, "args": "{...}"}             -> {"result": StepResult fields}
    {"id": n, "op": "close",     "ep": e}
    {"id": n, "op": "reference", "key": k, "task": {...}}                          -> {"answer": ...}
    {"id": n, "op": "oracle",    "key": k, "task": {...}, "seed": s, "max_steps": m} -> OracleResult
    {"id": n, "op": "exec",      "code": "...", "entry": "main", "args": {...}}  -> {"result": ...}
    {"id": n, "op": "ping"}

``exec`` is the one op that is not about gyms: it runs a code string in a fresh module namespace,
calls its function ``entry`` (default ``main``) with ``args`` as keyword arguments, and returns the
function's JSON-serialisable value. It runs under the same jail and per-call limits (one call's CPU
time) as a tool call; the synthesis pipeline uses it to run a problem's tests and its original
solution, which are as untrusted as gym code.

Every reply has ``id`` and ``ok``; a failed request has ``error``. A reply with ``"restart": true``
asks the host to replace this worker (after a memory error its heap cannot be trusted).

Memory: the episodes of one task share one decoded copy of its configuration's immutable values
(numbers, strings). Each episode's ``setup`` still gets containers of its own (a gym that mutates
its task changes nothing for the others), and ``Episode.task`` decodes a fresh copy of the task's
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
import traceback
from collections import OrderedDict
from typing import Any

from .episode import Episode, ErrorKind
from .gym import Gym, GymSpec
from .jail import harden

_PRELOAD = (
    "collections", "heapq", "bisect", "itertools", "functools", "math", "random", "re", "string",
    "typing", "dataclasses", "copy", "statistics", "fractions", "decimal", "operator", "enum", "json",
    "ast", "numbers", "array", "queue", "textwrap", "unicodedata", "gymnasium",
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


class HostedEpisode(Episode):
    """An :class:`Episode` whose task configuration is kept as (shared) JSON text.

    ``task`` decodes a fresh dict each time it is read, so nothing gym code receives is shared with
    another episode; the text itself is immutable and shared by every episode of the same task."""

    def __init__(self, gym_class: type[Gym], task_text: str, shared_task: Any, seed: int = 0,
                 **kwargs: Any) -> None:
        self._task_text = task_text
        super().__init__(gym_class, fresh_copy(shared_task), seed, **kwargs)

    @property  # type: ignore[override]
    def task(self) -> dict[str, Any]:
        return json.loads(self._task_text)

    @task.setter
    def task(self, value: dict[str, Any]) -> None:
        # Episode.__init__ assigns the copy it handed to setup; the text given to __init__ already says it
        if "_task_text" not in self.__dict__:
            self._task_text = json.dumps(value)


class Worker:
    def __init__(self, cpu_limit_s: float, max_observation_chars: int) -> None:
        self.cpu_limit_s = cpu_limit_s
        self.max_observation_chars = max_observation_chars
        self.classes: dict[str, type[Gym]] = {}
        self.episodes: dict[str, Episode] = {}
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
                self.classes[req["key"]] = load_gym_class(req["code"], req["class_name"], req["key"])
            cls = self._class(req["key"])
            return {"tools": GymSpec.of(cls).public_tools(), "max_steps": cls.max_steps}
        if op == "unload":  # open episodes keep their class alive; new ones need a fresh load
            for key in req["keys"]:
                self.classes.pop(key, None)
            return {"classes": len(self.classes)}
        if op == "open":
            replay = req.get("replay") or []
            cls = self._class(req["key"])
            task_text, shared = self._shared_task(req["task"])
            self._arm_cpu_limit(1 + len(replay))
            ep = HostedEpisode(cls, task_text, shared, req.get("seed", 0), max_steps=req.get("max_steps"),
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
            return {"result": {"observation": r.observation, "reward": r.reward, "terminated": r.terminated,
                               "truncated": r.truncated, "steps": r.steps, "error": r.error, "done": r.done},
                    "restart": r.error == ErrorKind.MEMORY_LIMIT}
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
        if op == "oracle":
            self._arm_cpu_limit(req.get("max_steps") or 256)
            ep = Episode(self._class(req["key"]), req["task"], req.get("seed", 0), max_steps=req.get("max_steps"),
                         max_observation_chars=self.max_observation_chars)
            res = ep.run_oracle()
            return {"reward": res.reward, "steps": res.steps, "calls": res.calls, "oracle_error": res.error}
        raise ValueError(f"unknown op {op!r}")

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


def main() -> None:
    config = json.loads(sys.argv[1])
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if not (fd == 2 and config.get("keep_stderr")):
            os.dup2(devnull, fd)
    sys.stdout = sys.stderr = _NullWriter()  # type: ignore[assignment]
    report = harden(config["tmpdir"], config["memory_mb"], _PRELOAD)
    worker = Worker(config["cpu_s"], config["max_observation_chars"])
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

if __name__ == "__main__":
    main()
