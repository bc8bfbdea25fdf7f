"""``codegym synth``: coding problems -> verified gyms in a bank, resumable, with a report.

Usage::

    codegym synth SOURCE --out BANK [--limit N] [--llm-base-url URL --model M | --replay CACHE_DIR]

``SOURCE`` is a source spec (see :func:`synthesis.sources.load_problems`): ``bundled``, ``humaneval``,
``kodcode:PATH``, ``kodcode-hf``, ``jsonl:PATH`` or a path. Each problem goes through the stages of
:mod:`synthesis.stages` (step 0, gym, inputs, oracle, verify; difficulty when a filter is given).

Stage 4 (``--difficulty-model MODEL``) keeps the tasks MODEL solves in at most ``--difficulty-max-solved``
(1) of ``--difficulty-tries`` (4) episodes, played by the evaluator with its openai policy against a
local gym server (:mod:`synthesis.difficulty`). The endpoint is ``--difficulty-base-url`` (default: the
synthesis endpoint; required with ``--replay``), the key ``$CODEGYM_DIFFICULTY_API_KEY`` (else the
synthesis LLM's variables); it is never written anywhere. The evaluator's outputs stay in
``WORK/difficulty/<gym_id>/eval``. Endpoint trouble leaves the problem incomplete, like any LLM error.

How a run is organised:

- **Work folder** (``--work``, default ``BANK/synthesis``): ``state/<gym_id>.json`` per problem
  (rewritten atomically after each stage), ``llm-cache/`` (unless ``--cache``/``--replay`` point
  elsewhere), ``difficulty/`` (stage 4's evaluations) and the report (``report.md``, ``report.json``,
  ``report.png``).
- **Resumable.** Kill the run at any moment and start the same command again: finished stages are
  read back, not redone; LLM answers come from the cache, so nothing is paid twice. The bank is
  assembled at the end from the stored states, in source order, so it equals an uninterrupted run's
  (every file is written atomically; a gym is replaced, never duplicated).
- **Concurrency.** ``--jobs`` problems are in flight at once; LLM requests are bounded by
  ``--concurrency``; sandbox work by the pools' workers (``--workers``, default: the CPU count).
- **Exit status.** 0 when every problem reached a verdict (verified or dropped, with a reason); 1
  when some hit a transient error (endpoint down, replay cache miss) and a rerun would continue them;
  2 for bad input.

**Ray** (``--ray ADDRESS``, ``auto`` or ``local``): the sandbox stages fan out over a Ray cluster
(:mod:`synthesis.ray_pools`) — actors on every node, each with ``--workers`` workers per pool (default:
its CPUs, at most 16); ``--jobs`` then defaults to twice the cluster's workers. The LLM calls, state
files, bank and stage 4's evaluations stay on this machine. A lost node or actor leaves its problems incomplete (exit status
1) and the run goes on with the rest; the same command run again continues them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import anyio
from pydantic import ValidationError

from mcp_gyms.bank import Bank, BankError, slug

from .errors import transient_cause
from .llm import LLMClient, LLMConfig, LLMError, ResponseCache
from .progress import StageProgress
from .prompting import prompts_digest
from .ray_pools import ClusterError
from .report import SynthReport, build_report, write_report
from .sources import Problem, SourceError, load_problems
from .stages import STAGE_FUNCTIONS, Context, DifficultyFilter, Pools, SynthConfig
from .state import STAGES, ProblemState, StateStore

__all__ = ["SynthError", "add_arguments", "run", "synthesize"]


class SynthError(ValueError):
    """A run that cannot start (bad source, bad options); the message says why."""


def gym_ids(problems: list[Problem]) -> list[str]:
    """The bank id of each problem's gym (``slug`` of the problem id); collisions are an error."""
    ids = [slug(p.id) for p in problems]
    seen: dict[str, str] = {}
    for problem, gym_id in zip(problems, ids):
        if gym_id in seen:
            raise SynthError(f"problems {seen[gym_id]!r} and {problem.id!r} map to the same gym id {gym_id!r}")
        seen[gym_id] = problem.id
    return ids


