"""How the pipeline calls entry functions: node objects from JSON and back, and answers that are printed
or left in an argument (the trial run of the problem's tests decides, in the real sandbox)."""

from __future__ import annotations

import anyio
import pytest

from mcp_gyms.sandbox import SandboxPool
from synthesis.calling import CallSpec, ObjectForm, call_notes, decide_call
from synthesis.execution import AnswerError, run_problem_tests, solution_answer
from synthesis.extract import ExtractionError, extract_conversion
from synthesis.sandboxed import objects
from synthesis.sources import Problem, find_entry_point


class Node:  # a node class with every link an object form knows, to build and read back
    def __init__(self, val=0):
        self.val = val


def _round_trip(kind: str, data):
    form = {"kind": kind, "value_attr": "val"}
    return objects.plain(objects.build(data, form, Node, "x"))


@pytest.mark.parametrize("kind, data", [
    ("linked_list", [1, 2, 3]),
    ("linked_list", {"values": [3, 2, 0, -4], "pos": 1}),
    ("linked_list", {"values": [7], "pos": 0}),
    ("binary_tree", [3, 9, 20, None, None, 15, 7]),
    ("binary_tree", [1, None, 2, None, 3]),
    ("nary_tree", [1, None, 3, 2, 4, None, 5, 6]),
    ("nary_tree", [1, None, 2, 3, 4, 5, None, None, 6, 7, None, 8, None, 9, 10]),
    ("graph", [[2, 4], [1, 3], [2, 4], [1, 3]]),
])
def test_object_forms_round_trip(kind, data):
    assert _round_trip(kind, data) == data
    assert objects.describe(objects.build(data, {"kind": kind, "value_attr": "val"}, Node, "x"))["kind"] == kind


def test_object_forms_refuse_bad_data_with_the_reason():
    form = {"kind": "linked_list", "value_attr": "val"}
    with pytest.raises(objects.FormError, match="pos 5 is not -1 or a node index below 2"):
        objects.build({"values": [1, 2], "pos": 5}, form, Node, "head")
    with pytest.raises(objects.FormError, match="written as a JSON list, got str"):
        objects.build("1->2", form, Node, "head")
    with pytest.raises(objects.FormError, match="root value is null"):
        objects.build([None, 1], {"kind": "binary_tree", "value_attr": "val"}, Node, "root")
    with pytest.raises(objects.FormError, match="neighbours are node numbers 1..2"):
        objects.build([[2], [3]], {"kind": "graph", "value_attr": "val"}, Node, "node")
    # a "tree" whose node is reached twice has no tree form; an endless list is cut at MAX_NODES
    root = objects.build([1, 2], {"kind": "binary_tree", "value_attr": "val"}, Node, "root")
    root.right = root.left
    with pytest.raises(objects.FormError, match="not a tree"):
        objects.plain(root)
    big = objects.build(list(range(objects.MAX_NODES)), form, Node, "head")
    with pytest.raises(objects.FormError, match="more than"):
        objects.build(list(range(objects.MAX_NODES + 1)), form, Node, "head")
    assert len(objects.plain(big)) == objects.MAX_NODES


LINKED = '''class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next

def is_palindrome_helper(values):
    return values == values[::-1]

def reverse_list(head):
    prev = None
    while head:
        head.next, prev, head = prev, head, head.next
    return prev
'''
LINKED_TESTS = '''from solution import ListNode, reverse_list

def build(values):
    head = None
    for v in reversed(values):
        head = ListNode(v, head)
    return head

def test_reverse():
    head = reverse_list(build([1, 2, 3]))
    assert [head.val, head.next.val, head.next.next.val] == [3, 2, 1]
    assert reverse_list(None) is None
'''
PRINTS = "def triangle(n):\n    for i in range(1, n + 1):\n        print('*' * i)\n"
PRINTS_TESTS = ("from solution import triangle\n\ndef test_it(capsys):\n    triangle(2)\n"
                "    assert capsys.readouterr().out == '*\\n**\\n'\n")
SORTS = ("def bubble(nums, reverse=False):\n    for i in range(len(nums)):\n"
         "        for j in range(len(nums) - 1 - i):\n"
         "            if (nums[j] > nums[j + 1]) != reverse:\n                nums[j], nums[j + 1] = nums[j + 1], nums[j]\n")
SORTS_TESTS = "from solution import bubble\n\ndef test_it():\n    a = [3, 1, 2]\n    bubble(a)\n    assert a == [1, 2, 3]\n"
TREE = ("def invert(root):\n    if root:\n        root.left, root.right = invert(root.right), invert(root.left)\n"
        "    return root\n")
TREE_TESTS = '''from solution import invert

class TreeNode:  # the tests define the node class
    def __init__(self, val, left=None, right=None):
        self.val, self.left, self.right = val, left, right

def test_it():
    t = invert(TreeNode(1, TreeNode(2), TreeNode(3)))
    assert t.left.val == 3 and t.right.val == 2
'''
INTERVALS = '''class Interval:
    def __init__(self, start, end):
        self.start, self.end = start, end

def total(intervals):
    return sum(i.end - i.start for i in intervals)
'''
INTERVALS_TESTS = "from solution import Interval, total\n\ndef test_it():\n    assert total([Interval(1, 3)]) == 2\n"


def _problem(solution: str, tests: str) -> Problem:
    return Problem(id="p", question="q", solution=solution, tests=tests, entry_point=find_entry_point(solution, tests))


