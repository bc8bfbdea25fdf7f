"""Rewards: what the agent loop records, and the fallback reward function for rows it left unscored.

The gym is the judge. :class:`rl.agent_loop.CodeGymAgentLoop` sets ``reward_score`` from the gym's own
verdict (1.0 for a correct ``Done``, else 0.0) and veRL places it on the last response token; no reward
function runs for such rows. A row is left without a score only when the loop hit a server error (the gym
could not give a verdict). veRL then scores it with its reward function; point
``reward.custom_reward_function.path`` at this file (the launcher does) and :func:`compute_score` decides:

1. the gym's verdict, when the loop recorded one (``extra_info["codegym_reward"]``; veRL merges the loop's
   ``extra_fields`` into ``extra_info``) — so running the function on every row gives the gym's rewards;
2. otherwise, for ``codegym`` rows, the *last* ``Done`` call written in the response (Hermes
   ``<tool_call>…</tool_call>`` format; unlike the evaluator's lenient parser, which also reads a block cut
   off at the end of a reply, only closed blocks count here) compared with the row's ``ground_truth`` (the reference answer as JSON text)
   after a JSON round trip — the default ``check_answer`` of a gym. A gym with a more lenient custom
   check may be scored 0 here where it would have given 1: the fallback errs towards no reward;
3. otherwise 0.0.

Every result is a dict with the same keys (:data:`REWARD_EXTRA_KEYS`), as veRL's batch code requires of
``reward_extra_info``. No veRL import: this file is loaded by path inside veRL's reward workers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REWARD_EXTRA_KEYS", "compute_score", "last_done_answer", "reward_extra_info"]

#: Keys of every ``reward_extra_info`` this project produces (loop and fallback alike).
REWARD_EXTRA_KEYS = ("score", "acc", "codegym_scored_by", "codegym_tool_calls", "codegym_invalid_calls",
                     "codegym_tool_errors", "codegym_server_error")

_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_DATA_SOURCE_PREFIX = "codegym"


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
        "codegym_server_error": int(info.get("codegym_ended") == "server_error"),
    }


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def last_done_answer(text: str) -> tuple[bool, Any]:
    """``(found, answer)`` of the last well-formed Hermes ``Done`` call in ``text``."""
    found, answer = False, None
    for block in _TOOL_CALL.findall(text or ""):
        try:
            call = json.loads(block)
        except json.JSONDecodeError:
            continue
        if not isinstance(call, dict) or call.get("name") != "Done":
            continue
        arguments = call.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                continue
        if isinstance(arguments, dict) and "answer" in arguments:
            found, answer = True, arguments["answer"]
    return found, answer


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    """veRL's reward-function signature; see the module docstring for the rules. Never raises on bad input."""
    info = extra_info if isinstance(extra_info, Mapping) else {}
    recorded = info.get("codegym_reward")
    if recorded is not None:
        try:
            return reward_extra_info(float(recorded), "gym", info)
        except (TypeError, ValueError):
            pass
    if str(data_source or "").startswith(_DATA_SOURCE_PREFIX) and ground_truth not in (None, ""):
        found, answer = last_done_answer(solution_str)
        if found:
            try:
                reference = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
                correct = _normalise(answer) == _normalise(reference)
            except (TypeError, ValueError):
                correct = False
            return reward_extra_info(1.0 if correct else 0.0, "answer_match", info)
    return reward_extra_info(0.0, "none", info)