def fingerprint(problem: Problem, model: str | None, config: SynthConfig, difficulty: bool | str) -> str:
    """What a stored state must match to be reused: problem, model, settings, prompts, difficulty filter
    (False without one; else its ``identity`` when it has one, so another reference model starts over)."""
    blob = json.dumps([problem.fingerprint, problem.id, problem.source, model, config.model_dump(mode="json"),
                       prompts_digest(), difficulty])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


async def synthesize(
    problems: list[Problem],
    *,
    out: Path,
    work: Path | None = None,
    llm: LLMClient | None,
    config: SynthConfig | None = None,
    workers: int | None = None,
    jobs: int | None = None,
    until: str | None = None,
    progress: bool = False,
    difficulty_filter: DifficultyFilter | None = None,
    source: str = "",
    ray: str | None = None,
) -> SynthReport:
    """Run the pipeline on ``problems``; write verified gyms to the bank at ``out`` and the report to ``work``.

    ``until`` stops after a stage (``tests`` needs no LLM). Problems whose stored state (in
    ``work/state``) matches the current fingerprint resume where they stopped. Returns the report
    (also written to ``work``). ``ray`` (an address, ``auto`` or ``local``) runs the sandbox work on
    that Ray cluster, ``workers`` per pool per actor; ``jobs`` (problems in flight) defaults to twice
    the sandbox workers per pool, at least 4. Raises :class:`SynthError` for unusable arguments (and
    a Ray cluster that cannot be used)."""
    config = config or SynthConfig()
    work = work or out / "synthesis"
    stages = tuple(s for s in STAGES if s != "difficulty" or difficulty_filter is not None)
    if until is not None:
        if until not in stages:
            raise SynthError(f"unknown stage {until!r} (stages: {', '.join(stages)})")
        stages = stages[:stages.index(until) + 1]
    if llm is None and stages != ("tests",):
        raise SynthError("stages after step 0 need an LLM (--llm-base-url/--model or --replay)")
    ids = gym_ids(problems)
    model = llm.model if llm is not None else None
    store = StateStore(work / "state")
    difficulty_id: bool | str = False if difficulty_filter is None else getattr(difficulty_filter, "identity", True)

    def load_states() -> list[ProblemState]:
        store.remove_stale_temp_files()
        states = []
        for problem, gym_id in zip(problems, ids):
            fp = fingerprint(problem, model, config, difficulty_id)
            states.append(store.load(gym_id, fp) or ProblemState(problem_id=problem.id, gym_id=gym_id, fingerprint=fp))
        return states

    states = await anyio.to_thread.run_sync(load_states)

    started = time.monotonic()
    try:
        pools = Pools.create(config, workers, ray=ray)
    except ClusterError as exc:
        raise SynthError(str(exc)) from None
    bars = StageProgress(stages, progress)
    for state in states:
        bars.replay(state)
    incomplete: dict[str, str] = {}
    if jobs is None:
        jobs = max(4, 2 * pools.gyms.concurrency)
    limiter = anyio.Semaphore(max(1, jobs))

    async def process(problem: Problem, state: ProblemState) -> None:
        try:
            ctx = Context(problem, state, config, llm, pools, difficulty_filter)
            for index, stage in enumerate(stages):
                if stage in state.results:
                    if not state.results[stage].passed:
                        return
                    continue
                try:
                    result = await STAGE_FUNCTIONS[stage](ctx)
                except Exception as exc:  # transient trouble (LLM, lost sandbox node) leaves it incomplete
                    cause = transient_cause(exc)
                    if cause is None:
                        raise
                    incomplete[problem.id] = f"{stage}: {cause}"
                    return
                state.results[stage] = result
                await anyio.to_thread.run_sync(store.save, state)
                bars.finished(stage, result.passed)
                if not result.passed:
                    return
                if index + 1 < len(stages):
                    bars.reached(stages[index + 1])
        finally:
            limiter.release()

    try:
        async with anyio.create_task_group() as tg:
            for problem, state in zip(problems, states):
                if not state.finished(stages):
                    await limiter.acquire()  # at most `jobs` problems in flight (and as many tasks)
                    tg.start_soon(process, problem, state)
    finally:
        bars.close()
        sandbox_stats = {"where": pools.where,
                         **{name: vars(getattr(pools, name).stats).copy() for name in ("tests", "reference", "gyms")}}
        with anyio.CancelScope(shield=True):
            await pools.aclose()

    verified = [s for s in states if s.verified and s.finished(stages)]  # not one whose stage 4 is pending
    if verified:
        await anyio.to_thread.run_sync(_assemble, out, verified)
    report = build_report(source, model, list(states), stages, incomplete,
                          llm.usage.to_dict() if llm is not None else {}, sandbox_stats, time.monotonic() - started)
    await anyio.to_thread.run_sync(write_report, report, work)
    return report


