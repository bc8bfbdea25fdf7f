"""The gym contract and the in-process episode rules (mcp_gyms.gym, mcp_gyms.episode)."""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar

import pytest

from mcp_gyms import Gym, GymSpec, tool
from mcp_gyms.constants import ErrorKind
from mcp_gyms.episode import LocalEpisode
from mcp_gyms.gym import split_args, strip_examples


class Counter(Gym):
    """Count to a hidden target."""

    answer_type = int
    max_steps = 12

    def setup(self, task: dict[str, Any]) -> None:
        self.target = task["target"]
        self.count = 0
        self.history: list[int] = []

    def observe(self) -> str:
        return f"count={self.count}"

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        return task["target"] * 2

    @tool
    def Step(self, by: int, note: str = "") -> int:
        """Add `by` to the count.

        Args:
            by (int): how much to add.

        Example Output:
            3
        """
        self.count += by
        self.history.append(by)
        if self.count > 100:
            raise ValueError("count overflow")
        return self.count

    @tool
    def Peek(self) -> dict:
        """Return the target's parity.

        >>> gym.Peek()
        {'even': True}
        """
        return {"even": self.target % 2 == 0}

    @staticmethod
    def solve(call) -> None:
        for _ in range(9):
            call("Step", by=1)
        call("Peek")
        call("Done", answer=json.loads(call("Step", by=0)) * 0 + 2 * 5)


def _state(ep: LocalEpisode) -> dict[str, Any]:
    return {k: (v.getstate() if k == "rng" else copy.deepcopy(v)) for k, v in ep.gym.__dict__.items()}


def test_tools_schemas_and_descriptions():
    spec = GymSpec.of(Counter)
    assert list(spec.tools) == ["Observe", "Step", "Peek", "Done"]
    step = spec.tools["Step"]
    assert step.input_schema["properties"]["by"] == {"type": "integer", "description": "how much to add."}
    assert "description" not in step.input_schema["properties"]["note"]  # not documented under Args:
    assert step.input_schema["required"] == ["by"]
    assert step.input_schema["additionalProperties"] is False
    assert step.description == "Add `by` to the count."  # no examples, no Args: block (it is in the schema)
    assert "Example Output" in step.docstring and "Args:" in step.docstring  # kept for verification
    assert ">>>" not in spec.tools["Peek"].description
    assert spec.tools["Done"].input_schema["properties"]["answer"] == {
        "type": "integer", "description": "the final answer to the task."}


def test_split_args_google_style():
    text = ("Move.\n\nArgs:\n    steps (int): how far,\n        in cells.\n    note: free text.\n\n"
            "Returns:\n    str: where you are.")
    assert split_args(text) == ("Move.\n\nReturns:\n    str: where you are.",
                                {"steps": "how far, in cells.", "note": "free text."})
    assert split_args("No arguments here.\n\nReturns:\n    int: one.") == (
        "No arguments here.\n\nReturns:\n    int: one.", {})
    assert split_args("Args:\n    x: the x.") == ("", {"x": "the x."})


def test_strip_examples_keeps_later_sections():
    doc = """Do a thing.

    Examples:
        >>> f(1)
        2

    Returns:
        int: the result.
    """
    assert strip_examples(doc) == "Do a thing.\n\nReturns:\n    int: the result."


