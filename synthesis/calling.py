"""How the pipeline calls a problem's entry function and reads its answer: the :class:`CallSpec`.

Task configurations and answers are JSON, but reference solutions take node objects (linked lists,
trees, graphs of the classes they or their tests define), print their answer, or change an argument in
place and return ``None``. Step 0 runs the problem's tests with the entry function wrapped (a *trial*,
see ``synthesis/sandboxed/pytest_lite.py``); :func:`decide_call` reads that record and the tests' text
and fixes, once per problem:

- ``params`` / ``returns`` — which arguments (and whether the result) are node objects, and of which
  class; they travel as JSON in the forms of ``synthesis/sandboxed/objects.py`` (:data:`FORM_DOCS`);
- ``answer`` — ``return`` (what the function returns), ``stdout`` (it returns ``None`` and prints: the
  answer is the printed text, without the final newline) or ``argument`` (it returns ``None`` and
  changes ``argument`` in place: the answer is that argument after the call);
- ``unsupported`` — arguments or results that are objects with no standard JSON form (``Interval``):
  the stage-1 prompt asks the model for a conversion, ``to_arguments(config)`` (and, for a result,
  ``answer_to_json(value)``), which runs in the sandbox with the solution; without one the gym is
  dropped with a reason naming the class.

Stage 2 computes answers by this spec (:func:`synthesis.execution.solution_answer`); the prompts state
it (:func:`call_notes`), so the gym's ``reference_answer`` returns the same thing, and verification
compares the two as it compares any answer.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["FORM_DOCS", "CallSpec", "ObjectForm", "call_notes", "decide_call"]

NodeKind = Literal["linked_list", "binary_tree", "nary_tree", "graph"]

#: How each node kind is written in JSON (shown to the model; implemented in sandboxed/objects.py).
FORM_DOCS: dict[str, str] = {
    "linked_list": 'a linked list, written as the JSON list of its values from the head, e.g. `[1, 2, 3]` '
                   '(`[]` is no list, `None`); a list whose last node links back to node `pos` (0-based) is '
                   'written `{"values": [3, 2, 0, -4], "pos": 1}`',
    "binary_tree": "a binary tree, written in level order with `null` for a missing child and trailing nulls "
                   "left out (LeetCode's form), e.g. `[3, 9, 20, null, null, 15, 7]` (`[]` is the empty tree)",
    "nary_tree": "an n-ary tree, written in level order with each node's children as a group ended by `null`, "
                 "the root alone in the first group (LeetCode's form), e.g. `[1, null, 3, 2, 4, null, 5, 6]`",
    "graph": "a graph given by its node 1, written as the adjacency list of nodes valued 1..n, node k at index "
             "k - 1 (LeetCode's form), e.g. `[[2, 4], [1, 3], [2, 4], [1, 3]]` (`[]` is no graph)",
}
_STDOUT_HINT = re.compile(r"\bcapsys\b|\bcapfd\b|redirect_stdout|sys\.stdout")


class ObjectForm(BaseModel):
    """A node class the entry function takes or returns, and how its JSON form maps onto it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: NodeKind
    class_name: str = Field(alias="class")
    module: str = "solution"
    value_attr: str = "val"


class CallSpec(BaseModel):
    """How to call one problem's entry function on a JSON task configuration and read its answer."""

    model_config = ConfigDict(extra="forbid")

    answer: Literal["return", "stdout", "argument"] = "return"
    argument: str | None = None
    params: dict[str, ObjectForm] = Field(default_factory=dict)
    returns: ObjectForm | None = None
    unsupported: dict[str, str] = Field(default_factory=dict)

    @property
    def needs_tests(self) -> bool:
        """Whether a node class is defined by the tests rather than the solution."""
        forms = [*self.params.values(), *([self.returns] if self.returns else [])]
        return any(f.module != "solution" for f in forms)

    def summary(self) -> str:
        """One line for reports: ``return``, ``stdout``, ``argument nums``, plus the object forms."""
        parts = [self.answer + (f" {self.argument}" if self.argument else "")]
        parts += [f"{name}: {form.kind} ({form.class_name})" for name, form in self.params.items()]
        if self.returns:
            parts.append(f"returns {self.returns.kind} ({self.returns.class_name})")
        parts += [f"{where}: {cls} (model-written conversion)" for where, cls in self.unsupported.items()]
        return "; ".join(parts)