def _assemble(out: Path, verified: list[ProblemState]) -> None:
    """Write the verified gyms into the bank at ``out`` (created if missing), in source order."""
    bank = Bank.open(out) if (out / "bank.json").is_file() else Bank.create(out)
    with bank.batch():  # one index write at the end, not one per gym
        for state in verified:
            assert state.record is not None and state.code is not None
            bank.put_gym(state.record, state.code, state.tasks)


# --- command line -------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``codegym synth``."""
    parser.add_argument("source", help="bundled | humaneval[:PATH] | kodcode:PATH | kodcode-hf[:NAME[:SPLIT[:SUBSET]]] "
                                       "| jsonl:PATH | a file or folder")
    parser.add_argument("--out", required=True, type=Path, metavar="BANK", help="bank to write verified gyms into "
                        "(created if missing)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N problems")
    parser.add_argument("--work", type=Path, default=None, metavar="DIR",
                        help="resumable state, LLM cache and report (default: BANK/synthesis)")
    llm = parser.add_argument_group("LLM")
    llm.add_argument("--llm-base-url", default=None, metavar="URL",
                     help="OpenAI-compatible endpoint (default: $CODEGYM_LLM_BASE_URL or $OPENAI_BASE_URL); "
                          "the key comes from $CODEGYM_LLM_API_KEY or $OPENAI_API_KEY")
    llm.add_argument("--model", default=None, help="model name (default: $CODEGYM_LLM_MODEL)")
    llm.add_argument("--replay", type=Path, default=None, metavar="CACHE_DIR",
                     help="run offline from a response cache (no endpoint; a missing answer leaves the problem "
                          "incomplete); 'bundled' is the cache shipped for the bundled problems")
    llm.add_argument("--cache", type=Path, default=None, metavar="DIR", help="response cache (default: WORK/llm-cache)")
    llm.add_argument("--concurrency", type=int, default=8, help="LLM requests in flight (default 8)")
    llm.add_argument("--max-retries", type=int, default=8, help="retries on 429/5xx/timeouts (default 8)")
    llm.add_argument("--max-tokens", type=int, default=None, help="max tokens per answer")
    llm.add_argument("--price-in", type=float, default=0.0, metavar="USD", help="price per million prompt tokens")
    llm.add_argument("--price-out", type=float, default=0.0, metavar="USD", help="price per million completion tokens")
    stage = parser.add_argument_group("stages")
    stage.add_argument("--k", type=int, default=10, help="tool-only solution candidates to sample (default 10)")
    stage.add_argument("--no-gym-solve", action="store_true", help="do not try the gym's own solve() first")
    stage.add_argument("--gym-temperature", type=float, default=0.7)
    stage.add_argument("--inputs-temperature", type=float, default=1.0)
    stage.add_argument("--solve-temperature", type=float, default=1.0)
    stage.add_argument("--oracle-timeout", type=float, default=30.0, metavar="S",
                       help="wall time of one oracle run on one task (default 30 s)")
    stage.add_argument("--until", choices=[s for s in STAGES if s != "difficulty"], default=None,
                       help="stop after this stage (--until tests runs step 0 only and needs no LLM)")
    hard = parser.add_argument_group("difficulty filter (stage 4, optional)")
    hard.add_argument("--difficulty-model", default=None, metavar="MODEL",
                      help="keep the tasks MODEL solves in at most --difficulty-max-solved of --difficulty-tries "
                           "episodes, played by the evaluator; the key comes from $CODEGYM_DIFFICULTY_API_KEY, "
                           "else the synthesis LLM's variables")
    hard.add_argument("--difficulty-base-url", default=None, metavar="URL",
                      help="OpenAI-compatible endpoint of MODEL (default: the synthesis endpoint; required "
                           "with --replay)")
    hard.add_argument("--difficulty-tries", type=int, default=4, metavar="N", help="episodes per task (default 4)")
    hard.add_argument("--difficulty-max-solved", type=int, default=1, metavar="N",
                      help="keep a task solved at most N times (default 1)")
    hard.add_argument("--difficulty-parallel", type=int, default=2, metavar="N",
                      help="gyms evaluated at once, each with its own local gym server (default 2)")
    hard.add_argument("--difficulty-concurrency", type=int, default=32, metavar="N",
                      help="episodes in flight per gym evaluation (default 32)")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--workers", type=int, default=None, help="sandbox workers per pool (default: CPU count); "
                           "with --ray, per pool of each actor (default: its CPUs, at most 16)")
    run_group.add_argument("--jobs", type=int, default=None, help="problems in flight (default: 2 x sandbox workers "
                           "per pool, >= 4)")
    run_group.add_argument("--ray", default=None, metavar="ADDRESS",
                           help="run the sandbox stages on a Ray cluster: HOST:PORT of its head node, auto (the "
                                "cluster `ray start` made this machine part of) or local (a private one-machine "
                                "instance); needs the ray package")
    run_group.add_argument("--quiet", action="store_true", help="no progress bars")
    run_group.add_argument("--json", action="store_true", help="print the report as JSON")


