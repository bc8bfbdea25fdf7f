"""Running a problem's own code (reference solution, tests) in the sandbox, never in this process.

Both helpers send a self-contained program from :mod:`synthesis.sandboxed` to
:meth:`mcp_gyms.sandbox.SandboxPool.execute`; the pool's limits bound each run.

- :func:`run_problem_tests` — step 0: the problem's tests against its reference solution.
- :func:`solution_answer` — stage 2: the reference solution's answer on one unit-test input.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mcp_gyms.sandbox import SandboxError, SandboxPool
from mcp_gyms.verify import MAX_ANSWER_CHARS

from .calling import CallSpec
from .sources import Problem

__all__ = ["TestFailure", "TestReport", "AnswerError", "run_problem_tests", "solution_answer"]

_PROGRAMS = Path(__file__).resolve().parent / "sandboxed"
_SHARED_IMPORT = re.compile(r"^from objects import [^\n]*$", re.MULTILINE)


@cache
def program(name: str) -> str:
    """The source text of one sandboxed program (``pytest_lite`` or ``call_solution``), self-contained:
    its ``from objects import ...`` line is replaced by the text of ``objects.py``."""
    source = (_PROGRAMS / f"{name}.py").read_text(encoding="utf-8")
    shared = (_PROGRAMS / "objects.py").read_text(encoding="utf-8")
    return _SHARED_IMPORT.sub(lambda _: shared, source, count=1)


class TestFailure(BaseModel):
    test: str
    error: str


class TestReport(BaseModel):
    """The outcome of running a problem's tests against its reference solution."""

    __test__ = False  # not a pytest test class

    ok: bool
    collected: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[TestFailure] = Field(default_factory=list)
    error: str | None = None
    trial: list[Any] = Field(default_factory=list)  # checked record by record in synthesis.calling

    def reason(self) -> str:
        """One line saying why the tests did not pass (empty when they did)."""
        if self.ok:
            return ""
        if self.error:
            return self.error
        if self.failures:
            first = self.failures[0]
            more = f" (and {self.failed - 1} more)" if self.failed > 1 else ""
            return f"{self.failed}/{self.collected} tests fail; {first.test}: {first.error}{more}"
        return f"no test passed ({self.collected} collected, {self.skipped} skipped)"


def problem_scope(problem: Problem) -> str:
    """The sandbox scope of a problem's code: its runs share worker processes with no other problem's."""
    return hashlib.sha256(f"{problem.solution}\0{problem.tests}".encode()).hexdigest()[:24]


async def run_problem_tests(pool: SandboxPool, problem: Problem) -> TestReport:
    """Run ``problem.tests`` against ``problem.solution`` in the sandbox (step 0); the report's ``trial``
    records how the tests call the entry function (see :func:`synthesis.calling.decide_call`).

    Never raises for a bad problem: a timeout, memory blow-up or crash becomes a failed report."""
    try:
        raw = await pool.execute(program("pytest_lite"), "main", {"solution": problem.solution, "tests": problem.tests,
                                                                  "entry": problem.entry_point},
                                 scope=problem_scope(problem))
    except SandboxError as exc:
        return TestReport(ok=False, error=f"running the tests: {exc}")
    return TestReport.model_validate(raw)


class AnswerError(Exception):
    """The reference solution gave no usable answer for an input (the message says why)."""


async def solution_answer(pool: SandboxPool, problem: Problem, config: dict[str, Any],
                          call: CallSpec | None = None, conversion: str | None = None) -> Any:
    """The reference solution's answer on one input, as JSON data (stage 2).

    The input is passed as keyword arguments to ``problem.entry_point``, node objects built from their
    JSON forms and the answer taken as ``call`` says (returned, printed, or an argument changed in
    place; see :class:`~synthesis.calling.CallSpec`); a model-written ``conversion`` builds the arguments
    where objects have no standard JSON form. Raises :class:`AnswerError` when the solution
    raises, exceeds the pool's limits, gives something JSON cannot carry, or an answer that prints
    :data:`~mcp_gyms.verify.MAX_ANSWER_CHARS` characters or more."""
    if not problem.entry_point:
        raise AnswerError("the problem has no entry function")
    spec = call or CallSpec()
    args = {"solution": problem.solution, "entry": problem.entry_point, "config": config,
            "spec": spec.model_dump(mode="json", by_alias=True)}
    if spec.needs_tests:
        args["tests"] = problem.tests
    if conversion:
        args["conversion"] = conversion
    try:
        reply = await pool.execute(program("call_solution"), "main", args, scope=problem_scope(problem))
    except SandboxError as exc:
        raise AnswerError(str(exc).replace("code execution", "the solution", 1)) from None
    value = reply["value"]
    printed = len(json.dumps(value))
    if printed >= MAX_ANSWER_CHARS:
        raise AnswerError(f"the answer prints {printed} characters (limit {MAX_ANSWER_CHARS - 1})")
    return value
