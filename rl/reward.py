"""Rewards: what the agent loop records, and veRL's reward function for a row the loop did not score.

The gym is the only judge. :class:`rl.agent_loop.CodeGymAgentLoop` always sets ``reward_score``: the gym's
verdict (1.0 for a correct ``Done``, else 0.0), or 0.0 when the gym could not judge the trajectory (the
server failed, ``extra_info["codegym_ended"] == "server_error"``) — never a score from another rule such as
matching the response text against the reference answer. veRL puts it on the last response token and runs
no reward function for such rows.

:func:`compute_score` (``reward.custom_reward_function.path: pkg://rl.reward``) exists so that a row
without a loop verdict can never be scored by veRL's default rules either: it returns the verdict the loop
recorded (``extra_info["codegym_reward"]``; veRL merges the loop's ``extra_fields`` into ``extra_info``),
else 0.0.

Every result is a dict with the same keys (:data:`REWARD_EXTRA_KEYS`), as veRL's batch code requires of
``reward_extra_info``; ``codegym/server_errors`` is 1 for a trajectory the gym could not judge (its mean is
the share of such trajectories in veRL's validation metrics). No veRL import: veRL's reward workers load
this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["REWARD_EXTRA_KEYS", "SERVER_ERRORS_KEY", "compute_score", "reward_extra_info"]

#: The per-trajectory count of gym server failures (0 or 1) in ``reward_extra_info``.
SERVER_ERRORS_KEY = "codegym/server_errors"
#: Keys of every ``reward_extra_info`` this project produces (loop and reward function alike).
REWARD_EXTRA_KEYS = ("score", "acc", "codegym_scored_by", "codegym_tool_calls", "codegym_invalid_calls",
                     "codegym_tool_errors", SERVER_ERRORS_KEY)


def _count(info: Mapping[str, Any], key: str) -> int:
    value = info.get(key)
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def reward_extra_info(score: float, scored_by: str, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``reward_extra_info`` dict for a trajectory: the score and the loop's counters from ``info``."""
    info = info or {}
    return {
        "score": float(score),
        "acc": float(score),
        "codegym_scored_by": scored_by,
        "codegym_tool_calls": _count(info, "codegym_tool_calls"),
        "codegym_invalid_calls": _count(info, "codegym_invalid_calls"),
        "codegym_tool_errors": _count(info, "codegym_tool_errors"),
        SERVER_ERRORS_KEY: int(info.get("codegym_ended") == "server_error"),
    }


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    """veRL's reward-function signature: the gym's recorded verdict, else 0.0. Never raises on bad input.

    ``solution_str`` and ``ground_truth`` are deliberately unused: only the gym judges an answer.
    """
    info = extra_info if isinstance(extra_info, Mapping) else {}
    recorded = info.get("codegym_reward")
    if recorded is not None:
        try:
            return reward_extra_info(float(recorded), "gym", info)
        except (TypeError, ValueError):
            pass
    return reward_extra_info(0.0, "unjudged", info)
