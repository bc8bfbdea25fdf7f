"""Metrics: the unbiased pass@k / pass^k estimators against hand-computed values, and summaries."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from eval.metrics import default_ks, group_summaries, pass_at_k, pass_hat_k, summarise


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (4, 1, 1, 0.25),            # 1 - C(3,1)/C(4,1) = 1 - 3/4
    (4, 1, 2, 0.5),             # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (4, 2, 2, 5 / 6),           # 1 - C(2,2)/C(4,2) = 1 - 1/6
    (4, 2, 3, 1.0),             # fewer than k failures: some success is always drawn
    (5, 2, 3, 0.9),             # 1 - C(3,3)/C(5,3) = 1 - 1/10
    (10, 3, 5, 11 / 12),        # 1 - C(7,5)/C(10,5) = 1 - 21/252
    (4, 0, 4, 0.0),
    (4, 4, 1, 1.0),
])
def test_pass_at_k_hand_computed(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (4, 2, 2, 1 / 6),           # C(2,2)/C(4,2)
    (4, 3, 2, 0.5),             # C(3,2)/C(4,2) = 3/6
    (5, 3, 3, 0.1),             # C(3,3)/C(5,3)
    (4, 4, 4, 1.0),
    (4, 0, 1, 0.0),
    (4, 1, 1, 0.25),            # pass^1 = pass@1 = c/n
])
def test_pass_hat_k_hand_computed(n: int, c: int, k: int, expected: float) -> None:
    assert pass_hat_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize("n", [1, 3, 6])
def test_estimators_equal_brute_force_over_subsets(n: int) -> None:
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(outcomes, k))
            assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
            assert pass_hat_k(n, c, k) == pytest.approx(sum(all(s) for s in subsets) / len(subsets))


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_estimators_reject_bad_input(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


def test_default_ks() -> None:
    assert default_ks(1) == [1]
    assert default_ks(4) == [1, 2, 4]
    assert default_ks(5) == [1, 2, 4, 5]
    assert default_ks(0) == []


@dataclass
class Ep:
    gym: str
    task_id: str
    difficulty: str
    reward: float
    tool_calls: int = 10
    oracle_steps: int | None = 5
    invalid_calls: int = 0
    tool_errors: int = 0
    reason: str = "done"
    turns: int = 1
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 1.0

    @property
    def success(self) -> bool:
        return self.reward >= 1


def test_summary_averages_over_tasks() -> None:
    # task a: 2 of 4 succeed; task b: 0 of 4; task c (other gym, hard): 4 of 4
    eps = ([Ep("g1", "a", "easy", r) for r in (1, 1, 0, 0)] + [Ep("g1", "b", "easy", 0, reason="max_turns")] * 4
           + [Ep("g2", "c", "hard", 1, tool_calls=20, invalid_calls=2, tool_errors=1)] * 4)
    s = summarise(eps)
    assert (s.episodes, s.tasks, s.successes, s.samples_per_task) == (12, 3, 6, 4)
    assert s.success_rate == pytest.approx(0.5)
    assert s.pass_at_k == pytest.approx({"1": 0.5, "2": (5 / 6 + 0 + 1) / 3, "4": (1 + 0 + 1) / 3})
    assert s.pass_hat_k == pytest.approx({"1": 0.5, "2": (1 / 6 + 0 + 1) / 3, "4": (0 + 0 + 1) / 3})
    assert s.mean_tool_calls == pytest.approx((8 * 10 + 4 * 20) / 12)
    assert s.calls_over_oracle == pytest.approx((2 * 2 + 4 * 4) / 6)  # successful episodes only
    assert s.invalid_call_rate == pytest.approx(8 / 160)
    assert s.tool_error_rate == pytest.approx(4 / 160)
    assert s.reasons == {"done": 8, "max_turns": 4}
    by_diff = group_summaries(eps, "difficulty", order=["easy", "medium", "hard"])
    assert list(by_diff) == ["easy", "hard"]
    assert by_diff["hard"].success_rate == 1.0
    assert by_diff["easy"].pass_at_k["2"] == pytest.approx(5 / 12)


def test_summary_of_uneven_samples_skips_tasks_with_fewer_than_k() -> None:
    eps = [Ep("g", "a", "easy", 1), Ep("g", "a", "easy", 0), Ep("g", "b", "easy", 1)]
    s = summarise(eps)
    assert s.samples_per_task == 1
    assert s.pass_at_k["2"] == pytest.approx(1.0)  # only task a has 2 samples
    assert s.pass_at_k["1"] == pytest.approx((0.5 + 1) / 2)


def test_summary_of_nothing() -> None:
    s = summarise([])
    assert (s.episodes, s.success_rate, s.pass_at_k, s.invalid_call_rate) == (0, 0.0, {}, 0.0)


def test_eval_reaches_gyms_only_through_mcp() -> None:
    """No module of eval/ imports gym code, the episode engine or the sandbox (the architecture rule)."""
    import ast
    from pathlib import Path

    import eval as package

    forbidden = {"mcp_gyms.gym", "mcp_gyms.episode", "mcp_gyms.episode_manager", "mcp_gyms.sandbox",
                 "mcp_gyms.sandbox_worker", "mcp_gyms.jail"}
    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            assert not forbidden & set(names), f"{path.name} imports {forbidden & set(names)}"