class TrialCall(BaseModel):
    """One recorded call of the trial run, as the sandboxed ``pytest_lite`` reports it (the worker is not
    trusted: a record that does not fit this shape is ignored)."""

    params: dict[str, dict[str, str]] = Field(default_factory=dict)
    returned: dict[str, str] = Field(default_factory=dict)
    printed: bool = False
    mutated: list[str] = Field(default_factory=list)


def _form(seen: dict[str, str]) -> ObjectForm | None:
    if seen.get("kind") not in FORM_DOCS:
        return None
    try:
        return ObjectForm.model_validate(seen)
    except ValidationError:
        return None


def _calls(trial: list[Any]) -> list[TrialCall]:
    calls = []
    for raw in trial:
        try:
            calls.append(TrialCall.model_validate(raw))
        except ValidationError:
            continue
    return calls


def decide_call(trial: list[Any], tests: str, parameters: list[str]) -> CallSpec:
    """The :class:`CallSpec` a trial run shows (see the module docstring).

    The answer is ``argument`` when every recorded call returned ``None`` and some changed an argument
    (the one changed most often), else ``stdout`` when every call returned ``None`` and printed (or the
    tests capture standard output); otherwise ``return``. With no recorded call (the tests reach the
    function some other way) only the tests' text decides."""
    params: dict[str, ObjectForm] = {}
    returns: ObjectForm | None = None
    unsupported: dict[str, str] = {}
    mutated: Counter[str] = Counter()
    trial = _calls(trial)
    for call in trial:
        for name, seen in call.params.items():
            if name in parameters and (form := _form(seen)) is not None:
                params.setdefault(name, form)
            elif name in parameters and seen.get("kind") == "object":
                unsupported.setdefault(f"parameter {name}", str(seen.get("class")))
        if (form := _form(call.returned)) is not None:
            returns = returns or form
        elif call.returned.get("kind") == "object":
            unsupported.setdefault("the answer", str(call.returned.get("class")))
        mutated.update(name for name in call.mutated if name in parameters)
    for key in [k for k in unsupported if k.removeprefix("parameter ") in params]:
        del unsupported[key]
    if returns is not None:
        unsupported.pop("the answer", None)
    all_none = bool(trial) and all(c.returned.get("kind") == "none" for c in trial)
    printed = any(c.printed for c in trial) or bool(_STDOUT_HINT.search(tests))
    if all_none and mutated:
        return CallSpec(answer="argument", argument=mutated.most_common(1)[0][0], params=params,
                        unsupported=unsupported)
    if (all_none or not trial) and printed:
        return CallSpec(answer="stdout", params=params, unsupported=unsupported)
    return CallSpec(params=params, returns=returns, unsupported=unsupported)


def call_notes(spec: CallSpec, conversion: str | None = None) -> str:
    """What the prompts must say about this spec (empty for a plain function of JSON values); with the
    model's ``conversion`` (stage 2), that code instead of the request to write one."""
    lines = []
    if spec.unsupported and conversion:
        lines.append("- Task configurations become the entry function's arguments through this conversion, "
                     f"which fixes their JSON form:\n```python\n{conversion.strip()}\n```")
    elif spec.unsupported:
        what = ", ".join(f"{where} is a `{cls}` object" for where, cls in spec.unsupported.items())
        lines.append(f"- {what[0].upper() + what[1:]}, with no standard JSON form. Choose a simple JSON form "
                     "for it, use that form in task configurations, and after the gym's code block add a second "
                     "```python block defining `to_arguments(config)`: it receives a task configuration and "
                     "returns the dict of keyword arguments for the entry function, building the objects with "
                     "the solution's classes (`from solution import ...`)"
                     + (", and `answer_to_json(value)`, which turns the function's result into JSON data."
                        if "the answer" in spec.unsupported else "."))
    for name, form in spec.params.items():
        lines.append(f"- The parameter `{name}` is {FORM_DOCS[form.kind]}. The solution receives `{form.class_name}` "
                     "objects built from this form; task configurations (and so `setup` and `reference_answer`) "
                     "hold the JSON form.")
    if spec.returns is not None:
        lines.append(f"- The entry function returns {FORM_DOCS[spec.returns.kind]}. The answer is that JSON "
                     "form of the result.")
    if spec.answer == "stdout":
        lines.append("- The reference solution returns `None` and prints its result: the answer is the text it "
                     "prints, as one string with the final newline removed (lines joined by `\\n`).")
    elif spec.answer == "argument":
        lines.append(f"- The reference solution returns `None` and changes `{spec.argument}` in place: the answer "
                     f"is `{spec.argument}` after the call, in JSON.")
    return "\n".join(lines)
