"""Stage 4 of ``codegym synth``: how often a reference model solves each task, measured by the evaluator.

:class:`EvaluatorDifficulty` is the :class:`~synthesis.stages.DifficultyFilter` behind
``codegym synth --difficulty-model``. For one verified gym it

1. writes the gym into a bank of its own, ``ROOT/<gym_id>/bank`` (``ROOT`` is ``WORK/difficulty``);
2. runs :func:`eval.evaluation.run_evaluation` on that bank with the ``openai`` policy and ``k = tries``
   episodes per task. The evaluator serves the bank with its own local gym server and plays it over MCP
   only, exactly as ``codegym eval`` does; nothing of the gym runs in this process. Its outputs
   (``trajectories.jsonl``, ``results.json``, ``report.md``) stay in ``ROOT/<gym_id>/eval`` so a person
   can read why a task was kept; the stage details name that folder;
3. counts, per task, the episodes that earned reward >= 1.

Contract:

- **Infrastructure trouble is not a failed task.** Episodes that ended with ``model_error``,
  ``server_error`` or ``timeout`` (the endpoint or the gym server did not answer, so nothing was learned
  about the task), a run stopped by a fatal model error (wrong key, model or URL), an interrupted run,
  missing episodes, or an evaluator that cannot start all raise :class:`~synthesis.llm.LLMError`: the
  pipeline leaves the problem incomplete and a rerun evaluates the gym again. Every other ending
  (``done`` with a wrong answer, ``step_budget``, ``max_turns``, ``no_tool_call``,
  ``context_overflow``) is the model failing the task and counts as unsolved.
- **Resumable.** After a complete evaluation, ``ROOT/<gym_id>/counts.json`` stores the counts (written
  atomically) under a fingerprint of the gym (record, code, tasks), ``tries``, the model and its
  sampling settings; a later call with the same fingerprint returns them without evaluating. Otherwise
  the gym's folder is removed first and the gym evaluated afresh (the evaluator refuses an output
  folder that already holds a run).
- **Bounded.** At most ``parallel`` gyms are evaluated at once, each in a worker thread with its own
  local gym server (``workers`` sandbox workers); the episodes of one gym run ``concurrency`` at a time.
  A cancelled call (Ctrl-C) waits for its evaluation to end: the evaluator is synchronous.
- **The API key** is a :class:`~pydantic.SecretStr` handed to the evaluator only. It is in no
  fingerprint and no file (``results.json`` says ``"api_key": "set"``).

An instance serves one event loop (one pipeline run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import anyio
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from eval.evaluation import EvalConfig, EvalError, run_evaluation
from mcp_gyms.bank import Bank, BankError
from mcp_gyms.constants import DEFAULT_MAX_STEPS
from mcp_gyms.files import atomic_write
from mcp_gyms.verify import GymSource

from .llm import LLMError
from .stages import DifficultyOutcome

__all__ = ["API_KEY_VARIABLES", "DifficultyModel", "EvaluatorDifficulty", "TRANSIENT_REASONS", "api_key_from_env"]

#: Episode endings that say nothing about the task (infrastructure trouble): they make a gym's
#: evaluation transient (:class:`~synthesis.llm.LLMError`) instead of counting as unsolved.
TRANSIENT_REASONS = frozenset({"model_error", "server_error", "timeout"})

#: Where ``codegym synth`` looks for the reference model's key, in order (the synthesis LLM's after
#: the first).
API_KEY_VARIABLES = ("CODEGYM_DIFFICULTY_API_KEY", "CODEGYM_LLM_API_KEY", "OPENAI_API_KEY")

_OUTCOME_FIELDS = {"model", "max_turns", "temperature", "top_p", "max_tokens"}
_COUNTS = "counts.json"


def api_key_from_env() -> SecretStr | None:
    """The first non-empty variable of :data:`API_KEY_VARIABLES`, as a secret (None: no key)."""
    for name in API_KEY_VARIABLES:
        if os.environ.get(name):
            return SecretStr(os.environ[name])
    return None


class DifficultyModel(BaseModel):
    """The reference model of stage 4 and how the evaluator plays it (see :class:`eval.evaluation.EvalConfig`).

    ``model`` and the sampling settings decide the counts (they are in every fingerprint);
    ``base_url``, the key and the throughput settings do not."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (None: the openai default)")
    api_key: SecretStr | None = Field(None, exclude=True)
    max_turns: int = Field(DEFAULT_MAX_STEPS, ge=1)
    temperature: float | None = Field(0.7, ge=0)
    top_p: float | None = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    concurrency: int = Field(32, ge=1, description="episodes in flight within one gym's evaluation")
    request_timeout: float = Field(600.0, gt=0)
    max_retries: int = Field(5, ge=0, description="retries of a failing model request (429, 5xx, timeouts)")
    retry_base: float = Field(1.0, ge=0)
    workers: int | None = Field(None, ge=1, description="sandbox workers of each local gym server "
                                                         "(None: the CPU count)")

    @property
    def identity(self) -> str:
        """What decides the counts: model and sampling, as canonical JSON (no URL, no key)."""
        return json.dumps(self.model_dump(mode="json", include=_OUTCOME_FIELDS), sort_keys=True)


