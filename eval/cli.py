"""``codegym eval``: evaluate a policy on gyms over MCP; ``codegym eval rescore`` / ``codegym eval report``.

::

    codegym eval [--bank PATH | --server URL] [--gyms ID ...] [--split easy|medium|hard]
                 --policy oracle|openai|random [--model NAME --base-url URL] [-k 4] [--concurrency 256]
                 [--max-turns 256] [--temperature 0.7 --top-p 0.95] --out DIR
    codegym eval rescore OUT/trajectories.jsonl [--bank PATH | --server URL]
    codegym eval report OUT            # rebuild results.json, report.md, report.png from trajectories.jsonl

Exit status: 0 when the run finished (and reached ``--min-success``, when given), 1 when it did not reach
``--min-success`` or a re-score found a mismatch, 2 for bad input or a run stopped by an error (wrong model,
key or URL), 130 when interrupted with Ctrl-C (the finished episodes are written).

:func:`demo_table` is the oracle evaluation table ``make demo`` ends with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from mcp_gyms.constants import DEFAULT_MAX_STEPS, DIFFICULTIES
from mcp_gyms.protocol import TOKEN_ENV

from .evaluation import EvalConfig, EvalError, run_evaluation
from .metrics import group_summaries, summarise
from .records import EpisodeRecord
from .report import read_trajectories, render_table, write_reports

__all__ = ["add_arguments", "demo_table", "run"]

API_KEY_ENV = "OPENAI_API_KEY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``codegym eval`` (and its ``rescore`` / ``report`` actions)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("actions:\n  codegym eval rescore TRAJECTORIES.jsonl   replay recorded calls, check rewards\n"
                     "  codegym eval report DIR                    rebuild the reports of a run\n\n"
                     f"The API key comes from --api-key or ${API_KEY_ENV}; it is never written anywhere.")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--bank", default=None, help="serve this bank locally for the run (default: the bundled bank)")
    src.add_argument("--server", default=None, metavar="URL",
                     help="a running gym server: its base URL (http://host:port) or one gym's endpoint (.../mcp); "
                          "for `codegym serve --procs N`, its URLs comma-separated (episodes are spread over them)")
    parser.add_argument("--token", default=None, help=f"bearer token of --server (default: ${TOKEN_ENV})")
    parser.add_argument("--gyms", nargs="+", metavar="ID", default=None, help="only these gyms (default: all)")
    parser.add_argument("--split", choices=DIFFICULTIES, default=None, help="only tasks of this difficulty")
    parser.add_argument("--tasks-per-gym", type=int, default=None, metavar="N", help="only the first N tasks of each gym")
    parser.add_argument("--policy", choices=("oracle", "openai", "random"), default="oracle",
                        help="who plays (default: oracle, the verified tool-only solution)")
    parser.add_argument("--model", default=None, help="model name (openai policy)")
    parser.add_argument("--base-url", default=None, metavar="URL",
                        help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL "
                             "or OpenAI)")
    parser.add_argument("--api-key", default=None, help=f"API key (default: ${API_KEY_ENV}; 'EMPTY' if unset)")
    parser.add_argument("-k", type=int, default=None,
                        help="samples per task (default: 1 for oracle, 4 for openai and random)")
    parser.add_argument("--concurrency", type=int, default=256, help="episodes in flight (default: 256)")
    parser.add_argument("--max-turns", type=int, default=DEFAULT_MAX_STEPS,
                        help=f"model turns per episode (default: {DEFAULT_MAX_STEPS}, the default step budget)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default: 0.7)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default: 0.95)")
    parser.add_argument("--max-tokens", type=int, default=None, help="most tokens per model reply (default: the server's)")
    parser.add_argument("--tool-format", choices=("native", "text"), default="native",
                        help="native: tools as function tools (text calls still parsed); text: <tool_call> blocks "
                             "asked for in the prompt, for servers without tool calling (default: native)")
    parser.add_argument("--request-timeout", type=float, default=600.0, metavar="S",
                        help="seconds before a model request times out (default: 600)")
    parser.add_argument("--episode-timeout", type=float, default=None, metavar="S",
                        help="wall-time limit of one episode (default: none)")
    parser.add_argument("--max-retries", type=int, default=5, help="retries of a failed model request (default: 5)")
    parser.add_argument("--retry-base", type=float, default=1.0, metavar="S",
                        help="first retry delay, doubled each retry, with jitter (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random policy (default: 0)")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers of the local server (default: CPUs)")
    parser.add_argument("--min-success", type=float, default=None, metavar="RATE",
                        help="exit 1 unless the success rate is at least RATE (0..1)")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (must not hold a run already)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="action", metavar="{rescore,report}")
    r = sub.add_parser("rescore", help="replay the recorded calls through fresh episodes; check the rewards match")
    r.add_argument("trajectories", help="a trajectories.jsonl (or the run folder holding it)")
    rsrc = r.add_mutually_exclusive_group()
    rsrc.add_argument("--bank", dest="rescore_bank", default=None, help="bank to serve locally (default: bundled)")
    rsrc.add_argument("--server", dest="rescore_server", default=None, metavar="URL", help="a running gym server")
    r.add_argument("--token", dest="rescore_token", default=None, help=f"bearer token (default: ${TOKEN_ENV})")
    r.add_argument("--concurrency", dest="rescore_concurrency", type=int, default=64, help="episodes in flight")
    r.add_argument("--workers", dest="rescore_workers", type=int, default=None, help="sandbox workers (local bank)")
    r.add_argument("--json", action="store_true", help="print the full report as JSON")
    p = sub.add_parser("report", help="rebuild results.json, report.md and report.png from a run's trajectories")
    p.add_argument("run_dir", help="the run folder (holding trajectories.jsonl)")


def _error(message: str) -> int:
    print(f"codegym eval: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run ``codegym eval`` (or its action) from parsed arguments; return the exit status."""
    if args.action == "rescore":
        return _rescore(args)
    if args.action == "report":
        return _report(args)
    if not args.out:
        return _error("--out DIR is required")
    if args.min_success is not None and not 0 <= args.min_success <= 1:
        return _error("--min-success is a rate between 0 and 1")
    k = args.k if args.k is not None else (1 if args.policy == "oracle" else 4)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    token = args.token or os.environ.get(TOKEN_ENV) or None
    try:
        config = EvalConfig(
            bank=args.bank, server=args.server, token=token, gyms=args.gyms, split=args.split,
            tasks_per_gym=args.tasks_per_gym, policy=args.policy, model=args.model, base_url=args.base_url,
            api_key=api_key, k=k, concurrency=args.concurrency, max_turns=args.max_turns,
            temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, tool_format=args.tool_format,
            request_timeout=args.request_timeout, episode_timeout=args.episode_timeout, max_retries=args.max_retries,
            retry_base=args.retry_base, seed=args.seed, workers=args.workers, out=args.out)
    except ValidationError as exc:
        return _error("; ".join(_problem(e) for e in exc.errors(include_url=False)))
    try:
        outcome = run_evaluation(config, progress=not args.no_progress)
    except EvalError as exc:
        return _error(str(exc))
    print_summary(outcome.records, title=f"{config.policy}" + (f" / {config.model}" if config.model else ""))
    print(f"\nwrote {outcome.out_dir}/{{trajectories.jsonl,results.json,report.md,report.png}}")
    if outcome.error:
        print(f"codegym eval: stopped: {outcome.error}", file=sys.stderr)
        return 2
    if outcome.interrupted:
        print(f"codegym eval: interrupted; {len(outcome.records)} finished episodes written", file=sys.stderr)
        return 130
    if args.min_success is not None:
        rate = outcome.results["overall"]["success_rate"]
        if rate < args.min_success:
            print(f"codegym eval: success rate {100 * rate:.1f}% is under --min-success "
                  f"{100 * args.min_success:.1f}%", file=sys.stderr)
            return 1
    return 0