@pytest.mark.parametrize(
    "name, args, kind, words",
    [
        ("Nope", {}, ErrorKind.UNKNOWN_TOOL, "unknown tool 'Nope'"),
        ("Step", {}, ErrorKind.INVALID_ARGUMENTS, "missing required argument 'by'"),
        ("Step", {"by": "2"}, ErrorKind.INVALID_ARGUMENTS, "argument 'by'"),
        ("Step", {"by": 1.5}, ErrorKind.INVALID_ARGUMENTS, "argument 'by'"),
        ("Step", {"by": 1, "extra": 2}, ErrorKind.INVALID_ARGUMENTS, "unexpected argument 'extra'"),
        ("Step", "[1, 2]", ErrorKind.INVALID_ARGUMENTS, "must be a JSON object"),
        ("Step", "{not json", ErrorKind.INVALID_ARGUMENTS, "invalid arguments"),
        ("Step", {"by": 500}, ErrorKind.TOOL_ERROR, "count overflow"),
    ],
)
def test_bad_calls_name_the_problem_and_leave_state(name, args, kind, words):
    ep = LocalEpisode(Counter, {"target": 5})
    ep.call("Step", {"by": 3})
    before = _state(ep)
    result = ep.call(name, args)
    assert result.error == kind
    assert words in result.observation and result.observation.startswith("Error: ")
    assert _state(ep) == before  # trial then overwrite: a failed call changes nothing
    assert result.steps == 2 and result.reward == 0 and not result.done


def test_done_rewards_and_ends():
    ep = LocalEpisode(Counter, {"target": 5})
    wrong = ep.call("Done", {"answer": 3})
    assert wrong.terminated and wrong.reward == 0 and "reward=0" in wrong.observation
    assert ep.call("Observe").error == ErrorKind.EPISODE_OVER
    ep = LocalEpisode(Counter, {"target": 5})
    right = ep.call("Done", {"answer": 10})
    assert right.terminated and right.reward == 1.0


def test_step_budget_truncates_with_zero_reward():
    ep = LocalEpisode(Counter, {"target": 5})
    results = [ep.call("Observe") for _ in range(Counter.max_steps)]
    assert results[-1].truncated and not results[-1].terminated and results[-1].reward == 0
    assert not any(r.truncated for r in results[:-1])
    late = ep.call("Done", {"answer": 10})
    assert late.error == ErrorKind.EPISODE_OVER and late.reward == 0


def test_gymnasium_step_view():
    ep = LocalEpisode(Counter, {"target": 1})
    obs, reward, terminated, truncated, info = ep.step({"name": "Step", "arguments": {"by": 2}})
    assert (obs, reward, terminated, truncated, info) == ("2", 0.0, False, False, {"steps": 1, "error": None})
    obs, *_rest, info = ep.step('{"name": "Step", "parameters": {"by": 1}}')  # the original format's key
    assert obs == "3"
    obs, *_rest, info = ep.step("not json")
    assert info["error"] == ErrorKind.INVALID_ARGUMENTS and "not valid JSON" in obs
    obs, reward, terminated, truncated, _ = ep.step({"name": "Done", "arguments": {"answer": 2}})
    assert reward == 1.0 and terminated and not truncated


def test_oracle_plays_through_the_call_path():
    result = LocalEpisode(Counter, {"target": 5}).run_oracle()
    assert result.reward == 1.0 and result.error is None
    assert result.steps == 12 - 0 == len(result.calls)  # every oracle call is counted
    assert result.calls[0] == ("Step", {"by": 1})


def test_oracle_that_never_calls_done_is_reported():
    class Lazy(Counter):
        @staticmethod
        def solve(call) -> None:
            call("Observe")

    result = LocalEpisode(Lazy, {"target": 5}).run_oracle()
    assert result.reward == 0 and result.error == "the oracle ended without calling Done"


def _untyped(self, x):  # noqa: ANN001
    """A tool without type hints."""
    return x


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ns: ns.pop("solve"), "does not implement solve()"),
        (lambda ns: ns.update(solve=lambda self, call: None), "must be a @staticmethod"),
        (lambda ns: ns.update(Untyped=tool(_untyped)), "has no type hint"),
        (lambda ns: ns.update(Observe=tool(lambda self: "x")), "basic action"),
    ],
)
def test_contract_violations_are_named(mutate, message):
    ns = {k: v for k, v in vars(Counter).items() if not k.startswith("__")}
    mutate(ns)
    broken = type("Broken", (Gym,), ns)
    with pytest.raises(TypeError, match=message):
        GymSpec.of(broken)


