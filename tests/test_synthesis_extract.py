"""Reading LLM answers (gyms, inputs, solve candidates) and building the stage prompts."""

from __future__ import annotations

import ast

import pytest
from fixtures.synthesis.scenarios import GOOD_SOLVE, GYM

from synthesis.extract import (
    ExtractionError,
    extract_gym,
    extract_inputs,
    extract_solve,
    remove_solve,
    replace_solve,
)
from synthesis.prompting import gym_messages, inputs_messages, prompts_digest, render, solve_messages
from synthesis.sources import Problem

GOOD = GYM.replace("CLASSNAME", "PeakGym")


def test_a_good_answer_is_extracted():
    draft = extract_gym("Sure! " + GOOD + "\nHope this helps.")
    assert (draft.title, draft.class_name) == ("Peak finder", "PeakGym")
    assert draft.task_text.startswith("A list of integers is hidden from you.")
    assert draft.code.startswith("from typing import Any") and "class PeakGym(Gym):" in draft.code


@pytest.mark.parametrize("old, new, reason", [
    ("<task>", "<tusk>", "no <task>...</task> text"),
    ("```python", "```text", "no ```python block defining a Gym subclass"),
    ("def setup(self, task: dict[str, Any]) -> None:", "def setup(self task):", "does not parse: line"),
    ("    @classmethod\n    def reference_answer", "    def reference_answer", "reference_answer must be a @classmethod"),
    ("    @staticmethod\n    def solve", "    def solve", "solve must be a @staticmethod"),
    ("    def observe(self)", "    def look(self)", "does not define observe()"),
    ("class PeakGym(Gym):", "class PeakGym(Gym):\n    pass\n\n\nclass OtherGym(Gym):", "defines 2 gym classes"),
    ('        call("Observe")\n', "        import gc\n", "PeakGym.solve imports gc"),
])
def test_bad_answers_are_refused_with_the_reason(old, new, reason):
    assert old in GOOD
    with pytest.raises(ExtractionError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        extract_gym(GOOD.replace(old, new))


def test_missing_imports_are_added_and_titles_default():
    text = GOOD.replace("from mcp_gyms import Gym, tool\n", "").replace("<title>Peak finder</title>", "")
    draft = extract_gym(text)
    assert draft.code.startswith("from mcp_gyms import Gym, tool\n") and draft.title == "Peak"


def test_inputs_are_read_from_json_in_any_usual_wrapping():
    items = '[{"difficulty": "easy", "input": {"values": [1]}}, {"difficulty": "hard", "input": {"values": []}}]'
    for text in (f"```json\n{items}\n```", f"Inputs: {items} done", f'```\n{{"inputs": {items}}}\n```'):
        inputs, problems = extract_inputs(text)
        assert [i.difficulty for i in inputs] == ["easy", "hard"] and problems == []
    inputs, problems = extract_inputs('```json\n[{"difficulty": "tricky", "input": {}}, [1], '
                                      '{"difficulty": "easy", "input": {"a": 1}, "why": "x"}]\n```')
    assert inputs == [] and len(problems) == 3 and "difficulty" in problems[0] and "why" in problems[2]
    with pytest.raises(ExtractionError, match="no JSON list"):
        extract_inputs("I cannot do that.")


def test_solve_candidates_are_extracted_linted_and_spliced():
    source = extract_solve("Here:\n```python\nimport json\n\n@staticmethod\ndef solve(call):\n    return json.loads('1')\n```")
    assert source.startswith("def solve(call):\n    import json")
    for bad, why in [("def solve(call):\n    return call.__closure__", "attribute __closure__"),
                     ("def solve(call):\n    import os", "imports os"),
                     ("def solve(call):\n    return globals()", "uses globals"),
                     ("def solve(call, gym):\n    pass", "exactly one parameter"),
                     ("def other(call):\n    pass", "no parseable `def solve")]:
        with pytest.raises(ExtractionError, match=why):
            extract_solve(f"```python\n{bad}\n```")

    code = extract_gym(GOOD).code
    replaced = replace_solve(code, "PeakGym", extract_solve(GOOD_SOLVE))
    cls = next(n for n in ast.parse(replaced).body if isinstance(n, ast.ClassDef))
    solves = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "solve"]
    assert len(solves) == 1 and [d.id for d in solves[0].decorator_list] == ["staticmethod"]
    assert "values = [int(call('Value', index=i))" in replaced and 'call("IsPeak"' not in replaced
    removed = remove_solve(code, "PeakGym")
    assert "def solve" not in removed and "def IsPeak" in removed
    assert "def solve(call)" in replace_solve(removed, "PeakGym", "def solve(call):\n    pass\n")  # appended


def test_prompts_repeat_the_requirements_after_the_example():
    p = Problem(id="x", question="Count peaks [unique-question]", solution="def count(values, k):\n    return 0\n",
                tests="t", entry_point="count")
    [system, user] = gym_messages(p)
    assert system["role"] == "system" and user["content"].startswith("# Task: turn a coding problem into a gym")
    text = user["content"]
    example, question, requirements = (text.index("class SensorStripGym(Gym)"), text.index("[unique-question]"),
                                       text.index("## Requirements"))
    assert example < question < requirements
    assert "`count(values, k)`" in text and "`values`, `k`" in text and "{{" not in text
    inputs = inputs_messages(p, "class G(Gym): ...", 15)[1]["content"]
    assert "Write 15 inputs for the entry function: 5 easy, 5 medium and\n5 hard" in inputs
    assert "class G(Gym)" in inputs
    tools = [{"name": "Length", "description": "How many.", "input_schema": {"properties": {}}},
             {"name": "Value", "description": "One value.", "input_schema": {"properties": {"index": {"type": "integer"}}}}]
    solve = solve_messages("find peaks", tools, extract_gym(GOOD).code, "PeakGym")[1]["content"]
    assert '- `Value(index: "integer")`: One value.' in solve and "def solve" not in solve.split("## Requirements")[0]
    # the limits are stated once per prompt, from the same file and numbers; tool results are explained
    for prompt in (text, inputs):
        assert prompt.count("## Limits") == 1 and prompt.count("shorter than 100") == 1
        assert "between 10 and\n  256 tool calls" in prompt and "write every one that exists" in prompt
        assert "The reference solution is the truth" in prompt
    assert "200" not in text.split("## Your problem")[1]  # the old, inconsistent call range is gone
    for prompt in (text, solve):
        assert "`True` gives `\"true\"`" in prompt and "no quotes added" in prompt
    assert "`self.rng` (a seeded `random.Random`) already exists when `setup` runs" in text
    assert "at most 256 calls" in solve
    assert prompts_digest() == prompts_digest()
    with pytest.raises(KeyError, match="no value for"):
        render("solve.md", task_text="t")