def _problem(err: dict) -> str:  # type: ignore[type-arg]
    where = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    return f"--{where.replace('_', '-')}: {msg}" if where else msg


def print_summary(records: list[EpisodeRecord], *, title: str = "", by_gym: bool = True) -> None:
    """Print the result tables (overall, by difficulty, by gym) as aligned text."""
    overall = summarise(records)
    print(f"\n{title}: {overall.successes}/{overall.episodes} episodes solved ({100 * overall.success_rate:.1f}%)"
          f"  reasons: {', '.join(f'{k} {v}' for k, v in overall.reasons.items()) or '-'}\n")
    print(render_table(group_summaries(records, "difficulty", None, DIFFICULTIES), "difficulty", markdown=False))
    if by_gym:
        print()
        print(render_table(group_summaries(records, "gym"), "gym", markdown=False))


def _rescore(args: argparse.Namespace) -> int:
    from .rescore import run_rescore

    token = args.rescore_token or os.environ.get(TOKEN_ENV) or None
    try:
        report = run_rescore(Path(args.trajectories), bank=args.rescore_bank, server=args.rescore_server, token=token,
                             concurrency=args.rescore_concurrency, workers=args.rescore_workers)
    except (ValueError, EvalError) as exc:
        return _error(str(exc))
    except Exception as exc:
        from mcp_gyms.bank import BankError
        from mcp_gyms.client import GymClientError

        from .local import LocalServerError

        if isinstance(exc, (BankError, GymClientError, LocalServerError, OSError)):
            return _error(str(exc))
        raise
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=1))
    for c in report.checks:
        if not c.match:
            why = c.error or f"recorded reward {c.recorded_reward:g} (done={c.recorded_done}), replayed " \
                             f"{c.replayed_reward:g} (done={c.replayed_done})"
            print(f"MISMATCH  {c.gym} {c.task_id} sample {c.sample}: {why}")
    print(f"rescored {report.replayed} episodes ({report.skipped} skipped): {report.matched} match, "
          f"{report.mismatched} mismatch, {report.diverged} with differing observations")
    return 0 if report.ok else 1