def test_the_trial_run_decides_how_to_call_and_the_answers_follow_it():
    cases = [
        (LINKED, LINKED_TESTS, "return; head: linked_list (ListNode); returns linked_list (ListNode)",
         [({"head": [1, 2, 3]}, [3, 2, 1]), ({"head": []}, [])]),
        (PRINTS, PRINTS_TESTS, "stdout", [({"n": 3}, "*\n**\n***")]),
        (SORTS, SORTS_TESTS, "argument nums", [({"nums": [5, 2, 9, 1]}, [1, 2, 5, 9]),
                                               ({"nums": [1, 3, 2], "reverse": True}, [3, 2, 1])]),
        (TREE, TREE_TESTS, "return; root: binary_tree (TreeNode); returns binary_tree (TreeNode)",
         [({"root": [1, 2, 3, None, 4]}, [1, 3, 2, None, None, 4])]),
    ]

    async def main():
        async with SandboxPool(1) as pool:
            for solution, tests, summary, answers in cases:
                problem = _problem(solution, tests)
                report = await run_problem_tests(pool, problem)
                assert report.ok and report.trial, report.reason()
                spec = decide_call(report.trial, tests, problem.parameters())
                assert spec.summary() == summary and not spec.unsupported
                for config, expected in answers:
                    assert await solution_answer(pool, problem, config, spec) == expected
                if "ListNode" in summary:  # a bad JSON form is a dropped input with the reason, not a crash
                    with pytest.raises(AnswerError, match="head: a linked list is written as a JSON list"):
                        await solution_answer(pool, problem, {"head": "1->2"}, spec)
            problem = _problem(INTERVALS, INTERVALS_TESTS)
            report = await run_problem_tests(pool, problem)
            assert decide_call(report.trial, INTERVALS_TESTS, ["intervals"]).unsupported == {
                "parameter intervals": "Interval"}  # a list of objects with no JSON form
            # the entry's reference returned None on every call: without a trial the tests' text decides
            assert decide_call([], PRINTS_TESTS, ["n"]).answer == "stdout"

    anyio.run(main)


def test_an_object_without_a_json_form_is_named_and_garbled_trial_records_are_ignored():
    trial = [{"params": {"shape": {"kind": "object", "class": "Polygon", "module": "solution"}},
              "returned": {"kind": "json"}, "printed": False, "mutated": []}]
    assert decide_call(trial, "", ["shape"]).unsupported == {"parameter shape": "Polygon"}
    # the worker is not trusted: records of the wrong shape are skipped, never a crash of the stage
    garbled = [None, 7, {"params": {"x": {"kind": "linked_list"}}, "returned": {"kind": "none"}, "mutated": ["x"]},
               {"params": [], "returned": "x"}, {"returned": {"kind": "none"}, "mutated": ["nums", "evil"]}]
    assert decide_call(garbled, "", ["x", "nums"]) == CallSpec(answer="argument", argument="x")


def test_the_prompt_notes_state_the_forms_and_the_answer():
    spec = CallSpec(answer="argument", argument="head",
                    params={"head": ObjectForm(kind="linked_list", class_name="ListNode")})
    notes = call_notes(spec)
    assert '{"values": [3, 2, 0, -4], "pos": 1}' in notes and "`ListNode` objects" in notes
    assert "changes `head` in place: the answer is `head` after the call" in notes
    assert "prints" in call_notes(CallSpec(answer="stdout")) and call_notes(CallSpec()) == ""


def test_a_model_written_conversion_builds_objects_without_a_standard_form():
    problem = _problem(INTERVALS, INTERVALS_TESTS)
    answer = ("<task>t</task>\n```python\nclass G(Gym):\n    pass\n```\n```python\nfrom solution import Interval\n\n"
              "def to_arguments(config):\n    return {'intervals': [Interval(a, b) for a, b in config['intervals']]}\n```")
    conversion = extract_conversion(answer, "total")
    with pytest.raises(ExtractionError, match="no ```python block defining to_arguments"):
        extract_conversion("```python\nx = 1\n```", "total")
    spec = CallSpec(unsupported={"parameter intervals": "Interval"})
    assert "`Interval` object, with no standard JSON form" in call_notes(spec)
    assert "def to_arguments(config)" in call_notes(spec, conversion)

    async def main():
        async with SandboxPool(1) as pool:
            assert await solution_answer(pool, problem, {"intervals": [[1, 3], [4, 8]]}, spec, conversion) == 6
            with pytest.raises(AnswerError, match="to_arguments failed: TypeError"):
                await solution_answer(pool, problem, {"intervals": [1]}, spec, conversion)

    anyio.run(main)


def test_bad_outputs_are_dropped_inputs_with_the_reason():
    loud = "def shout(n):\n    for _ in range(n):\n        print('x' * 1000)\n"
    tangled = ("class TreeNode:\n    def __init__(self, val=0, left=None, right=None):\n"
               "        self.val, self.left, self.right = val, left, right\n\n"
               "def tangle(root):\n    root.right = root.left\n    return root\n")
    spec = CallSpec(params={"root": ObjectForm(kind="binary_tree", class_name="TreeNode")},
                    returns=ObjectForm(kind="binary_tree", class_name="TreeNode"))

    async def main():
        async with SandboxPool(1) as pool:
            with pytest.raises(AnswerError, match="prints more than 100000 characters"):
                await solution_answer(pool, Problem(id="l", question="q", solution=loud, tests="t",
                                                    entry_point="shout"), {"n": 500}, CallSpec(answer="stdout"))
            with pytest.raises(AnswerError, match="not a tree: a node is reached twice"):
                await solution_answer(pool, Problem(id="t", question="q", solution=tangled, tests="t",
                                                    entry_point="tangle"), {"root": [1, 2]}, spec)

    anyio.run(main)
