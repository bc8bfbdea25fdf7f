"""Run pytest-style tests against a reference solution (runs inside a sandbox worker).

``main(solution, tests)`` executes ``solution`` as a module named ``solution`` (so ``from solution
import f`` works), executes ``tests`` with a small stand-in for the ``pytest`` module, and runs every
test it collects. It returns::

    {"ok": bool, "collected": n, "passed": n, "skipped": n,
     "failures": [{"test": name, "error": "AssertionError at line 12: assert f(3) == 4"}],
     "error": "...only when the solution or the tests could not even be loaded..."}

``ok`` is true when at least one test ran and none failed. The real pytest never runs here (it needs
a file system and plugins the sandbox does not give); the stand-in covers what coding-problem tests
use: plain ``test_*`` functions, ``Test*`` classes (``setup_method``/``teardown_method``),
``unittest.TestCase`` classes, ``pytest.raises``/``approx``/``param``/``skip``/``fail``/``warns``,
``mark.parametrize`` (stacked, with ``pytest.param``), ``skip``/``skipif``/``xfail`` marks, function
fixtures (``yield`` fixtures included, scope ignored: every test gets fresh values) and the built-in
fixtures ``capsys``/``capfd``, ``tmp_path``/``tmpdir``, ``monkeypatch`` and ``request``.

With ``entry`` (the solution's entry function), the run is also a *trial*: every call the tests make
to it is recorded (at most ``_MAX_TRIAL_CALLS``) and the report gets ``"trial": [{"params": {name:
form}, "returned": form, "printed": bool, "mutated": [names]}, ...]`` — the forms of the arguments and
of the result (``objects.describe``), whether it printed, and which arguments it changed in place.
"""

from __future__ import annotations

import inspect
import io
import itertools
import math
import os
import re
import sys
import traceback
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from objects import describe, plain  # inlined: synthesis.execution.program() pastes objects.py here

_MAX_FAILURES = 10
_MAX_TRIAL_CALLS = 200
_MAX_ERROR_CHARS = 300


# --- the pytest stand-in ------------------------------------------------------------------------
class Skipped(Exception):
    """Raised by ``pytest.skip``."""


class Failed(AssertionError):
    """Raised by ``pytest.fail``."""


class Mark:
    def __init__(self, name: str, args: tuple, kwargs: dict) -> None:
        self.name, self.args, self.kwargs = name, args, kwargs


class MarkDecorator:
    """``pytest.mark.NAME`` and ``pytest.mark.NAME(...)``: attaches a Mark to a function or class."""

    def __init__(self, name: str, args: tuple = (), kwargs: dict | None = None) -> None:
        self.mark = Mark(name, args, kwargs or {})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and (inspect.isfunction(args[0]) or inspect.isclass(args[0])):
            target = args[0]
            marks = list(getattr(target, "pytestmark", []))
            marks.append(self.mark)
            target.pytestmark = marks
            return target
        return MarkDecorator(self.mark.name, self.mark.args + args, {**self.mark.kwargs, **kwargs})


class _MarkFactory:
    def __getattr__(self, name: str) -> MarkDecorator:
        if name.startswith("_"):
            raise AttributeError(name)
        return MarkDecorator(name)


class ParameterSet:
    def __init__(self, values: tuple, marks: Any, id: str | None) -> None:  # noqa: A002
        self.values, self.id = values, id
        self.marks = list(marks) if isinstance(marks, (list, tuple)) else [marks]


def param(*values: Any, marks: Any = (), id: str | None = None) -> ParameterSet:  # noqa: A002
    return ParameterSet(values, marks, id)


class ExceptionInfo:
    def __init__(self) -> None:
        self.type: type | None = None
        self.value: BaseException | None = None
        self.tb: Any = None

    def match(self, pattern: str) -> bool:
        if not re.search(pattern, str(self.value)):
            raise AssertionError(f"pattern {pattern!r} does not match {str(self.value)!r}")
        return True

    def __repr__(self) -> str:
        return f"<ExceptionInfo {self.type.__name__ if self.type else None}: {self.value!r}>"


class RaisesContext:
    def __init__(self, expected: Any, match: str | None) -> None:
        self.expected, self.match_pattern, self.info = expected, match, ExceptionInfo()

    def __enter__(self) -> ExceptionInfo:
        return self.info

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            names = getattr(self.expected, "__name__", None) or ", ".join(e.__name__ for e in self.expected)
            raise Failed(f"DID NOT RAISE {names}")
        if not issubclass(exc_type, self.expected):
            return False
        self.info.type, self.info.value, self.info.tb = exc_type, exc, tb
        if self.match_pattern is not None:
            self.info.match(self.match_pattern)
        return True


