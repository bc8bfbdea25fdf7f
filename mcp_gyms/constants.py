"""The vocabulary shared by the wire protocol and the sandbox workers, defined once.

Standard library only: sandbox workers import it (through the episode engine) and must stay lean, so the
pydantic models of :mod:`mcp_gyms.protocol` live there and re-export these names as part of the contract.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DEFAULT_MAX_STEPS", "DIFFICULTIES", "Difficulty", "ErrorKind"]

#: A task's difficulty.
Difficulty = Literal["easy", "medium", "hard"]
#: The difficulties, easiest first.
DIFFICULTIES: tuple[Difficulty, ...] = ("easy", "medium", "hard")
#: The step budget of a gym that declares none (calls per episode, bad calls included).
DEFAULT_MAX_STEPS = 256


class ErrorKind:
    """Why a call or request failed: the ``error`` of a :class:`~mcp_gyms.protocol.StepOutcome` (and the
    ``kind`` in a JSON-RPC error's data). The groups at the end are what eval and rl count."""

    # a bad tool call: the gym's state is unchanged
    UNKNOWN_TOOL = "unknown_tool"
    INVALID_ARGUMENTS = "invalid_arguments"
    TOOL_ERROR = "tool_error"
    OUTPUT_TOO_LARGE = "output_too_large"
    MEMORY_LIMIT = "memory_limit"
    TIME_LIMIT = "time_limit"
    SANDBOX_ERROR = "sandbox_error"
    # a request the server could not serve
    EPISODE_OVER = "episode_over"
    NO_EPISODE = "no_episode"
    UNKNOWN_EPISODE = "unknown_episode"
    WRONG_GYM = "wrong_gym"
    UNKNOWN_GYM = "unknown_gym"
    UNKNOWN_TASK = "unknown_task"
    GYM_UNAVAILABLE = "gym_unavailable"
    TOO_MANY_EPISODES = "too_many_episodes"
    SHUTTING_DOWN = "shutting_down"

    #: The caller's mistakes: the call never reached a tool.
    INVALID_CALL = frozenset({UNKNOWN_TOOL, INVALID_ARGUMENTS})
    #: Gym code ran and failed, or hit a limit.
    TOOL_FAILURE = frozenset({TOOL_ERROR, TIME_LIMIT, MEMORY_LIMIT, OUTPUT_TOO_LARGE, SANDBOX_ERROR})
    #: The episode is not there to play any more (ended, unknown, elsewhere, or the server is stopping).
    EPISODE_GONE = frozenset({EPISODE_OVER, UNKNOWN_EPISODE, NO_EPISODE, WRONG_GYM, SHUTTING_DOWN})
