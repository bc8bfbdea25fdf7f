"""`codegym verify`: the paper's stable checks, each rejection with its reason."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from mcp_gyms.bank import Bank, GymRecord, Provenance, TaskRecord
from mcp_gyms.verify import GymSource, collect_sources, verify_sources

GOOD = textwrap.dedent('''
    from mcp_gyms import Gym, tool

    class Sum(Gym):
        answer_type = int

        def setup(self, task):
            self.items = list(task["items"])

        def observe(self):
            return f"{len(self.items)} hidden numbers"

        @classmethod
        def reference_answer(cls, task):
            return sum(task["items"])

        @tool
        def Count(self) -> int:
            """How many numbers there are."""
            return len(self.items)

        @tool
        def Item(self, i: int) -> int:
            """The i-th number."""
            return self.items[i]

        @staticmethod
        def solve(call):
            call("Observe")
            n = int(call("Count"))
            call("Done", answer=sum(int(call("Item", i=i)) for i in range(n)))
''')


def _source(code: str, tasks: list[dict], gym_id: str = "sum", class_name: str = "Sum") -> GymSource:
    record = GymRecord(id=gym_id, title=gym_id, class_name=class_name, task_text="add them",
                       provenance=Provenance(source="test"))
    return GymSource(record, code, [TaskRecord(id=f"t{i}", difficulty="easy", **t) for i, t in enumerate(tasks)], gym_id)


TASKS = [{"config": {"items": list(range(n))}} for n in (8, 12, 20)]


async def _verify(*sources):
    return await verify_sources(list(sources), workers=2)


async def test_good_gym_verifies():
    [v] = await _verify(_source(GOOD, TASKS))
    assert v.verified, v.checks
    assert [t.oracle_steps for t in v.tasks] == [11, 15, 23]


async def test_rejections_name_their_reason():
    too_few_steps = _source(GOOD, [{"config": {"items": [1]}}, {"config": {"items": [1, 2]}}], gym_id="short")
    wrong_answer = _source(GOOD, [{"config": {"items": list(range(9))}, "answer": 99}], gym_id="stored")
    count_tool = '    @tool\n    def Count(self) -> int:\n        """How many numbers there are."""\n        return len(self.items)\n'
    assert count_tool in GOOD
    three_tools = _source(GOOD.replace(count_tool, "").replace('int(call("Count"))', "12"), TASKS[1:2], gym_id="three")
    cheating_oracle = _source(GOOD.replace("sum(int(", "1 + sum(int("), TASKS, gym_id="wrong_oracle")
    slow_reference = _source(GOOD.replace("return sum(task", "while True: pass\n        return sum(task"),
                             TASKS[:1], gym_id="slow")
    syntax = _source("class Sum(:\n", TASKS, gym_id="syntax")
    verdicts = {v.gym_id: v for v in await _verify(too_few_steps, wrong_answer, three_tools, cheating_oracle,
                                                   slow_reference, syntax)}
    assert not any(v.verified for v in verdicts.values())
    assert "no task needs 10-256 oracle calls" in verdicts["short"].checks["steps"]
    assert "needs 4 calls" in verdicts["short"].tasks[0].reason
    assert "differs from the stored answer 99" in verdicts["stored"].tasks[0].reason
    assert "only 3 tools" in verdicts["three"].checks["tools"]
    assert "oracle earned reward 0" in verdicts["wrong_oracle"].tasks[0].reason
    assert "time limit" in verdicts["slow"].tasks[0].reason
    assert "SyntaxError" in verdicts["syntax"].checks["load"]


def test_cli_verifies_default_bank_and_fails_on_bad_gym(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mcp_gyms.cli", "verify", "--json"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["verified"] == report["total"] >= 8

    bank = Bank.create(tmp_path / "bank")
    src = _source(GOOD.replace("sum(int(", "1 + sum(int("), TASKS, gym_id="bad")
    bank.put_gym(src.record, src.code, src.tasks)
    out = subprocess.run([sys.executable, "-m", "mcp_gyms.cli", "verify", str(tmp_path / "bank")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "REJECTED" in out.stdout and "oracle earned reward 0" in out.stdout
    assert "0/1 gyms verified" in out.stdout


def test_collect_sources_rejects_unknown_paths(tmp_path):
    from mcp_gyms.bank import BankError

    with pytest.raises(BankError, match="neither a bank"):
        collect_sources([str(tmp_path)])