def _llm_config(args: argparse.Namespace, work: Path) -> LLMConfig | None:
    if args.replay is not None and str(args.replay) == "bundled" and not args.replay.exists():
        from .problems import CACHE

        args.replay = CACHE
    if args.replay is not None:
        cache = ResponseCache(args.replay)
        model = args.model
        if model is None:
            models = cache.models()
            if len(models) != 1:
                raise SynthError(f"{args.replay}: pass --model to choose a model to replay "
                                 f"(the cache holds {', '.join(models) or 'none'})")
            model = models[0]
        return LLMConfig(model=model, base_url=None, api_key=None, cache_dir=args.replay, offline=True,
                         concurrency=args.concurrency)
    if args.until == "tests":
        return None
    config = LLMConfig(concurrency=args.concurrency, max_retries=args.max_retries,
                       cache_dir=args.cache or work / "llm-cache", price_in_per_mtok=args.price_in,
                       price_out_per_mtok=args.price_out)
    if args.llm_base_url:
        config.base_url = args.llm_base_url
    if args.model:
        config.model = args.model
    return config


def _summary(report: SynthReport, out: Path, work: Path) -> str:
    last = report.stages[-1]
    if last.stage in ("verify", "difficulty"):
        head = f"{report.verified}/{report.problems} problems became verified gyms ({report.tasks} tasks)"
    else:
        head = f"{last.passed}/{report.problems} problems passed every stage up to '{last.stage}' (--until)"
    lines = [f"\n{head} in {report.elapsed_s:.1f} s"]
    for y in report.stages:
        reasons = ", ".join(f"{code} {n}" for code, n in sorted(y.reasons.items(), key=lambda kv: -kv[1]))
        lines.append(f"  {y.title:32} {y.passed:5}/{y.entered:<5} passed" + (f"   dropped: {reasons}" if reasons else ""))
    if report.incomplete:
        lines.append(f"  {report.incomplete} problems incomplete (transient errors); run the same command again")
    u = report.llm_usage
    if u:
        lines.append(f"  LLM: {u['requests']} requests, {u['retries']} retries, {u['cache_hits']} cache hits, "
                     f"{u['prompt_tokens']}+{u['completion_tokens']} tokens, ${u['cost_usd']:.4f}")
    if report.verified:
        lines.append(f"  bank: {out}")
    lines.append(f"  report: {work / 'report.md'}")
    return "\n".join(lines)


