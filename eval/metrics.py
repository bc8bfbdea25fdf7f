"""Metrics of an evaluation, computed from episode records only (so they can be recomputed from
``trajectories.jsonl`` at any time).

Definitions (per task = one (gym, task) pair, played ``n`` times, ``c`` of them successful):

- **success rate**: successful episodes / episodes (an episode succeeds when its reward is 1).
- **pass@k** (unbiased, Chen et al. 2021): ``1 - C(n - c, k) / C(n, k)``, the chance that at least one of
  ``k`` samples drawn without replacement from the ``n`` succeeds; averaged over tasks. Defined for
  ``k <= n`` only: tasks with fewer than ``k`` samples are left out (and counted in ``tasks``).
- **pass^k** (Yao et al. 2024, tau-bench): ``C(c, k) / C(n, k)``, the chance that ``k`` samples drawn
  without replacement *all* succeed; averaged over tasks. ``pass^1 == pass@1 ==`` the per-task success rate.
- **tool calls vs oracle**: mean tool calls per episode, the mean oracle steps of the same episodes' tasks,
  and the mean of the per-episode ratio ``calls / oracle steps`` over *successful* episodes (how much
  longer a solving policy takes than the verified oracle).
- **invalid-call rate**: invalid calls / tool calls, where a call is invalid if it could not be parsed
  (malformed JSON arguments), named an unknown tool, or failed the tool's argument schema.
- **tool-error rate**: calls that were well-formed but failed inside the gym (the tool raised, hit a time
  or memory limit, returned too much) / tool calls.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from math import comb
from typing import Any, Protocol

from pydantic import BaseModel, Field

__all__ = ["EpisodeLike", "Summary", "pass_at_k", "pass_hat_k", "summarise", "default_ks", "group_summaries"]


class EpisodeLike(Protocol):
    """What the metrics read from an episode record (see :class:`eval.records.EpisodeRecord`)."""

    gym: str
    task_id: str
    difficulty: str
    reward: float
    reason: str
    tool_calls: int
    invalid_calls: int
    tool_errors: int
    oracle_steps: int | None
    turns: int
    prompt_tokens: int
    completion_tokens: int
    wall_s: float

    @property
    def success(self) -> bool: ...


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task with ``n`` samples, ``c`` correct: ``1 - C(n-c, k) / C(n, k)``.

    Raises ``ValueError`` unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    _check(n, c, k)
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k of one task with ``n`` samples, ``c`` correct: ``C(c, k) / C(n, k)``.

    Raises ``ValueError`` unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    _check(n, c, k)
    return comb(c, k) / comb(n, k)


def _check(n: int, c: int, k: int) -> None:
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 and 0 <= c <= n (got n={n}, c={c})")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n} (got k={k})")


def default_ks(k_max: int) -> list[int]:
    """The k values reported for ``k_max`` samples per task: 1, 2, 4, ... and ``k_max`` itself."""
    if k_max < 1:
        return []
    ks, k = [], 1
    while k < k_max:
        ks.append(k)
        k *= 2
    ks.append(k_max)
    return ks


class Summary(BaseModel):
    """Aggregate metrics of a group of episodes (all of them, one gym, one difficulty...)."""

    episodes: int
    tasks: int
    successes: int
    success_rate: float
    samples_per_task: int = Field(description="the smallest number of samples any task of the group got")
    pass_at_k: dict[str, float] = Field(default_factory=dict, description="k -> mean pass@k over tasks")
    pass_hat_k: dict[str, float] = Field(default_factory=dict, description="k -> mean pass^k over tasks")
    mean_tool_calls: float
    mean_oracle_steps: float | None = Field(None, description="mean oracle steps of the episodes' tasks")
    calls_over_oracle: float | None = Field(None, description="mean calls / oracle steps over successful episodes")
    invalid_call_rate: float
    tool_error_rate: float
    mean_turns: float
    mean_wall_s: float
    prompt_tokens: int
    completion_tokens: int
    reasons: dict[str, int] = Field(default_factory=dict, description="how episodes ended -> count")


def summarise(episodes: Sequence[EpisodeLike], ks: Iterable[int] | None = None) -> Summary:
    """The metrics of ``episodes`` (see the module docstring). ``ks`` defaults to :func:`default_ks` of
    the largest sample count of a task; pass@k / pass^k are averaged over tasks with at least k samples."""
    by_task: dict[tuple[str, str], list[EpisodeLike]] = defaultdict(list)
    for ep in episodes:
        by_task[(ep.gym, ep.task_id)].append(ep)
    n_eps = len(episodes)
    counts = [(len(eps), sum(e.success for e in eps)) for eps in by_task.values()]
    k_max = max((n for n, _ in counts), default=0)
    ks = sorted(set(ks)) if ks is not None else default_ks(k_max)
    at_k: dict[str, float] = {}
    hat_k: dict[str, float] = {}
    for k in ks:
        eligible = [(n, c) for n, c in counts if n >= k]
        if k >= 1 and eligible:
            at_k[str(k)] = _mean([pass_at_k(n, c, k) for n, c in eligible])
            hat_k[str(k)] = _mean([pass_hat_k(n, c, k) for n, c in eligible])
    calls = sum(e.tool_calls for e in episodes)
    oracle = [e.oracle_steps for e in episodes if e.oracle_steps]
    ratios = [e.tool_calls / e.oracle_steps for e in episodes if e.success and e.oracle_steps]
    successes = sum(e.success for e in episodes)
    return Summary(
        episodes=n_eps,
        tasks=len(by_task),
        successes=successes,
        success_rate=successes / n_eps if n_eps else 0.0,
        samples_per_task=min((n for n, _ in counts), default=0),
        pass_at_k=at_k,
        pass_hat_k=hat_k,
        mean_tool_calls=calls / n_eps if n_eps else 0.0,
        mean_oracle_steps=_mean(oracle) if oracle else None,
        calls_over_oracle=_mean(ratios) if ratios else None,
        invalid_call_rate=sum(e.invalid_calls for e in episodes) / calls if calls else 0.0,
        tool_error_rate=sum(e.tool_errors for e in episodes) / calls if calls else 0.0,
        mean_turns=_mean([e.turns for e in episodes]) if n_eps else 0.0,
        mean_wall_s=_mean([e.wall_s for e in episodes]) if n_eps else 0.0,
        prompt_tokens=sum(e.prompt_tokens for e in episodes),
        completion_tokens=sum(e.completion_tokens for e in episodes),
        reasons=dict(Counter(e.reason for e in episodes).most_common()),
    )


def group_summaries(episodes: Sequence[EpisodeLike], key: str, ks: Iterable[int] | None = None,
                    order: Sequence[str] | None = None) -> dict[str, Summary]:
    """:func:`summarise` per value of the attribute ``key`` (``"gym"``, ``"difficulty"``), in ``order``
    when given (values missing from it follow, sorted)."""
    groups: dict[str, list[EpisodeLike]] = defaultdict(list)
    for ep in episodes:
        groups[str(getattr(ep, key))].append(ep)
    ks = list(ks) if ks is not None else None
    names = [n for n in (order or []) if n in groups] + sorted(n for n in groups if n not in (order or []))
    return {name: summarise(groups[name], ks) for name in names}


def _mean(values: Sequence[float] | Sequence[int]) -> float:
    return float(sum(values)) / len(values)


def as_dict(summary: Summary) -> dict[str, Any]:
    """JSON-ready view of a summary."""
    return summary.model_dump(mode="json")
