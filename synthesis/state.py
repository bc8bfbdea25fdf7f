"""What the pipeline remembers per problem, on disk, so a killed run resumes where it stopped.

One JSON file per problem, ``WORK/state/<gym_id>.json``, rewritten atomically after every stage. It
holds each finished stage's :class:`StageResult` (passed, or dropped with a reason) plus what later
stages need (the gym draft, the kept tasks, the oracle code, the final record). A stored state whose
``fingerprint`` differs from the current run's (another problem text, model, prompt or setting) is
ignored and the problem starts over. Transient failures (the LLM endpoint down, a replay cache miss)
are never stored, so the next run retries them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_gyms.bank import GymRecord, TaskRecord
from mcp_gyms.constants import DEFAULT_MAX_STEPS
from mcp_gyms.files import atomic_write

from .calling import CallSpec
from .extract import GymDraft

__all__ = ["CandidateResult", "InputResult", "ProblemState", "StageResult", "StateStore", "STAGES"]

#: The stages, in order. ``difficulty`` runs only when a difficulty filter is configured.
STAGES: tuple[str, ...] = ("tests", "gym", "inputs", "oracle", "verify", "difficulty")
STAGE_TITLES = {
    "tests": "step 0: problem tests pass",
    "gym": "stage 1: gym synthesis",
    "inputs": "stage 2: unit-test inputs",
    "oracle": "stage 3: tool-only solution",
    "verify": "stable verification",
    "difficulty": "stage 4: difficulty filter",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageResult(_Model):
    """The outcome of one stage for one problem. ``code`` is a short drop category for the report."""

    stage: str
    passed: bool
    code: str = ""
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class InputResult(_Model):
    """One generated unit-test input and what became of it."""

    sample: int
    difficulty: str
    config: Any
    status: Literal["kept", "duplicate", "dropped"]
    reason: str = ""
    answer: Any = None
    task_id: str | None = None


class CandidateResult(_Model):
    """One tool-only solution candidate and how it fared."""

    index: int
    origin: str
    status: Literal["oracle", "failed"]
    reason: str = ""
    steps: dict[str, int] = Field(default_factory=dict)


class ProblemState(_Model):
    """Everything the pipeline knows about one problem so far."""

    problem_id: str
    gym_id: str
    fingerprint: str
    results: dict[str, StageResult] = Field(default_factory=dict)
    call: CallSpec = Field(default_factory=CallSpec)
    draft: GymDraft | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    max_steps: int = DEFAULT_MAX_STEPS
    inputs: list[InputResult] = Field(default_factory=list)
    tasks: list[TaskRecord] = Field(default_factory=list)
    candidates: list[CandidateResult] = Field(default_factory=list)
    code: str | None = None
    record: GymRecord | None = None

    @property
    def dropped(self) -> StageResult | None:
        """The stage that dropped the problem, if one did."""
        return next((r for r in self.results.values() if not r.passed), None)

    def finished(self, stages: tuple[str, ...]) -> bool:
        """Whether no stage of ``stages`` is left to run."""
        return self.dropped is not None or all(s in self.results for s in stages)

    @property
    def verified(self) -> bool:
        return self.dropped is None and self.record is not None and "verify" in self.results


class StateStore:
    """Per-problem state files under ``root`` (``root/<gym_id>.json``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, gym_id: str) -> Path:
        return self.root / f"{gym_id}.json"

    def load(self, gym_id: str, fingerprint: str) -> ProblemState | None:
        """The stored state, or None when absent, unreadable or made under another fingerprint."""
        path = self.path(gym_id)
        try:
            state = ProblemState.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError, json.JSONDecodeError):
            return None
        return state if state.fingerprint == fingerprint and state.gym_id == gym_id else None

    def remove_stale_temp_files(self) -> int:
        """Delete temp files a killed run left behind (the real files are always whole). Call only
        when no other run uses this folder. Returns how many were removed."""
        stale = list(self.root.glob(".*.tmp")) if self.root.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def save(self, state: ProblemState) -> None:
        atomic_write(self.path(state.gym_id), state.model_dump_json(indent=1) + "\n")
