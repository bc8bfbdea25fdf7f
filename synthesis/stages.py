"""The stages of the synthesis pipeline, one function each, after the CodeGym paper.

Every stage takes a :class:`Context` (one problem, its state, the shared LLM client and sandbox pools)
and returns a :class:`~synthesis.state.StageResult`: passed, or dropped with a ``code`` (a category
for the report) and a ``reason`` a person can act on. A stage raises only for *transient* trouble
(:class:`~synthesis.errors.TransientError`: LLM endpoint down, replay cache miss, a Ray sandbox node
lost), which the pipeline does not store.

- ``tests`` (step 0) — the problem imports only the standard library and :mod:`synthesis.packages`'
  allowlist; its own tests pass against its reference solution, in the sandbox, and their calls of the
  entry function decide how later stages call it (:mod:`synthesis.calling`).
- ``gym`` (stage 1) — one-shot prompt -> task text + gym code; extraction and format checks; the gym
  loads in the sandbox and has at least :data:`~mcp_gyms.verify.MIN_TOOLS` tools.
- ``inputs`` (stage 2) — ``input_samples`` samples of ``inputs_per_sample`` inputs (a third of each
  difficulty), de-duplicated; the original solution's answers in the sandbox (3 s, 100 MiB, answer
  under 100 characters); the gym survives if at least ``min_inputs`` and ``min_input_fraction`` of the
  unique inputs do, and its ``reference_answer`` agrees with the solution on every kept input. A problem
  whose valid inputs within those limits are fewer than ``min_inputs`` (the model wrote fewer than asked,
  as the prompt tells it to, or every other input's answer is too long) is dropped as
  ``small_input_space``, not as the model's ``too_few_inputs``.
- ``oracle`` (stage 3) — tool-only ``solve`` candidates (the gym's own, then ``k`` sampled ones), each
  run on every kept input through the tool API in the sandbox; the first that earns reward 1 on all
  becomes the oracle; tasks needing fewer than 10 or more than 256 calls are dropped.
- ``verify`` — :func:`mcp_gyms.verify.verify_gym`, the stable checks ``codegym verify`` runs, on the
  assembled gym; its report goes into the bank record.
- ``difficulty`` (stage 4, optional) — keep tasks a reference model solves at most ``max_solved`` of
  ``tries`` times; the gym is dropped (``too_easy``) when it solves them all more often. Needs a
  :class:`DifficultyFilter`: :class:`synthesis.difficulty.EvaluatorDifficulty` plays the gym with the
  evaluator (``codegym synth --difficulty-model``); off by default.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from pydantic import BaseModel, ConfigDict, Field

from mcp_gyms.bank import GymRecord, Provenance, TaskRecord, ToolRecord
from mcp_gyms.constants import DIFFICULTIES
from mcp_gyms.sandbox import GymCode, SandboxError, SandboxLimits, SandboxPool
from mcp_gyms.verify import (
    MAX_ANSWER_CHARS,
    MAX_STEPS,
    MIN_STEPS,
    MIN_TOOLS,
    REFERENCE_LIMITS,
    GymSource,
    verify_gym,
)

from .calling import decide_call
from .execution import AnswerError, run_problem_tests, solution_answer
from .extract import (
    ExtractionError,
    extract_conversion,
    extract_gym,
    extract_inputs,
    extract_solve,
    replace_solve,
)
from .llm import LLMClient, Sampling
from .packages import SANDBOX_PRELOAD, imported_packages, package_problem
from .prompting import gym_messages, inputs_messages, solve_messages
from .sources import Problem
from .state import CandidateResult, InputResult, ProblemState, StageResult

if TYPE_CHECKING:
    from .ray_pools import RayCluster, RemotePool

__all__ = ["Context", "DifficultyFilter", "DifficultyOutcome", "Pools", "STAGE_FUNCTIONS", "SynthConfig"]


class SynthConfig(BaseModel):
    """The settings that decide what the pipeline produces (all part of the resume fingerprint)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(10, ge=0, description="tool-only solution candidates sampled from the LLM")
    use_gym_solve: bool = Field(True, description="try the gym's own solve() before sampling candidates")
    input_samples: int = Field(2, ge=1)
    inputs_per_sample: int = Field(15, ge=3)
    min_inputs: int = Field(10, ge=1)
    min_input_fraction: float = Field(0.8, ge=0, le=1)
    gym_temperature: float = Field(0.7, ge=0, le=2)
    inputs_temperature: float = Field(1.0, ge=0, le=2)
    solve_temperature: float = Field(1.0, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    oracle_timeout_s: float = Field(30.0, gt=0, description="wall time of one oracle run on one task")
    test_time_s: float = Field(10.0, gt=0, description="step 0: wall time for a problem's whole test file")
    test_memory_mb: int = Field(256, ge=16)
    gym_time_s: float = Field(3.0, gt=0, description="per tool call (and 2x for loading a gym)")
    gym_memory_mb: int = Field(256, ge=16)
    reference_time_s: float = Field(REFERENCE_LIMITS.time_s, gt=0)
    reference_memory_mb: int = Field(REFERENCE_LIMITS.memory_mb, ge=16)
    difficulty_tries: int = Field(4, ge=1)
    difficulty_max_solved: int = Field(1, ge=0)


@dataclass
class Pools:
    """The sandbox pools the stages share: problem tests, reference answers (3 s, 100 MiB), gyms."""

    tests: SandboxPool | RemotePool
    reference: SandboxPool | RemotePool
    gyms: SandboxPool | RemotePool
    cluster: RayCluster | None = None  # the Ray actors behind remote pools

    @classmethod
    def create(cls, config: SynthConfig, workers: int | None, ray: str | None = None) -> Pools:
        """Local pools of ``workers`` processes each (default: the CPU count), or with ``ray`` (an address,
        ``auto`` or ``local``) pools spread over that Ray cluster, ``workers`` per pool per actor
        (:mod:`synthesis.ray_pools`; raises its ``ClusterError`` when the cluster cannot be used)."""
        limits = {"tests": SandboxLimits(time_s=config.test_time_s, memory_mb=config.test_memory_mb),
                  "reference": SandboxLimits(time_s=config.reference_time_s, memory_mb=config.reference_memory_mb),
                  "gyms": SandboxLimits(time_s=config.gym_time_s, memory_mb=config.gym_memory_mb)}
        if ray is not None:
            from .ray_pools import RayCluster

            cluster = RayCluster.start(ray, limits, workers)
            return cls(**cluster.pools, cluster=cluster)
        return cls(**{name: SandboxPool(workers, limit, preload=SANDBOX_PRELOAD if name != "gyms" else ())
                      for name, limit in limits.items()})

    @property
    def where(self) -> str:
        """Where sandbox work runs, for the report: ``local (N workers per pool)`` or ``ray (...)``."""
        if self.cluster is not None:
            return self.cluster.where
        return f"local ({self.gyms.concurrency} workers per pool)"

    async def aclose(self) -> None:
        for pool in (self.tests, self.reference, self.gyms):
            await pool.aclose()
        if self.cluster is not None:
            await self.cluster.aclose()


class DifficultyOutcome(BaseModel):
    """What a :class:`DifficultyFilter` found: successes per task id, and details for the stage record
    (where the evaluator's outputs are, how the episodes ended, ...; JSON-serialisable)."""

    model_config = ConfigDict(extra="forbid")

    solved: dict[str, int]
    details: dict[str, Any] = Field(default_factory=dict)


class DifficultyFilter(Protocol):
    """Stage 4's evaluator: how often a reference model solves each task.

    Called with the verified gym and ``tries``; returns task id -> number of successful episodes
    (out of ``tries``; a missing task counts 0), or a :class:`DifficultyOutcome` that adds details.
    An implementation plays the gym over MCP with the evaluator's model policy
    (:class:`synthesis.difficulty.EvaluatorDifficulty`). It raises :class:`~synthesis.llm.LLMError`
    when it cannot tell (endpoint down, episodes lost to infrastructure errors): the problem is then
    left incomplete and a rerun tries again.

    An optional ``identity`` attribute (a string) names what decides the counts (model, sampling);
    it goes into the resume fingerprint, so another reference model does not reuse stored verdicts."""

    async def __call__(self, gym: GymSource, tries: int) -> dict[str, int] | DifficultyOutcome: ...


@dataclass
class Context:
    """One problem's trip through the stages."""

    problem: Problem
    state: ProblemState
    config: SynthConfig
    llm: LLMClient | None
    pools: Pools
    difficulty_filter: DifficultyFilter | None = None

    def need_llm(self) -> LLMClient:
        if self.llm is None:
            raise RuntimeError("this stage needs an LLM client")
        return self.llm


def _passed(stage: str, **details: Any) -> StageResult:
    return StageResult(stage=stage, passed=True, details=details)


def _dropped(stage: str, code: str, reason: str, **details: Any) -> StageResult:
    return StageResult(stage=stage, passed=False, code=code, reason=reason, details=details)


async def _gather(items: list[Any], fn: Callable[[Any], Awaitable[Any]], limit: int) -> list[Any]:
    """``fn`` over ``items`` concurrently (at most ``limit`` at once); results in item order."""
    results: list[Any] = [None] * len(items)
    limiter = anyio.Semaphore(max(1, limit))

    async def one(index: int, item: Any) -> None:
        async with limiter:
            results[index] = await fn(item)

    async with anyio.create_task_group() as tg:
        for index, item in enumerate(items):
            tg.start_soon(one, index, item)
    return results


async def _first_failure(items: list[Any], fn: Callable[[Any], Awaitable[str | None]], width: int) -> str | None:
    """Check ``items`` in order, ``width`` at a time; ``fn`` returns None or why the item fails.

    Stops after the first batch with a failure and returns the earliest failure in item order, so a
    broken gym costs one batch of timeouts (not one per item) and the reason does not depend on timing."""
    width = max(1, width)
    for start in range(0, len(items), width):
        for failure in await _gather(items[start:start + width], fn, width):
            if failure is not None:
                return failure
    return None


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- step 0 -------------------------------------------------------------------------------------
async def stage_tests(ctx: Context) -> StageResult:
    """Step 0: the problem's tests against its reference solution, in the sandbox; their calls of the entry
    function (the trial) decide how later stages call it (:func:`synthesis.calling.decide_call`)."""
    problem = ctx.problem
    if (why := package_problem(problem.solution, problem.tests)) is not None:
        return _dropped("tests", "package", why)
    report = await run_problem_tests(ctx.pools.tests, problem)
    details = report.model_dump(exclude={"failures", "trial"}) | {
        "failures": [f.model_dump() for f in report.failures[:3]], "trial_calls": len(report.trial)}
    if not report.ok:
        used = imported_packages(problem.solution) | imported_packages(problem.tests)
        if used and "importing ctypes is not allowed" in report.reason():  # see synthesis.packages
            return _dropped("tests", "package", f"the problem imports {', '.join(sorted(used))}, which the sandbox "
                            f"workers cannot load yet (it needs ctypes): {report.reason()}", **details)
        return _dropped("tests", "tests_fail", f"the problem's own tests fail: {report.reason()}", **details)
    ctx.state.call = call = decide_call(report.trial, problem.tests, problem.parameters())
    details["call"] = call.summary()
    return _passed("tests", **details)


# --- stage 1 ------------------------------------------------------------------------------------
async def stage_gym(ctx: Context) -> StageResult:
    """Stage 1: ask for a gym, extract it, load it in the sandbox, check its tools."""
    problem = ctx.problem
    if not problem.entry_point:
        return _dropped("gym", "no_entry", "the solution has no top-level function that the tests call "
                        "(class-based problems are not supported)")
    if not problem.parameters():
        return _dropped("gym", "no_entry", f"the entry function {problem.entry_point} takes no arguments, "
                        "so there is no input to hide")
    sampling = Sampling(temperature=ctx.config.gym_temperature, n=1, max_tokens=ctx.config.max_tokens)
    messages = gym_messages(problem, ctx.state.call, ctx.config.inputs_per_sample, ctx.config.min_inputs)
    [answer] = await ctx.need_llm().complete(messages, sampling)
    try:
        draft = extract_gym(answer)
        if ctx.state.call.unsupported:  # objects with no standard JSON form: the model's conversion
            draft.conversion = extract_conversion(answer, problem.entry_point)
    except ExtractionError as exc:
        return _dropped("gym", "format", str(exc))
    try:
        described = await ctx.pools.gyms.describe(GymCode(draft.code, draft.class_name))
    except SandboxError as exc:
        return _dropped("gym", "load", f"the gym does not load in the sandbox: {exc}", class_name=draft.class_name)
    tools = described["tools"]
    names = [t["name"] for t in tools]
    if len(tools) < MIN_TOOLS:
        return _dropped("gym", "tools", f"only {len(tools)} tools ({', '.join(names)}); need at least "
                        f"{MIN_TOOLS}, Observe and Done included", tools=names)
    undocumented = [t["name"] for t in tools if not t["description"].strip()]
    if undocumented:
        return _dropped("gym", "tools", f"tools without a description: {', '.join(undocumented)}", tools=names)
    ctx.state.draft = draft
    ctx.state.tools = tools
    ctx.state.max_steps = int(described["max_steps"])
    return _passed("gym", class_name=draft.class_name, tools=names)


# --- stage 2 ------------------------------------------------------------------------------------
def _canonical(config: Any) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


async def stage_inputs(ctx: Context) -> StageResult:
    """Stage 2: generate inputs, de-duplicate, answer them with the original solution, check the gym."""
    cfg, state = ctx.config, ctx.state
    assert state.draft is not None
    sampling = Sampling(temperature=cfg.inputs_temperature, n=cfg.input_samples, max_tokens=cfg.max_tokens)
    messages = inputs_messages(ctx.problem, state.draft.code, cfg.inputs_per_sample, state.call,
                               state.draft.conversion, cfg.min_inputs)
    texts = await ctx.need_llm().complete(messages, sampling)
    inputs: list[InputResult] = []
    sample_errors: list[str] = []
    seen: dict[str, int] = {}
    repeated_in_sample = 0  # a sample that repeats an input ignored the prompt; across samples is expected
    for sample, text in enumerate(texts):
        try:
            drafts, problems = extract_inputs(text)
        except ExtractionError as exc:
            sample_errors.append(f"sample {sample}: {exc}")
            continue
        for problem in problems:
            inputs.append(InputResult(sample=sample, difficulty="?", config=None, status="dropped",
                                      reason=f"not an input: {problem}"))
        for draft in drafts:
            key = _canonical(draft.input)
            if key in seen:
                inputs.append(InputResult(sample=sample, difficulty=draft.difficulty, config=draft.input,
                                          status="duplicate", reason=f"same as input #{seen[key]}"))
                repeated_in_sample += inputs[seen[key]].sample == sample
                continue
            seen[key] = len(inputs)
            inputs.append(InputResult(sample=sample, difficulty=draft.difficulty, config=draft.input, status="kept"))
    unique = [i for i in inputs if i.status == "kept"]

    async def answer(item: InputResult) -> None:
        try:
            item.answer = await solution_answer(ctx.pools.reference, ctx.problem, item.config, state.call,
                                                  state.draft.conversion)
        except AnswerError as exc:
            item.status, item.reason = "dropped", str(exc)

    await _gather(unique, answer, ctx.pools.reference.concurrency * 2)
    kept = [i for i in unique if i.status == "kept"]
    state.inputs = inputs
    counts = {"generated": len(inputs), "unique": len(unique), "kept": len(kept),
              "duplicates": sum(i.status == "duplicate" for i in inputs), "sample_errors": sample_errors}
    needed = max(cfg.min_inputs, cfg.min_input_fraction * len(unique))
    if len(kept) < needed or not kept:
        reasons = Counter(i.reason.split(":")[0] for i in unique if i.status == "dropped")
        why = "; ".join(f"{n}x {r}" for r, n in reasons.most_common(3))
        too_big = sum(i.reason.startswith("the answer prints") for i in unique if i.status == "dropped")
        followed_prompt = not sample_errors and not repeated_in_sample
        wrote_all_there_are = len(unique) < cfg.min_inputs  # the prompt: write every valid input, no more
        only_too_long = too_big > 0 and too_big + len(kept) == len(unique)
        if len(kept) < cfg.min_inputs and followed_prompt and (wrote_all_there_are or only_too_long):
            # not the model's fault: the problem has too few valid inputs within the limits (answers that
            # grow fast with the input, a tiny domain); the paper's checks need min_inputs of them
            return _dropped("inputs", "small_input_space",
                            f"the valid input space is too small: only {len(kept)} distinct inputs have an answer "
                            f"within the limits (shorter than {MAX_ANSWER_CHARS} characters, {cfg.reference_time_s:g} s)"
                            + (f", {too_big} more have longer answers" if too_big else "")
                            + f"; at least {cfg.min_inputs} are needed", **counts)
        return _dropped("inputs", "too_few_inputs",
                        f"{len(kept)} of {len(unique)} unique inputs survive (need at least {cfg.min_inputs} and "
                        f"{cfg.min_input_fraction:.0%})" + (f"; dropped: {why}" if why else "")
                        + (f"; {'; '.join(sample_errors)}" if sample_errors else ""), **counts)

    order = {d: n for n, d in enumerate(DIFFICULTIES)}
    numbering: Counter[str] = Counter()
    tasks = []
    for item in sorted(kept, key=lambda i: order[i.difficulty]):
        item.task_id = f"{item.difficulty}-{numbering[item.difficulty]}"
        numbering[item.difficulty] += 1
        tasks.append(TaskRecord(id=item.task_id, difficulty=item.difficulty, config=item.config, answer=item.answer))

    gym = GymCode(state.draft.code, state.draft.class_name)

    async def check(task: TaskRecord) -> str | None:
        try:
            reference = await ctx.pools.reference.reference_answer(gym, task.config)
        except SandboxError as exc:
            return f"the gym's reference_answer fails on {task.id}: {exc}"
        if reference != task.answer:
            return (f"the gym's reference_answer disagrees with the solution on {task.id} "
                    f"{_short(task.config, 60)}: gym {_short(reference, 40)}, solution {_short(task.answer, 40)}")
        return None

    problem = await _first_failure(tasks, check, ctx.pools.reference.concurrency)
    if problem is not None:
        code = "reference_error" if "fails on" in problem else "reference_mismatch"
        return _dropped("inputs", code, problem, **counts)
    state.tasks = tasks
    return _passed("inputs", **counts, difficulty=dict(numbering))


# --- stage 3 ------------------------------------------------------------------------------------
async def _try_candidate(ctx: Context, index: int, origin: str, code: str) -> CandidateResult:
    """Run one candidate oracle on every kept task; stop at the first task it fails."""
    state = ctx.state
    assert state.draft is not None
    gym = GymCode(code, state.draft.class_name)
    try:
        await ctx.pools.gyms.describe(gym)
    except SandboxError as exc:
        return CandidateResult(index=index, origin=origin, status="failed", reason=f"does not load: {exc}")
    steps: dict[str, int] = {}

    async def run(task: TaskRecord) -> str | None:
        try:
            result = await ctx.pools.gyms.run_oracle(gym, task.config, task.seed, state.max_steps,
                                                     timeout=ctx.config.oracle_timeout_s)
        except SandboxError as exc:
            return f"task {task.id}: {exc}"
        if result.reward != 1.0:
            last = result.calls[-1] if result.calls else None
            return (f"task {task.id}: reward {result.reward:g} after {result.steps} calls"
                    + (f" ({result.error})" if result.error else "")
                    + (f"; last call {last[0]}({_short(last[1], 60)})" if last else ""))
        steps[task.id] = result.steps
        return None

    failure = await _first_failure(state.tasks, run, ctx.pools.gyms.concurrency)
    if failure is not None:
        return CandidateResult(index=index, origin=origin, status="failed", reason=failure)
    return CandidateResult(index=index, origin=origin, status="oracle", steps=steps)


async def stage_oracle(ctx: Context) -> StageResult:
    """Stage 3: find a tool-only solution that solves every kept task; filter tasks by step count."""
    cfg, state = ctx.config, ctx.state
    draft = state.draft
    assert draft is not None
    candidates: list[CandidateResult] = []
    winner: tuple[CandidateResult, str] | None = None
    if cfg.use_gym_solve:
        result = await _try_candidate(ctx, 0, "gym", draft.code)
        candidates.append(result)
        if result.status == "oracle":
            winner = (result, draft.code)
    if winner is None and cfg.k > 0:
        sampling = Sampling(temperature=cfg.solve_temperature, n=cfg.k, max_tokens=cfg.max_tokens)
        texts = await ctx.need_llm().complete(
            solve_messages(draft.task_text, state.tools, draft.code, draft.class_name), sampling)
        for number, text in enumerate(texts, start=1):
            index = len(candidates)
            try:
                code = replace_solve(draft.code, draft.class_name, extract_solve(text))
            except ExtractionError as exc:
                candidates.append(CandidateResult(index=index, origin=f"llm-{number}", status="failed", reason=str(exc)))
                continue
            result = await _try_candidate(ctx, index, f"llm-{number}", code)
            candidates.append(result)
            if result.status == "oracle":
                winner = (result, code)
                break
    state.candidates = candidates
    tried = {"candidates": [c.model_dump(exclude={"steps"}) for c in candidates]}
    if winner is None:
        shown = "; ".join(f"{c.origin}: {c.reason}" for c in candidates[:4])
        more = f"; and {len(candidates) - 4} more" if len(candidates) > 4 else ""
        return _dropped("oracle", "no_solution", f"none of {len(candidates)} tool-only candidates solves every "
                        f"task ({shown or 'no candidates: use --k or the gym solve'}{more})", **tried)
    oracle, code = winner
    kept, out_of_range = [], {}
    for task in state.tasks:
        n = oracle.steps[task.id]
        if MIN_STEPS <= n <= MAX_STEPS:
            kept.append(task.model_copy(update={"oracle_steps": n}))
        else:
            out_of_range[task.id] = f"oracle needs {n} calls (kept range {MIN_STEPS}-{MAX_STEPS})"
    if not kept:
        return _dropped("oracle", "steps", f"the oracle ({oracle.origin}) needs fewer than {MIN_STEPS} or more than "
                        f"{MAX_STEPS} calls on every task", **tried, dropped_tasks=out_of_range)
    state.code = code
    state.tasks = kept
    return _passed("oracle", oracle=oracle.origin, **tried, dropped_tasks=out_of_range)


# --- final verification -------------------------------------------------------------------------
def _record(ctx: Context) -> GymRecord:
    state, draft = ctx.state, ctx.state.draft
    assert draft is not None
    model = ctx.llm.model if ctx.llm is not None else "unknown"
    oracle = next((c.origin for c in state.candidates if c.status == "oracle"), "?")
    return GymRecord(
        id=state.gym_id, title=draft.title, class_name=draft.class_name, task_text=draft.task_text,
        max_steps=state.max_steps, tools=[ToolRecord(**t) for t in state.tools],
        provenance=Provenance(source=ctx.problem.source, problem_id=ctx.problem.id,
                              notes=f"synthesized by codegym synth (model {model}, oracle candidate {oracle})"),
    )


async def stage_verify(ctx: Context) -> StageResult:
    """The stable checks of ``codegym verify`` on the assembled gym; their report goes in the record."""
    state = ctx.state
    assert state.code is not None
    source = GymSource(_record(ctx), state.code, state.tasks, f"synthesis:{ctx.problem.id}")
    verdict = await verify_gym(source, ctx.pools.gyms, ctx.pools.reference)
    if not verdict.verified:
        return _dropped("verify", "verify", "; ".join(verdict.reasons) or "not verified", checks=verdict.checks)
    steps = {t.task_id: t.oracle_steps for t in verdict.tasks}
    kept_ids = {t.task_id for t in verdict.tasks if t.kept}
    state.tasks = [t.model_copy(update={"oracle_steps": steps[t.id]}) for t in state.tasks if t.id in kept_ids]
    state.record = source.record.model_copy(update={
        "tools": [ToolRecord(**t) for t in verdict.tools], "verification": verdict.report()})
    return _passed("verify", checks=verdict.checks, tasks=len(state.tasks))


# --- stage 4 ------------------------------------------------------------------------------------
async def stage_difficulty(ctx: Context) -> StageResult:
    """Stage 4 (optional): keep the tasks a reference model solves at most ``difficulty_max_solved`` times."""
    state, cfg = ctx.state, ctx.config
    assert ctx.difficulty_filter is not None and state.record is not None and state.code is not None
    source = GymSource(state.record, state.code, state.tasks, f"synthesis:{ctx.problem.id}")
    outcome = await ctx.difficulty_filter(source, cfg.difficulty_tries)
    if not isinstance(outcome, DifficultyOutcome):
        outcome = DifficultyOutcome(solved=outcome)
    solved = outcome.solved
    kept = [t for t in state.tasks if solved.get(t.id, 0) <= cfg.difficulty_max_solved]
    dropped = {t.id: f"solved {solved.get(t.id, 0)}/{cfg.difficulty_tries}" for t in state.tasks if t not in kept}
    details = {**outcome.details, "dropped_tasks": dropped}
    if not kept:
        return _dropped("difficulty", "too_easy", f"the reference model solves every task more than "
                        f"{cfg.difficulty_max_solved} of {cfg.difficulty_tries} times", **details)
    state.tasks = kept
    if state.record.verification is not None:
        report = state.record.verification
        state.record = state.record.model_copy(update={"verification": report.model_copy(update={
            "tasks_kept": len(kept), "dropped_tasks": {**report.dropped_tasks, **dropped}})})
    return _passed("difficulty", **details)


STAGE_FUNCTIONS: dict[str, Callable[[Context], Awaitable[StageResult]]] = {
    "tests": stage_tests,
    "gym": stage_gym,
    "inputs": stage_inputs,
    "oracle": stage_oracle,
    "verify": stage_verify,
    "difficulty": stage_difficulty,
}
