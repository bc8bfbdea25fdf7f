"""The records an evaluation writes: one :class:`EpisodeRecord` per episode (a line of
``trajectories.jsonl``), with every message, call, observation, reward and timing, enough to re-score.

Contract of a record:

- ``reward`` is the reward the *server* gave (1 only after a correct ``Done``); ``success`` is
  ``reward >= 1``. The evaluator never computes a reward itself.
- ``reason`` says why the episode ended (:data:`Reason`):

  ============== ==========================================================================================
  done           the policy called ``Done`` (``done`` is true; reward 0 or 1)
  step_budget    the server's step budget ran out (``truncated``, as on the wire; reward 0)
  max_turns      the policy used ``--max-turns`` model turns without ending the episode (reward 0)
  no_tool_call   the model answered without any tool call, or its reply hit ``--max-tokens`` first (reward 0)
  context_overflow the prompt outgrew the model's context window, or the reply was cut at its end (reward 0)
  model_error    the model endpoint kept failing after the retries (HTTP 5xx/4xx, connection errors)
  timeout        a model request kept timing out after the retries, or the episode's wall-time limit passed
  server_error   the gym server failed (could not start the episode, MCP errors after retries)
  ============== ==========================================================================================

- ``calls`` lists every tool call the policy made, in order. ``sent`` is false for a call the evaluator
  answered itself without reaching the gym (malformed arguments); every ``sent`` call went to the server
  and counts toward its step budget. Re-scoring replays exactly the ``sent`` calls.
- A call is *invalid* (``invalid_calls``) when its arguments were malformed, it named an unknown tool or
  failed the tool's argument schema; it is a *tool error* (``tool_errors``) when it was well-formed but
  the gym reported a failure (the tool raised, a time or memory limit, an oversized result).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mcp_gyms.constants import ErrorKind

__all__ = ["CallRecord", "EpisodeRecord", "Reason", "INVALID_KINDS", "TOOL_ERROR_KINDS", "RECORD_FORMAT"]

RECORD_FORMAT = "codegym-eval/1"

Reason = Literal["done", "step_budget", "max_turns", "no_tool_call", "context_overflow", "model_error", "timeout",
                 "server_error"]
REASONS: tuple[str, ...] = ("done", "step_budget", "max_turns", "no_tool_call", "context_overflow", "model_error",
                            "timeout", "server_error")

#: Call error kinds that make a call *invalid* (the policy's fault before any gym code ran).
INVALID_KINDS = ErrorKind.INVALID_CALL | {"malformed"}
#: Call error kinds that are *tool errors* (gym code ran and failed, or hit a limit).
TOOL_ERROR_KINDS = ErrorKind.TOOL_FAILURE


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallRecord(_Model):
    """One tool call and what came back."""

    turn: int = Field(description="the model turn (or policy step) that made the call, from 0")
    id: str = Field(description="the call id (native tool-call id, text-N, or the policy's own)")
    name: str
    arguments: dict[str, Any] | None = Field(description="the parsed arguments; None when malformed")
    raw_arguments: str | None = Field(None, description="the arguments exactly as the model wrote them")
    source: Literal["native", "text", "policy"]
    sent: bool = Field(description="whether the call reached the gym server")
    observation: str
    error: str | None = Field(None, description="None for a good call, else its kind (malformed, unknown_tool, ...)")
    reward: float = 0.0
    done: bool = False
    truncated: bool = False
    steps: int = Field(0, description="the server's step count after this call")
    latency_s: float = 0.0


class EpisodeRecord(_Model):
    """One finished episode (a line of ``trajectories.jsonl``)."""

    format: Literal["codegym-eval/1"] = RECORD_FORMAT
    gym: str
    task_id: str
    task_index: int
    difficulty: str
    seed: int
    sample: int = Field(description="which of the k samples of this task, from 0")
    policy: str
    model: str | None = None
    reward: float
    success: bool
    done: bool = Field(description="the episode ended with Done")
    truncated: bool = Field(description="the server's step budget was spent without Done (as on the wire); "
                                        "``done`` false means the episode ended without Done for any reason")
    reason: Reason
    error: str | None = Field(None, description="what went wrong (model_error, timeout, server_error, ...)")
    turns: int = 0
    tool_calls: int = 0
    invalid_calls: int = 0
    tool_errors: int = 0
    steps: int = Field(0, description="the server's final step count")
    max_steps: int | None = None
    oracle_steps: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = Field(0, description="model (or server) requests retried")
    wall_s: float = 0.0
    started_at: str = ""
    messages: list[dict[str, Any]] = Field(default_factory=list, description="the chat, as sent to the model")
    calls: list[CallRecord] = Field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, int]:
        """(gym, task id, sample): identifies an episode within a run."""
        return (self.gym, self.task_id, self.sample)