class _StoredCounts(BaseModel):
    """``counts.json``: the result of a complete evaluation of one gym."""

    model_config = ConfigDict(extra="forbid")

    fingerprint: str
    model: str
    tries: int
    solved: dict[str, int]
    episodes: int
    endings: dict[str, int]


class EvaluatorDifficulty:
    """A :class:`~synthesis.stages.DifficultyFilter` that plays each gym with the evaluator (module docstring).

    Args:
        settings: the reference model and how to play it.
        root: the folder for the per-gym banks, evaluator outputs and stored counts (``WORK/difficulty``).
        parallel: gyms evaluated at once (each starts a local gym server).
    """

    def __init__(self, settings: DifficultyModel, root: str | os.PathLike[str], *, parallel: int = 1) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1 (got {parallel})")
        self.settings = settings
        self.root = Path(root)
        self.parallel = parallel
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def identity(self) -> str:
        """Goes into the pipeline's resume fingerprint (see :class:`~synthesis.stages.DifficultyFilter`)."""
        return self.settings.identity

    def fingerprint(self, gym: GymSource, tries: int) -> str:
        """What stored counts must match: the gym as served (not its verification timestamp), tries, model."""
        blob = json.dumps([gym.record.model_dump(mode="json", exclude={"verification"}), gym.code,
                           [t.model_dump(mode="json") for t in gym.tasks], tries, self.identity], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    async def __call__(self, gym: GymSource, tries: int) -> DifficultyOutcome:
        """Successes per task out of ``tries`` (see the module docstring). Raises :class:`LLMError`
        when the evaluation could not tell (infrastructure trouble)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.parallel)
        return await anyio.to_thread.run_sync(self.evaluate, gym, tries, limiter=self._limiter)

    def evaluate(self, gym: GymSource, tries: int) -> DifficultyOutcome:
        """The blocking body of :meth:`__call__` (run in a worker thread)."""
        gym_id = gym.record.id
        folder = self.root / gym_id
        out = folder / "eval"
        fingerprint = self.fingerprint(gym, tries)
        stored = self._stored(folder / _COUNTS, fingerprint)
        if stored is not None:
            return self._outcome(stored, out, reused=True)
        if folder.exists():  # a stale or unfinished evaluation: start over
            shutil.rmtree(folder)
        try:
            bank = Bank.create(folder / "bank", name=f"difficulty-{gym_id}")
            bank.put_gym(gym.record, gym.code, gym.tasks)
        except (BankError, OSError) as exc:
            raise LLMError(f"difficulty filter: cannot write the gym's bank in {folder}: {exc}") from None
        s = self.settings
        config = EvalConfig(bank=str(folder / "bank"), gyms=[gym_id], policy="openai", model=s.model,
                            base_url=s.base_url, api_key=s.api_key, k=tries, concurrency=s.concurrency,
                            max_turns=s.max_turns, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                            request_timeout=s.request_timeout, max_retries=s.max_retries, retry_base=s.retry_base,
                            workers=s.workers, out=str(out))
        where = f"(outputs: {out})"
        try:
            result = run_evaluation(config, progress=False)
        except EvalError as exc:
            raise LLMError(f"difficulty model {s.model}: the evaluator could not run: {exc}") from None
        if result.error is not None:
            raise LLMError(f"difficulty model {s.model}: {result.error} {where}")
        if result.interrupted:
            raise LLMError(f"difficulty model {s.model}: the evaluation of {gym_id} was interrupted {where}")
        records = [r for r in result.records if r.gym == gym_id]
        lost = [r for r in records if r.reason in TRANSIENT_REASONS]
        if lost:
            endings = ", ".join(f"{n} {reason}" for reason, n in Counter(r.reason for r in lost).most_common())
            first = next((r.error for r in lost if r.error), "")
            raise LLMError(f"difficulty model {s.model}: {len(lost)} of {len(records)} episodes on {gym_id} ended "
                           f"without a verdict ({endings}{'; ' + first if first else ''}) {where}")
        expected = len(gym.tasks) * tries
        if len(records) != expected:
            raise LLMError(f"difficulty model {s.model}: {len(records)} of {expected} episodes on {gym_id} "
                           f"finished {where}")
        solved = {t.id: 0 for t in gym.tasks}
        for record in records:
            if record.task_id in solved and record.reward >= 1:
                solved[record.task_id] += 1
        stored = _StoredCounts(fingerprint=fingerprint, model=s.model, tries=tries, solved=solved,
                               episodes=len(records), endings=dict(Counter(r.reason for r in records)))
        atomic_write(folder / _COUNTS, stored.model_dump_json(indent=1) + "\n")
        return self._outcome(stored, out, reused=False)

    @staticmethod
    def _stored(path: Path, fingerprint: str) -> _StoredCounts | None:
        try:
            stored = _StoredCounts.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError):
            return None
        return stored if stored.fingerprint == fingerprint else None

    @staticmethod
    def _outcome(stored: _StoredCounts, out: Path, *, reused: bool) -> DifficultyOutcome:
        return DifficultyOutcome(solved=stored.solved, details={
            "model": stored.model, "tries": stored.tries, "solved": stored.solved, "episodes": stored.episodes,
            "endings": stored.endings, "eval_dir": str(out.absolute()), "reused": reused})