def raises(expected: Any, *args: Any, match: str | None = None, **kwargs: Any) -> Any:
    context = RaisesContext(expected, match)
    if not args:
        return context
    with context:
        args[0](*args[1:], **kwargs)
    return context.info


class _WarnsContext:
    def __init__(self) -> None:
        self._catcher = warnings.catch_warnings(record=True)
        self.list: list[Any] = []

    def __enter__(self) -> list[Any]:
        self.list = self._catcher.__enter__()
        warnings.simplefilter("always")
        return self.list

    def __exit__(self, *exc: Any) -> bool:
        self._catcher.__exit__(*exc)
        return False


def warns(expected: Any = Warning, *args: Any, match: str | None = None, **kwargs: Any) -> Any:
    context = _WarnsContext()
    if not args:
        return context
    with context:
        return args[0](*args[1:], **kwargs)


class ApproxScalar:
    def __init__(self, expected: Any, rel: float | None, abs: float | None) -> None:  # noqa: A002
        self.expected, self.rel, self.abs = expected, rel, abs

    def _close(self, actual: Any, expected: Any) -> bool:
        if isinstance(expected, (list, tuple)):
            return (isinstance(actual, (list, tuple)) and len(actual) == len(expected)
                    and all(self._close(a, e) for a, e in zip(actual, expected)))
        if isinstance(expected, dict):
            return (isinstance(actual, dict) and actual.keys() == expected.keys()
                    and all(self._close(actual[k], expected[k]) for k in expected))
        if not isinstance(expected, (int, float, complex)) or isinstance(expected, bool):
            return bool(actual == expected)
        if not isinstance(actual, (int, float, complex)):
            return False
        if expected == actual:
            return True
        rel = 1e-6 if self.rel is None else self.rel
        tolerance = max(rel * abs(expected), 1e-12 if self.abs is None else self.abs)
        return abs(actual - expected) <= tolerance and not math.isnan(abs(actual - expected))

    def __eq__(self, actual: object) -> bool:
        return self._close(actual, self.expected)

    def __ne__(self, actual: object) -> bool:
        return not self == actual

    def __repr__(self) -> str:
        return f"approx({self.expected!r})"


def approx(expected: Any, rel: float | None = None, abs: float | None = None, nan_ok: bool = False) -> ApproxScalar:  # noqa: A002
    return ApproxScalar(expected, rel, abs)


def skip(reason: str = "", **kwargs: Any) -> None:
    raise Skipped(reason)


def fail(reason: str = "", pytrace: bool = True) -> None:
    raise Failed(reason)


