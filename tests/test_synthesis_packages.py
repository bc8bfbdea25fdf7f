"""Packages a problem imports: the allowlist, the drop reasons, and the packages in the real sandbox."""

from __future__ import annotations

import anyio

from mcp_gyms.sandbox import SandboxPool
from synthesis import packages
from synthesis.calling import CallSpec
from synthesis.execution import run_problem_tests, solution_answer
from synthesis.packages import imported_packages, package_problem
from synthesis.pipeline import synthesize
from synthesis.sources import Problem

NUMPY = "import numpy as np\n\ndef spread(values):\n    return np.ptp(np.array(values))\n"  # a numpy scalar
NUMPY_TESTS = "from solution import spread\n\ndef test_it():\n    assert spread([3, 9, 1]) == 8\n"
SCIPY = "from scipy.special import comb\n\ndef paths(n):\n    return int(comb(2 * n, n, exact=True))\n"
SCIPY_TESTS = "from solution import paths\n\ndef test_it():\n    assert paths(3) == 20\n"


def test_imports_are_found_by_parsing():
    source = "import os, numpy.linalg as la\nfrom scipy import stats\nfrom . import x\ndef f():\n    import sympy\n"
    assert imported_packages(source) == {"numpy", "scipy", "sympy"}
    assert imported_packages("from solution import f\nimport pytest\nimport collections") == set()
    assert imported_packages("not python (") == set()


def test_a_package_outside_the_allowlist_is_named(monkeypatch):
    assert package_problem(NUMPY, NUMPY_TESTS) is None
    why = package_problem("import sympy\n", "from networkx import Graph\n")
    assert why == "the problem imports networkx, sympy, outside the sandbox's package allowlist (numpy, pandas, scipy)"
    monkeypatch.setattr(packages, "_installed", lambda name: False)
    assert package_problem(NUMPY, "") == ("the problem imports numpy, which is allowed but not installed: "
                                          "pip install 'codegym-mcp[synth]'")


def test_allowlisted_packages_run_in_the_sandbox():
    async def main():
        async with SandboxPool(1, preload=packages.SANDBOX_PRELOAD) as pool:
            numpy_report = await run_problem_tests(pool, Problem(id="n", question="q", solution=NUMPY,
                                                                 tests=NUMPY_TESTS, entry_point="spread"))
            scipy_report = await run_problem_tests(pool, Problem(id="s", question="q", solution=SCIPY,
                                                                 tests=SCIPY_TESTS, entry_point="paths"))
        return numpy_report, scipy_report

    numpy_report, scipy_report = anyio.run(main)
    assert numpy_report.ok, numpy_report.reason()
    assert scipy_report.ok, scipy_report.reason()


def test_step_0_drops_package_problems_naming_the_package(tmp_path):
    problems = [Problem(id="sympy-x", question="q", solution="import sympy\n\ndef f(x):\n    return x\n",
                        tests="from solution import f\n\ndef test_it():\n    assert f(1) == 1\n", entry_point="f"),
                Problem(id="numpy-x", question="q", solution=NUMPY, tests=NUMPY_TESTS, entry_point="spread"),
                Problem(id="scipy-x", question="q", solution=SCIPY, tests=SCIPY_TESTS, entry_point="paths")]
    report = anyio.run(lambda: synthesize(problems, out=tmp_path / "bank", llm=None, workers=1, until="tests"))
    rows = {r.problem_id: r for r in report.rows}
    assert rows["sympy-x"].code == "package" and "imports sympy, outside the sandbox's package allowlist" in \
        rows["sympy-x"].reason
    assert rows["numpy-x"].verdict != "dropped"

    async def answer():
        async with SandboxPool(1, preload=packages.SANDBOX_PRELOAD) as pool:  # as synthesis runs problems
            problem = problems[1]
            return await solution_answer(pool, problem, {"values": [4, 9, 1]}, CallSpec()), \
                await solution_answer(pool, Problem(id="a", question="q", tests="t", entry_point="f", solution=(
                    "import numpy as np\n\ndef f(n):\n    return np.arange(n) * 2\n")), {"n": 3}, CallSpec())

    assert anyio.run(answer) == (8, [0, 2, 4])  # numpy scalars and arrays are answers like any other
    scipy = rows["scipy-x"]  # runs once the workers preload it; until then, dropped naming it (not tests_fail)
    assert scipy.verdict != "dropped" or (scipy.code == "package" and "imports scipy" in scipy.reason)
