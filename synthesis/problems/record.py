"""Build (or check) the response cache of the bundled problems from their authored answers.

Usage::

    python -m synthesis.problems.record            # write synthesis/problems/cache
    python -m synthesis.problems.record --check    # exit 1 if the cache is missing or stale

For every bundled problem with ``answers/<id>/gym.md``, the cache gets the stage-1 answer under the
exact prompt :func:`synthesis.prompting.gym_messages` builds (with the call spec that a trial run of
the problem's tests in the sandbox gives, as step 0 does); with ``inputs.json``, the stage-2 answer
(one choice per sample) under the prompt built from the extracted gym code; with ``solve.json``, the
stage-3 candidates. Sampling parameters are :class:`synthesis.stages.SynthConfig`'s defaults, so a
default ``codegym synth bundled --replay bundled`` finds every answer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio

from mcp_gyms.sandbox import SandboxPool
from synthesis.calling import CallSpec, decide_call
from synthesis.execution import run_problem_tests
from synthesis.extract import extract_conversion, extract_gym
from synthesis.llm import ResponseCache, Sampling
from synthesis.packages import SANDBOX_PRELOAD
from synthesis.prompting import gym_messages, inputs_messages, solve_messages
from synthesis.sources import Problem, load_problems
from synthesis.stages import SynthConfig

from . import ANSWERS, CACHE, MODEL


def _fenced_json(items: Any) -> str:
    return "```json\n" + json.dumps(items, indent=1) + "\n```\n"


def call_specs(problems: list[Problem]) -> dict[str, CallSpec]:
    """The call spec of every problem, from a trial run of its tests in the sandbox (as step 0 does)."""
    async def main() -> dict[str, CallSpec]:
        async with SandboxPool(2, preload=SANDBOX_PRELOAD) as pool:  # problems may import numpy, scipy, pandas
            specs = {}
            for problem in problems:
                report = await run_problem_tests(pool, problem)
                if not report.ok:
                    raise ValueError(f"{problem.id}: the problem's own tests fail: {report.reason()}")
                specs[problem.id] = decide_call(report.trial, problem.tests, problem.parameters())
            return specs
    return anyio.run(main)


def entries(problem: Problem, config: SynthConfig,
            call: CallSpec | None = None) -> list[tuple[list[dict[str, str]], Sampling, list[str]]]:
    """(messages, sampling, choices) for every recorded answer of one problem (``call``: its call spec)."""
    folder = ANSWERS / problem.id
    gym_file = folder / "gym.md"
    if not gym_file.is_file():
        return []
    gym_text = gym_file.read_text(encoding="utf-8")
    out = [(gym_messages(problem, call, config.inputs_per_sample, config.min_inputs),
            Sampling(temperature=config.gym_temperature, n=1, max_tokens=config.max_tokens), [gym_text])]
    draft = extract_gym(gym_text)
    if call is not None and call.unsupported:
        draft.conversion = extract_conversion(gym_text, problem.entry_point or "")
    inputs_file = folder / "inputs.json"
    if inputs_file.is_file():
        samples = json.loads(inputs_file.read_text(encoding="utf-8"))
        if len(samples) != config.input_samples:
            raise ValueError(f"{inputs_file}: {len(samples)} samples, the pipeline asks for {config.input_samples}")
        out.append((inputs_messages(problem, draft.code, config.inputs_per_sample, call, draft.conversion,
                                    config.min_inputs),
                    Sampling(temperature=config.inputs_temperature, n=config.input_samples,
                             max_tokens=config.max_tokens),
                    [_fenced_json(sample) for sample in samples]))
    solve_file = folder / "solve.json"
    if solve_file.is_file():
        candidates = json.loads(solve_file.read_text(encoding="utf-8"))
        tools = json.loads((folder / "tools.json").read_text(encoding="utf-8"))
        out.append((solve_messages(draft.task_text, tools, draft.code, draft.class_name),
                    Sampling(temperature=config.solve_temperature, n=config.k, max_tokens=config.max_tokens),
                    [f"```python\n{c}\n```" for c in candidates]))
    return out


def record(check: bool, cache_dir: Path = CACHE) -> int:
    """Write the cache (or, with ``check``, count missing or stale entries). Returns the problem count."""
    cache = ResponseCache(cache_dir)
    config = SynthConfig()
    if not check:  # start clean: entries recorded under older prompts would only take space
        shutil.rmtree(cache.root / MODEL, ignore_errors=True)
    stale = []
    problems = load_problems("bundled")
    specs = call_specs([p for p in problems if (ANSWERS / p.id / "gym.md").is_file()])
    for problem in problems:
        for messages, sampling, choices in entries(problem, config, specs.get(problem.id)):
            key = ResponseCache.key(MODEL, messages, sampling)
            entry = {"model": MODEL, "messages": messages, "sampling": sampling.model_dump(), "choices": choices,
                     "usage": {"prompt_tokens": 0, "completion_tokens": 0}}
            if check:
                if cache.get(MODEL, key) != entry:
                    stale.append(problem.id)
            else:
                cache.put(MODEL, key, entry)
    if check and stale:
        print(f"stale or missing cache entries for: {', '.join(sorted(set(stale)))}; "
              "run `python -m synthesis.problems.record`", file=sys.stderr)
        raise SystemExit(1)
    return len(problems)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the cache is complete and current")
    args = parser.parse_args(argv)
    count = record(args.check)
    print(f"{'checked' if args.check else 'recorded'} the answers of {count} bundled problems in {CACHE}")


if __name__ == "__main__":
    main()
