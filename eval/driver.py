"""What a policy sees of one episode, and the bookkeeping that turns its calls into a record.

A policy gets an :class:`EpisodeDriver` and plays by calling :meth:`EpisodeDriver.call` (or
:meth:`EpisodeDriver.reject` for a call it could not even parse). The driver sends calls to the gym over
MCP, counts them (tool calls, invalid calls, tool errors), keeps the chat messages and token counts the
policy reports, and knows when the server ended the episode (``terminated`` by ``Done`` or ``truncated``
by the step budget). A policy that stops on its own sets :attr:`EpisodeDriver.stop_reason`
(``max_turns``, ``no_tool_call``); failures are exceptions the runner turns into reasons.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_gyms.client import RemoteEpisode
from mcp_gyms.protocol import StepOutcome

from .gyms import GymEntry, TaskEntry
from .records import INVALID_KINDS, TOOL_ERROR_KINDS, CallRecord

__all__ = ["EpisodeDriver", "EpisodeOver"]


class EpisodeOver(Exception):
    """Raised by :meth:`EpisodeDriver.call` on a call made after the episode ended (a policy bug)."""


@dataclass
class EpisodeDriver:
    """One episode in progress. ``session`` is the live MCP episode; the rest is bookkeeping."""

    gym: GymEntry
    task: TaskEntry
    sample: int
    session: RemoteEpisode
    calls: list[CallRecord] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    turns: int = 0
    invalid_calls: int = 0
    tool_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    steps: int = 0
    stop_reason: str | None = None
    stop_note: str | None = None  # why the policy stopped, when there is more to say than the reason
    started: float = field(default_factory=time.monotonic)

    @property
    def task_text(self) -> str:
        return self.session.info.task_text

    @property
    def max_steps(self) -> int:
        return self.session.info.max_steps

    @property
    def tools(self) -> Sequence[dict[str, Any]]:
        """The gym's tools as MCP lists them: ``{"name", "description", "input_schema"}``."""
        return self.gym.tools

    @property
    def over(self) -> bool:
        """Whether the server ended the episode (``Done`` or the step budget)."""
        return self.terminated or self.truncated

    async def call(self, name: str, arguments: dict[str, Any], *, turn: int, call_id: str = "",
                   source: Literal["native", "text", "policy"] = "policy",
                   raw_arguments: str | None = None) -> CallRecord:
        """Send one call to the gym and record it. Never raises for a bad call (it is an error observation)."""
        if self.over:
            raise EpisodeOver(f"call to {name!r} after the episode ended")
        started = time.monotonic()
        reply: StepOutcome = await self.session.call(name, arguments)
        record = CallRecord(turn=turn, id=call_id or f"call-{len(self.calls)}", name=name, arguments=arguments,
                            raw_arguments=raw_arguments, source=source, sent=True, observation=reply.observation,
                            error=reply.error, reward=reply.reward, done=reply.done, truncated=reply.truncated,
                            steps=reply.steps, latency_s=round(time.monotonic() - started, 6))
        self._count(record)
        self.steps = reply.steps
        if reply.done:
            self.reward = reply.reward
            self.terminated = reply.terminated
            self.truncated = reply.truncated and not reply.terminated
        return record

    def reject(self, name: str, raw_arguments: str | None, message: str, *, turn: int, call_id: str = "",
               source: Literal["native", "text", "policy"] = "text") -> CallRecord:
        """Record a call the evaluator answers itself (malformed arguments): it does not reach the gym."""
        record = CallRecord(turn=turn, id=call_id or f"call-{len(self.calls)}", name=name, arguments=None,
                            raw_arguments=raw_arguments, source=source, sent=False,
                            observation=f"Error: {message}. Call a tool as a JSON object of arguments.",
                            error="malformed", steps=self.steps)
        self._count(record)
        return record

    def _count(self, record: CallRecord) -> None:
        self.calls.append(record)
        if record.error in INVALID_KINDS:
            self.invalid_calls += 1
        elif record.error in TOOL_ERROR_KINDS:
            self.tool_errors += 1

    def wall_s(self) -> float:
        return time.monotonic() - self.started