def test_tool_without_docstring_is_rejected():
    def Bare(self) -> int:  # noqa: N802
        return 1

    broken = type("NoDoc", (Counter,), {"Bare": tool(Bare)})
    with pytest.raises(TypeError, match="needs a docstring"):
        GymSpec.of(broken)


def test_unpicklable_state_fails_at_start():
    class Bad(Counter):
        def setup(self, task):
            super().setup(task)
            self.gen = (i for i in range(3))

    with pytest.raises(TypeError, match="cannot be snapshotted"):
        LocalEpisode(Bad, {"target": 1})


class _RaisesWhenPickled:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self):
        raise self.exc


def test_snapshot_errors_name_the_problem():
    """An exception with no message still says what it was; running out of memory is not 'unpicklable'."""

    def gym_holding(exc: BaseException) -> type[Counter]:
        class Holder(Counter):
            def setup(self, task):
                super().setup(task)
                self.blob = _RaisesWhenPickled(exc)

        return Holder

    with pytest.raises(TypeError, match="cannot be snapshotted: ValueError$"):
        LocalEpisode(gym_holding(ValueError()), {"target": 1})
    with pytest.raises(MemoryError):
        LocalEpisode(gym_holding(MemoryError()), {"target": 1})


def test_class_level_containers_belong_to_each_episode():
    """A list/dict in the class body is copied per episode: changes roll back and never leak across episodes."""

    class Shared(Counter):
        seen: ClassVar[list[int]] = []
        names: ClassVar[dict[str, int]] = {"a": 1}

        @tool
        def Remember(self, value: int) -> int:
            """Remember a value, then fail when it is negative.

            Args:
                value (int): the value.
            """
            self.seen.append(value)
            self.names[str(value)] = value
            if value < 0:
                raise ValueError("negative")
            return len(self.seen)

    first, second = LocalEpisode(Shared, {"target": 1}), LocalEpisode(Shared, {"target": 1})
    assert first.call("Remember", {"value": 5}).observation == "1"
    assert first.call("Remember", {"value": -1}).error == ErrorKind.TOOL_ERROR  # rolled back
    assert first.gym.seen == [5] and first.gym.names == {"a": 1, "5": 5}
    assert second.call("Remember", {"value": 7}).observation == "1"  # never saw the first episode's 5
    assert Shared.seen == [] and Shared.names == {"a": 1}


def test_tricky_failures_still_roll_back():
    class Tricky(Counter):
        @tool
        def Interrupt(self) -> str:
            """Corrupt the state, then raise KeyboardInterrupt."""
            self.count = -999
            raise KeyboardInterrupt

        @tool
        def Unsavable(self) -> str:
            """Leave something that cannot be pickled in the state."""
            self.count = -5
            self.fn = lambda: 1
            return "ok"

        @tool
        def Liar(self) -> str:
            """Return a huge string whose type lies about its length."""

            class Short(str):
                def __len__(self) -> int:
                    return 0

            return Short("x" * 100_000)

        @tool
        def MutateTask(self, items: list) -> str:
            """Change the task configuration that setup received."""
            self.task_seen["target"] = 1000
            return "mutated"

        def setup(self, task):
            super().setup(task)
            self.task_seen = task

    ep = LocalEpisode(Tricky, {"target": 5})
    ep.call("Step", {"by": 1})
    for name, kind in [("Interrupt", ErrorKind.TOOL_ERROR), ("Unsavable", ErrorKind.TOOL_ERROR),
                       ("Liar", ErrorKind.OUTPUT_TOO_LARGE)]:
        result = ep.call(name, {})
        assert result.error == kind, result.observation
        assert ep.gym.count == 1 and "fn" not in ep.gym.__dict__
    assert ep.call("MutateTask", {"items": []}).error is None
    assert ep.call("Done", {"answer": 10}).reward == 1.0  # the reference answer still sees target 5
