"""The stable, deterministic checks of the CodeGym paper (no LLM), run in the sandbox.

For each gym:

1. ``load`` — the code loads in a sandbox worker and exposes its tools with JSON Schemas (the gym
   contract's own checks: typed parameters, a docstring on every tool, an oracle, ...);
2. ``tools`` — at least :data:`MIN_TOOLS` distinct tools, ``Observe`` and ``Done`` included, each
   with a non-empty agent-facing description;
3. per task, ``reference`` — the reference answer comes back within 3 s and 100 MiB and prints
   shorter than 100 characters (and equals the answer stored in the bank, when there is one);
4. per task, ``oracle`` — the oracle, through the tool API only, earns reward 1;
5. per task, ``steps`` — tasks whose oracle needs fewer than 10 or more than 256 calls are dropped.

A gym is verified when 1–2 pass, every task passes 3–4, and at least one task survives 5 (a failed
reference or oracle on any task means the gym is wrong, not the task, so the gym is rejected).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

from mcp_gyms.bank import Bank, BankError, GymRecord, TaskRecord, ToolRecord, VerificationReport, read_tasks
from mcp_gyms.gym import normalise_answer
from mcp_gyms.sandbox import GymCode, SandboxError, SandboxLimits, SandboxPool
from mcp_gyms.v1 import worker_preload

MIN_TOOLS = 4
MIN_STEPS, MAX_STEPS = 10, 256
MAX_ANSWER_CHARS = 100
REFERENCE_LIMITS = SandboxLimits(time_s=3.0, memory_mb=100)


@dataclass
class GymSource:
    """A gym to verify: its record, code and tasks (from a bank or a gym folder)."""

    record: GymRecord
    code: str
    tasks: list[TaskRecord]
    origin: str


@dataclass
class TaskVerdict:
    task_id: str
    difficulty: str
    kept: bool
    oracle_steps: int | None = None
    reason: str = ""


@dataclass
class GymVerdict:
    gym_id: str
    verified: bool
    checks: dict[str, str] = field(default_factory=dict)
    tasks: list[TaskVerdict] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [f"{name}: {why}" for name, why in self.checks.items() if why != "ok"]

    def report(self) -> VerificationReport:
        return VerificationReport(
            verified=self.verified,
            verified_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            checks=self.checks,
            tasks_total=len(self.tasks),
            tasks_kept=sum(t.kept for t in self.tasks),
            dropped_tasks={t.task_id: t.reason for t in self.tasks if not t.kept},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "gym": self.gym_id,
            "verified": self.verified,
            "checks": self.checks,
            "tasks": [t.__dict__ for t in self.tasks],
        }


def collect_sources(paths: list[str | Path]) -> tuple[list[GymSource], Bank | None]:
    """Gyms named by ``paths``: one bank folder, or gym folders (each with gym.json, code, tasks.jsonl).

    Returns the sources and the bank when a single bank was given (so results can be written back).
    """
    if not paths:
        paths = [str(Bank.open().root)]
    if len(paths) == 1 and (Path(paths[0]) / "bank.json").is_file():
        bank = Bank.open(paths[0])
        return [GymSource(bank.gym(g), bank.code(g), bank.tasks(g), f"{bank.root}:{g}") for g in bank.gym_ids], bank
    sources = []
    for raw in paths:
        folder = Path(raw)
        if folder.is_file():
            folder = folder.parent
        if not (folder / "gym.json").is_file():
            raise BankError(f"{raw}: neither a bank (bank.json) nor a gym folder (gym.json)")
        record = GymRecord.model_validate_json((folder / "gym.json").read_text(encoding="utf-8"))
        code = (folder / record.code_file).read_text(encoding="utf-8")
        sources.append(GymSource(record, code, read_tasks(folder / "tasks.jsonl"), str(folder)))
    return sources, None


async def verify_gym(source: GymSource, pool: SandboxPool, reference_pool: SandboxPool) -> GymVerdict:
    """Run every check on one gym. Never raises for a broken gym: the verdict says what failed."""
    verdict = GymVerdict(source.record.id, verified=False)
    gym = GymCode(source.code, source.record.class_name)
    try:
        described = await pool.describe(gym)
    except SandboxError as exc:
        verdict.checks["load"] = str(exc)
        return verdict
    verdict.checks["load"] = "ok"
    verdict.tools = described["tools"]
    undocumented = [t["name"] for t in verdict.tools if not t["description"].strip()]
    if len(verdict.tools) < MIN_TOOLS:
        verdict.checks["tools"] = f"only {len(verdict.tools)} tools (need at least {MIN_TOOLS}, Observe and Done included)"
    elif undocumented:
        verdict.checks["tools"] = f"tools without a description: {', '.join(undocumented)}"
    else:
        verdict.checks["tools"] = "ok"
    if not source.tasks:
        verdict.checks["tasks"] = "the gym has no tasks"
        return verdict

    failures: dict[str, list[str]] = {"reference": [], "oracle": []}

    async def check_task(task: TaskRecord) -> None:
        tv = TaskVerdict(task.id, task.difficulty, kept=False)
        verdict.tasks.append(tv)
        try:
            answer = await reference_pool.reference_answer(gym, task.config)
        except SandboxError as exc:
            tv.reason = f"reference answer failed: {exc}"
            failures["reference"].append(task.id)
            return
        if len(json.dumps(answer)) >= MAX_ANSWER_CHARS:
            tv.reason = f"reference answer prints {len(json.dumps(answer))} characters (limit {MAX_ANSWER_CHARS - 1})"
            failures["reference"].append(task.id)
            return
        if task.answer is not None and normalise_answer(task.answer) != answer:
            tv.reason = f"reference answer {answer!r} differs from the stored answer {task.answer!r}"
            failures["reference"].append(task.id)
            return
        try:
            oracle = await pool.run_oracle(gym, task.config, task.seed, source.record.max_steps)
        except SandboxError as exc:
            tv.reason = f"oracle failed: {exc}"
            failures["oracle"].append(task.id)
            return
        tv.oracle_steps = oracle.steps
        if oracle.reward != 1.0:
            tv.reason = f"oracle earned reward {oracle.reward:g}" + (f" ({oracle.error})" if oracle.error else "")
            failures["oracle"].append(task.id)
        elif not MIN_STEPS <= oracle.steps <= MAX_STEPS:
            tv.reason = f"oracle needs {oracle.steps} calls (kept range {MIN_STEPS}-{MAX_STEPS})"
        else:
            tv.kept = True

    limiter = anyio.Semaphore(pool.concurrency * 2)

    async def bounded(task: TaskRecord) -> None:
        async with limiter:
            await check_task(task)

    async with anyio.create_task_group() as tg:
        for task in source.tasks:
            tg.start_soon(bounded, task)
    order = {t.id: i for i, t in enumerate(source.tasks)}
    verdict.tasks.sort(key=lambda t: order[t.task_id])
    for name, ids in failures.items():
        verdict.checks[name] = "ok" if not ids else f"failed on {len(ids)} task(s): {', '.join(sorted(ids)[:5])}"
    kept = sum(t.kept for t in verdict.tasks)
    verdict.checks["steps"] = "ok" if kept else f"no task needs {MIN_STEPS}-{MAX_STEPS} oracle calls"
    verdict.verified = all(v == "ok" for v in verdict.checks.values())
    return verdict


async def verify_sources(sources: list[GymSource], workers: int | None = None,
                         progress: Any = None) -> list[GymVerdict]:
    """Verify gyms concurrently on shared pools; verdicts come back in the order of ``sources``.

    ``progress(verdict)`` is called as each gym finishes."""
    verdicts: list[GymVerdict | None] = [None] * len(sources)
    preload = worker_preload(source.record.kind for source in sources)
    async with SandboxPool(workers, preload=preload) as pool, \
            SandboxPool(workers, REFERENCE_LIMITS, preload=preload) as reference_pool:
        limiter = anyio.Semaphore(2 * pool.concurrency)

        async def one(i: int, source: GymSource) -> None:
            async with limiter:
                verdicts[i] = await verify_gym(source, pool, reference_pool)
            if progress is not None:
                progress(verdicts[i])

        async with anyio.create_task_group() as tg:
            for i, source in enumerate(sources):
                tg.start_soon(one, i, source)
    return [v for v in verdicts if v is not None]


def write_back(bank: Bank, sources: list[GymSource], verdicts: list[GymVerdict]) -> None:
    """Store tools, oracle step counts and the report in the bank; keep only the tasks that passed."""
    with bank.batch():
        _write_back(bank, sources, verdicts)


def _write_back(bank: Bank, sources: list[GymSource], verdicts: list[GymVerdict]) -> None:
    for source, verdict in zip(sources, verdicts):
        steps = {t.task_id: t.oracle_steps for t in verdict.tasks}
        kept_ids = {t.task_id for t in verdict.tasks if t.kept}
        tasks = [t.model_copy(update={"oracle_steps": steps.get(t.id)}) for t in source.tasks
                 if t.id in kept_ids or not verdict.verified]
        record = source.record.model_copy(update={
            "tools": [ToolRecord(**t) for t in verdict.tools],
            "verification": verdict.report(),
        })
        bank.put_gym(record, source.code, tasks)
