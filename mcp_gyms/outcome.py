"""The outcome of one tool call, :class:`StepOutcome`: what the episode engine returns, what a sandbox worker
reports, what the server sends as a tool result's ``structuredContent`` and what clients read. One type from
gym code to client; :mod:`mcp_gyms.protocol` makes its JSON Schema. Pydantic only (sandbox workers import it).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["StepOutcome"]


class StepOutcome(BaseModel):
    """The outcome of one tool call: the ``structuredContent`` of every gym tool result.

    ``done`` is ``terminated or truncated``; the runtime builds outcomes with :meth:`of`, which keeps it so."""

    model_config = ConfigDict(populate_by_name=True)

    observation: str = Field(description="what the tool returned (also the result's text content)")
    reward: float = Field(0.0, description="1 for a Done with the right answer, else 0")
    done: bool = Field(False, description="the episode has ended (terminated or truncated)")
    terminated: bool = Field(False, description="Done was called")
    truncated: bool = Field(False, description="the step budget was spent without Done")
    steps: int = Field(0, description="calls made in this episode so far, bad calls included")
    error: str | None = Field(None, description="null for a good call, else the kind of bad call (ErrorKind)")

    @classmethod
    def of(cls, observation: str, reward: float, terminated: bool, truncated: bool, steps: int,
           error: str | None = None) -> StepOutcome:
        """An outcome from trusted values (no validation: this runs on every call)."""
        return cls.model_construct(observation=observation, reward=reward, done=terminated or truncated,
                                   terminated=terminated, truncated=truncated, steps=steps, error=error)