def _report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    try:
        records = read_trajectories(run_dir)
    except ValueError as exc:
        return _error(str(exc))
    config: dict = {}  # type: ignore[type-arg]
    results_path = run_dir / "results.json"
    if results_path.is_file():
        try:
            config = json.loads(results_path.read_text(encoding="utf-8")).get("config", {})
        except (OSError, ValueError):
            config = {}
    write_reports(run_dir, records, config)
    print_summary(records, title=str(config.get("policy", "run")))
    return 0


def demo_table(bank: str | Path | None = None, *, out: str | Path | None = None, workers: int | None = None,
               concurrency: int = 64, progress: bool = False) -> int:
    """The oracle evaluation of a bank (default: the bundled one) over MCP, printed as a table.

    Plays every task once with the oracle through a local HTTP gym server, prints the per-gym and
    per-difficulty tables, and writes the run's outputs to ``out`` (default: a temporary folder, removed
    afterwards). Returns 0 when the oracle solved every task, 1 otherwise (``make demo`` can exit with it)."""
    with tempfile.TemporaryDirectory(prefix="codegym-eval-") as tmp:
        target = Path(out) if out is not None else Path(tmp) / "run"
        config = EvalConfig(bank=str(bank) if bank is not None else None, policy="oracle", k=1,
                            concurrency=concurrency, workers=workers, out=str(target))
        try:
            outcome = run_evaluation(config, progress=progress)
        except EvalError as exc:
            return _error(str(exc))
        print_summary(outcome.records, title="oracle over MCP")
        overall = outcome.results["overall"]
        ok = overall["episodes"] > 0 and overall["success_rate"] == 1.0 and not outcome.interrupted
        if out is not None:
            print(f"\nwrote {target}")
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m eval.cli ...``: the same as ``codegym eval ...``."""
    parser = argparse.ArgumentParser(prog="python -m eval.cli", description="evaluate policies on gyms over MCP")
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