def _difficulty_filter(args: argparse.Namespace, work: Path, llm_config: LLMConfig | None) -> DifficultyFilter | None:
    """Stage 4's evaluator from the ``--difficulty-*`` options (None without ``--difficulty-model``).

    The endpoint defaults to the synthesis LLM's; a replay (offline) must name one. The key is read
    from the environment (:data:`synthesis.difficulty.API_KEY_VARIABLES`) and stays in memory."""
    if not args.difficulty_model:
        return None
    from .difficulty import DifficultyModel, EvaluatorDifficulty, api_key_from_env

    for option, low in (("tries", 1), ("max_solved", 0), ("parallel", 1), ("concurrency", 1)):
        value = getattr(args, f"difficulty_{option}")
        if value < low:
            raise SynthError(f"--difficulty-{option.replace('_', '-')} must be at least {low} (got {value})")
    if args.difficulty_max_solved >= args.difficulty_tries:
        raise SynthError(f"--difficulty-max-solved {args.difficulty_max_solved} would keep every task: it must be "
                         f"less than --difficulty-tries ({args.difficulty_tries})")
    base_url = args.difficulty_base_url
    if base_url is None:
        if args.replay is not None:
            raise SynthError("--difficulty-model with --replay needs --difficulty-base-url: the replay is offline, "
                             "but the reference model is played live")
        base_url = llm_config.base_url if llm_config is not None else None
    settings = DifficultyModel(model=args.difficulty_model, base_url=base_url, api_key=api_key_from_env(),
                               concurrency=args.difficulty_concurrency, max_retries=args.max_retries,
                               # under --ray, --workers counts an actor's workers; stage 4 runs here
                               workers=(None if args.ray else args.workers) or min(4, os.cpu_count() or 1))
    return EvaluatorDifficulty(settings, work / "difficulty", parallel=args.difficulty_parallel)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``codegym synth``."""
    try:
        for name in ("limit", "workers", "jobs", "k", "concurrency"):
            value = getattr(args, name)
            if value is not None and value < (0 if name == "k" else 1):
                raise SynthError(f"--{name} must be {'>= 0' if name == 'k' else 'positive'} (got {value})")
        problems = load_problems(args.source, args.limit)
        if not problems:
            raise SynthError(f"{args.source}: no problems")
        work = args.work or args.out / "synthesis"
        llm_config = _llm_config(args, work)
        difficulty = _difficulty_filter(args, work, llm_config)
        config = SynthConfig(k=args.k, use_gym_solve=not args.no_gym_solve, gym_temperature=args.gym_temperature,
                             inputs_temperature=args.inputs_temperature, solve_temperature=args.solve_temperature,
                             max_tokens=args.max_tokens, oracle_timeout_s=args.oracle_timeout,
                             difficulty_tries=args.difficulty_tries, difficulty_max_solved=args.difficulty_max_solved)
        async def main() -> SynthReport:
            llm = LLMClient(llm_config) if llm_config is not None else None
            try:
                return await synthesize(problems, out=args.out, work=work, llm=llm, config=config,
                                        workers=args.workers, jobs=args.jobs, until=args.until, ray=args.ray,
                                        progress=not (args.quiet or args.json), difficulty_filter=difficulty,
                                        source=args.source)
            finally:
                if llm is not None:
                    await llm.aclose()

        report = anyio.run(main)
    except (SourceError, SynthError, LLMError, BankError, ValidationError) as exc:
        print(f"codegym synth: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(report.model_dump_json(indent=1))
    else:
        print(_summary(report, args.out, work))
    return 1 if report.incomplete else 0