def importorskip(name: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise Skipped(f"could not import {name}") from None


def fixture(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        f._lite_fixture = options  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def make_pytest_module() -> types.ModuleType:
    """The stand-in ``pytest`` module that test code imports."""
    module = types.ModuleType("pytest")
    for name, value in {
        "raises": raises, "approx": approx, "param": param, "skip": skip, "fail": fail, "warns": warns,
        "fixture": fixture, "importorskip": importorskip, "mark": _MarkFactory(), "fail_exception": Failed,
        "skip_exception": Skipped,
    }.items():
        setattr(module, name, value)
    module.skip.Exception = Skipped  # type: ignore[attr-defined]
    module.fail.Exception = Failed  # type: ignore[attr-defined]
    return module


# --- built-in fixtures ---------------------------------------------------------------------------
class CaptureResult(tuple):
    @property
    def out(self) -> str:
        return self[0]

    @property
    def err(self) -> str:
        return self[1]


class CaptureFixture:
    def __init__(self) -> None:
        self._saved = (sys.stdout, sys.stderr)
        self._out, self._err = io.StringIO(), io.StringIO()
        sys.stdout, sys.stderr = self._out, self._err

    def readouterr(self) -> CaptureResult:
        out, err = self._out.getvalue(), self._err.getvalue()
        self._out.seek(0)
        self._out.truncate()
        self._err.seek(0)
        self._err.truncate()
        return CaptureResult((out, err))

    def close(self) -> None:
        sys.stdout, sys.stderr = self._saved


class MonkeyPatch:
    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def setattr(self, target: Any, name: Any, value: Any = None, raising: bool = True) -> None:
        if isinstance(target, str):  # "module.attr" form
            module_name, _, attr = target.rpartition(".")
            target, name, value = __import__(module_name, fromlist=[attr]), attr, name
        missing = object()
        old = getattr(target, name, missing)
        if old is missing and raising:
            raise AttributeError(f"{target!r} has no attribute {name!r}")
        setattr(target, name, value)
        self._undo.append(lambda: delattr(target, name) if old is missing else setattr(target, name, old))

    def delattr(self, target: Any, name: str, raising: bool = True) -> None:
        if not hasattr(target, name):
            if raising:
                raise AttributeError(name)
            return
        old = getattr(target, name)
        delattr(target, name)
        self._undo.append(lambda: setattr(target, name, old))

    def setitem(self, mapping: Any, key: Any, value: Any) -> None:
        missing = object()
        old = mapping.get(key, missing) if hasattr(mapping, "get") else missing
        mapping[key] = value
        self._undo.append(lambda: mapping.pop(key, None) if old is missing else mapping.__setitem__(key, old))

    def delitem(self, mapping: Any, key: Any, raising: bool = True) -> None:
        if key not in mapping:
            if raising:
                raise KeyError(key)
            return
        old = mapping.pop(key)
        self._undo.append(lambda: mapping.__setitem__(key, old))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


class Request:
    def __init__(self, name: str, param: Any = None) -> None:
        self.node = types.SimpleNamespace(name=name)
        self.function = None
        self.param = param


_tmp_counter = itertools.count()


def _builtin_fixture(name: str, test_name: str, teardowns: list[Callable[[], None]]) -> Any:
    if name in ("capsys", "capfd"):
        capture = CaptureFixture()
        teardowns.append(capture.close)
        return capture
    if name in ("tmp_path", "tmpdir"):
        path = Path(os.getcwd()) / f"tmp-{next(_tmp_counter)}"
        path.mkdir()
        return path
    if name == "monkeypatch":
        patch = MonkeyPatch()
        teardowns.append(patch.undo)
        return patch
    if name == "request":
        return Request(test_name)
    raise LookupError(f"fixture {name!r} not found")


# --- collection and running ---------------------------------------------------------------------
class TestCase:
    """One collected test: a callable, its display name and its parametrized arguments."""

    def __init__(self, name: str, fn: Callable[..., Any], params: dict[str, Any], marks: list[Mark],
                 owner: type | None) -> None:
        self.name, self.fn, self.params, self.marks, self.owner = name, fn, params, marks, owner


def _marks(obj: Any) -> list[Mark]:
    return list(getattr(obj, "pytestmark", []))


def _expand(name: str, fn: Callable[..., Any], marks: list[Mark], owner: type | None) -> list[TestCase]:
    """One TestCase per combination of the function's (stacked) parametrize marks."""
    cases = [TestCase(name, fn, {}, [m for m in marks if m.name != "parametrize"], owner)]
    for mark in marks:
        if mark.name != "parametrize":
            continue
        argnames = mark.args[0] if mark.args else mark.kwargs["argnames"]
        argvalues = mark.args[1] if len(mark.args) > 1 else mark.kwargs["argvalues"]
        names = [n.strip() for n in argnames.split(",") if n.strip()] if isinstance(argnames, str) else list(argnames)
        expanded = []
        for case in cases:
            for index, raw in enumerate(argvalues):
                extra_marks: list[Mark] = []
                if isinstance(raw, ParameterSet):
                    extra_marks = [getattr(m, "mark", m) for m in raw.marks]
                    raw = raw.values if len(names) > 1 else raw.values[0]
                values = list(raw) if len(names) > 1 else [raw]
                if len(values) != len(names):
                    raise ValueError(f"{name}: parametrize expects {len(names)} values, got {len(values)}")
                expanded.append(TestCase(f"{case.name}[{index}]", fn, {**case.params, **dict(zip(names, values))},
                                         case.marks + extra_marks, owner))
        cases = expanded
    return cases


def _is_unittest_case(obj: Any) -> bool:
    return inspect.isclass(obj) and any(base.__name__ == "TestCase" and base.__module__ == "unittest.case"
                                        for base in obj.__mro__)


def collect(namespace: dict[str, Any]) -> list[TestCase]:
    """Tests in definition order: ``test*`` functions, ``Test*`` classes' ``test*`` methods."""
    cases: list[TestCase] = []
    for name, obj in list(namespace.items()):
        if name.startswith("test") and inspect.isfunction(obj) and not hasattr(obj, "_lite_fixture"):
            cases += _expand(name, obj, _marks(obj), None)
        elif inspect.isclass(obj) and (_is_unittest_case(obj) or
                                       (name.startswith("Test") and "__init__" not in vars(obj))):
            class_marks = _marks(obj)
            for attr, member in vars(obj).items():
                if attr.startswith("test") and inspect.isfunction(member):
                    own = [m for m in _marks(member) if m not in class_marks]
                    cases += _expand(f"{name}.{attr}", member, class_marks + own, obj)
    return cases


def _skip_reason(marks: list[Mark]) -> str | None:
    for mark in marks:
        if mark.name == "skip":
            return str(mark.kwargs.get("reason", mark.args[0] if mark.args else "skipped"))
        if mark.name == "skipif":
            condition = mark.args[0] if mark.args else mark.kwargs.get("condition", False)
            if condition:
                return str(mark.kwargs.get("reason", "skipif"))
    return None


def _describe(exc: BaseException, tests_lines: list[str]) -> str:
    """The exception with the test line that raised it (plain asserts carry no message)."""
    text = traceback.format_exception_only(type(exc), exc)[-1].strip()
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == "<tests>" and frame.lineno and 0 < frame.lineno <= len(tests_lines):
            text += f" at line {frame.lineno}: {tests_lines[frame.lineno - 1].strip()}"
            break
    return text[:_MAX_ERROR_CHARS]


class Runner:
    def __init__(self, namespace: dict[str, Any], tests_lines: list[str]) -> None:
        self.namespace = namespace
        self.tests_lines = tests_lines
        self.fixtures = {getattr(f, "_lite_fixture", {}).get("name") or n: f
                         for n, f in namespace.items() if inspect.isfunction(f) and hasattr(f, "_lite_fixture")}

    def _resolve(self, name: str, case: TestCase, instance: Any, teardowns: list[Callable[[], None]],
                 cache: dict[str, Any]) -> Any:
        if name in cache:
            return cache[name]
        fixture_fn = None
        if case.owner is not None:
            member = vars(case.owner).get(name)
            if inspect.isfunction(member) and hasattr(member, "_lite_fixture"):
                fixture_fn = member.__get__(instance)
        fixture_fn = fixture_fn or self.fixtures.get(name)
        if fixture_fn is None:
            value = _builtin_fixture(name, case.name, teardowns)
        else:
            kwargs = {p: self._resolve(p, case, instance, teardowns, cache)
                      for p in inspect.signature(fixture_fn).parameters}
            value = fixture_fn(**kwargs)
            if inspect.isgenerator(value):
                generator = value
                value = next(generator)
                teardowns.append(lambda: next(generator, None))
        cache[name] = value
        return value

    def run(self, case: TestCase) -> tuple[str, str]:
        """('passed' | 'failed' | 'skipped', message)."""
        reason = _skip_reason(case.marks)
        if reason is not None:
            return "skipped", reason
        xfail = any(m.name == "xfail" for m in case.marks)
        teardowns: list[Callable[[], None]] = []
        try:
            if case.owner is not None and _is_unittest_case(case.owner):
                return self._run_unittest(case)
            instance = case.owner() if case.owner is not None else None
            fn = case.fn.__get__(instance) if instance is not None else case.fn
            if instance is not None and hasattr(instance, "setup_method"):
                instance.setup_method(case.fn)
            cache = dict(case.params)
            kwargs = {p: self._resolve(p, case, instance, teardowns, cache)
                      for p in inspect.signature(fn).parameters}
            for name in self.fixtures:  # autouse fixtures
                if self.fixtures[name]._lite_fixture.get("autouse"):
                    self._resolve(name, case, instance, teardowns, cache)
            fn(**kwargs)
            if instance is not None and hasattr(instance, "teardown_method"):
                instance.teardown_method(case.fn)
        except Skipped as exc:
            return "skipped", str(exc)
        except BaseException as exc:  # noqa: BLE001 - a test may raise anything
            if isinstance(exc, (KeyboardInterrupt, MemoryError)):
                raise
            return ("passed", "xfail") if xfail else ("failed", _describe(exc, self.tests_lines))
        finally:
            for teardown in reversed(teardowns):
                try:
                    teardown()
                except Exception:  # noqa: BLE001 - teardown problems do not change the verdict
                    pass
        return ("failed", "XPASS (marked xfail)") if xfail and any(
            m.kwargs.get("strict") for m in case.marks if m.name == "xfail") else ("passed", "")

    def _run_unittest(self, case: TestCase) -> tuple[str, str]:
        import unittest

        result = unittest.TestResult()
        assert case.owner is not None
        case.owner(case.fn.__name__).run(result)
        problems = result.failures + result.errors
        if problems:
            return "failed", problems[0][1].strip().splitlines()[-1][:_MAX_ERROR_CHARS]
        if result.skipped:
            return "skipped", result.skipped[0][1]
        return "passed", ""


# --- the trial run: how the tests call the entry function -----------------------------------------
class _Tee:
    """A stream that passes writes on and remembers whether anything was written."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.wrote = inner, False

    def write(self, text: str) -> int:
        self.wrote = self.wrote or bool(text)
        return self.inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _snapshot(value: Any) -> str | None:
    try:
        return repr(plain(value))
    except Exception:  # noqa: BLE001 - a value with no JSON form is not compared
        return None


def record_calls(fn: Callable[..., Any], calls: list[dict[str, Any]]) -> Callable[..., Any]:
    """``fn`` wrapped so that each outermost call (not the recursive ones) appends what it saw to
    ``calls``; behaviour unchanged."""
    depth = [0]
    try:
        signature: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None

    def recorded(*args: Any, **kwargs: Any) -> Any:
        if len(calls) >= _MAX_TRIAL_CALLS or signature is None or depth[0]:
            return fn(*args, **kwargs)
        try:
            bound = signature.bind(*args, **kwargs).arguments
        except TypeError:
            return fn(*args, **kwargs)
        before = {name: _snapshot(value) for name, value in bound.items()}
        tee = _Tee(sys.stdout)
        sys.stdout = tee
        depth[0] += 1
        try:
            result = fn(*args, **kwargs)
        finally:
            depth[0] -= 1
            if sys.stdout is tee:
                sys.stdout = tee.inner
        calls.append({"params": {name: describe(value) for name, value in bound.items()},
                      "returned": describe(result), "printed": tee.wrote,
                      "mutated": [name for name, value in bound.items()
                                  if before[name] is not None and _snapshot(value) != before[name]]})
        return result

    recorded.__name__, recorded.__doc__, recorded.__wrapped__ = fn.__name__, fn.__doc__, fn  # type: ignore[attr-defined]
    return recorded


def main(solution: str, tests: str, entry: str | None = None) -> dict:
    """Run ``tests`` against ``solution`` (a trial of ``entry`` when given); see the module docstring."""
    saved_modules = {name: sys.modules.get(name) for name in ("solution", "pytest")}
    saved_streams = (sys.stdout, sys.stderr)
    saved_limit = sys.getrecursionlimit()
    report: dict[str, Any] = {"ok": False, "collected": 0, "passed": 0, "skipped": 0, "failures": []}
    try:
        module = types.ModuleType("solution")
        sys.modules["solution"] = module
        sys.modules["pytest"] = make_pytest_module()
        try:
            exec(compile(solution, "<solution>", "exec"), module.__dict__)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, MemoryError):
                raise
            report["error"] = f"the solution does not load: {_describe(exc, [])}"
            return report
        if entry and callable(module.__dict__.get(entry)):
            report["trial"] = []
            module.__dict__[entry] = record_calls(module.__dict__[entry], report["trial"])
        namespace: dict[str, Any] = {"__name__": "test_solution"}
        lines = tests.splitlines()
        try:
            exec(compile(tests, "<tests>", "exec"), namespace)
            cases = collect(namespace)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, MemoryError):
                raise
            report["error"] = f"the tests do not load: {_describe(exc, lines)}"
            return report
        runner = Runner(namespace, lines)
        report["collected"] = len(cases)
        for case in cases:
            outcome, message = runner.run(case)
            if outcome == "failed":
                if len(report["failures"]) < _MAX_FAILURES:
                    report["failures"].append({"test": case.name, "error": message})
                report.setdefault("failed", 0)
                report["failed"] += 1
            else:
                report[outcome] += 1
        report["failed"] = report.get("failed", 0)
        if not cases:
            report["error"] = "no tests were collected (expected test_* functions or Test* classes)"
        report["ok"] = bool(cases) and report["failed"] == 0 and report["passed"] > 0
        return report
    finally:
        sys.stdout, sys.stderr = saved_streams
        sys.setrecursionlimit(saved_limit)
        for name, value in saved_modules.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value
