"""`codegym`: the front door. Each subcommand imports its package only when it runs, so the runtime
works without optional extras (``rl``) installed."""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .bank import Bank, BankError, default_bank_path
from .constants import DIFFICULTIES

Command = Callable[[argparse.Namespace], int]


def _bank_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bank", default=None, help="bank folder (default: the bundled bank)")


# --- list / show ------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    bank = Bank.open(args.bank)
    if args.json:  # stable: {"format", "bank", "gyms": [bank index rows]}; new keys may be added, none removed
        print(json.dumps({"format": "codegym-list/1", "bank": str(bank.root),
                          "gyms": [g.model_dump(mode="json") for g in bank.index.gyms]}, indent=2))
        return 0
    rows = [("id", "tools", "tasks", "easy/med/hard", "oracle steps", "verified")]
    for g in bank.index.gyms:
        mix = "/".join(str(g.difficulty.get(d, 0)) for d in DIFFICULTIES)
        steps = f"{g.mean_oracle_steps:.1f}" if g.mean_oracle_steps is not None else "-"
        rows.append((g.id, str(g.tools), str(g.tasks), mix, steps, "yes" if g.verified else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\n{len(bank)} gyms, {sum(g.tasks for g in bank.index.gyms)} tasks in {bank.root}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    bank = Bank.open(args.bank)
    record, tasks = bank.gym(args.gym), bank.tasks(args.gym)
    if args.json:  # stable: {"format", "gym": the bank record, "tasks": task records}; keys only ever added
        print(json.dumps({"format": "codegym-show/1", "gym": record.model_dump(mode="json"),
                          "tasks": [t.model_dump(mode="json") for t in tasks]}, indent=2))
        return 0
    print(f"# {record.title} ({record.id})\n\n{record.task_text}\n\n## Tools")
    for t in record.tools:
        print(f"\n### {t.name}\n{t.description}\nschema: {json.dumps(t.input_schema)}")
    print(f"\n## Tasks ({len(tasks)})")
    for i, t in enumerate(tasks):
        config = json.dumps(t.config)
        print(f"{i:3}  {t.id:10} {t.difficulty:6} oracle steps {t.oracle_steps}  config {config[:60]}"
              f"{'...' if len(config) > 60 else ''}")
    return 0


# --- verify -----------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    import anyio

    from .verify import collect_sources, verify_sources, write_back

    sources, bank = collect_sources(args.paths)
    if args.into:
        bank = Bank.open(args.into) if (Path(args.into) / "bank.json").is_file() else Bank.create(args.into)

    def progress(v) -> None:  # noqa: ANN001
        if args.json:
            return
        kept = sum(t.kept for t in v.tasks)
        verdict = "VERIFIED" if v.verified else "REJECTED"
        print(f"{verdict:8}  {v.gym_id:24} tools {len(v.tools):2}  tasks kept {kept}/{len(v.tasks)}", flush=True)
        for reason in v.reasons:
            print(f"          - {reason}")
        for t in v.tasks:
            if not t.kept and t.reason:
                print(f"          - task {t.task_id}: {t.reason}")

    started = time.monotonic()
    verdicts = anyio.run(verify_sources, sources, args.workers, progress)
    if (args.write or args.into) and bank is not None:
        write_back(bank, sources, verdicts)
    ok = sum(v.verified for v in verdicts)
    if args.json:
        print(json.dumps({"verified": ok, "total": len(verdicts), "gyms": [v.to_dict() for v in verdicts]}, indent=2))
    else:
        tasks = sum(len(v.tasks) for v in verdicts)
        print(f"\n{ok}/{len(verdicts)} gyms verified ({100 * ok / max(1, len(verdicts)):.0f}%), "
              f"{tasks} tasks checked in {time.monotonic() - started:.1f} s")
    return 0 if ok == len(verdicts) else 1


# --- demo -------------------------------------------------------------------------------------
def _compare_with_bundled(rebuilt: Bank) -> int:
    """Check that every gym synthesis rebuilt is in the bundled default bank, identical (timestamps aside)."""
    bundled = Bank.open(default_bank_path())
    differ = [g for g in rebuilt.gym_ids if g not in bundled or rebuilt.content_digest(g) != bundled.content_digest(g)]
    if differ:
        print(f"the rebuilt gyms differ from the bundled default bank's: {', '.join(differ)}")
        return 1
    print(f"the {len(rebuilt)} rebuilt gyms are identical to their copies in the bundled default bank "
          f"({len(bundled)} gyms; the other {len(bundled) - len(rebuilt)} were written by hand)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job end to end, offline: synthesis by replay, verification, the oracle over MCP."""
    try:
        from eval.cli import demo_table
        from synthesis import pipeline
    except ImportError as exc:
        return _fail(_missing("demo", exc))

    out = Path(args.out)
    bank = str(Bank.open(args.bank).root)
    print("== 1/3  synthesis: bundled problems -> verified gyms (offline replay of recorded LLM answers)", flush=True)
    synth = argparse.ArgumentParser(prog="codegym synth")
    pipeline.add_arguments(synth)
    rebuilt = out / "synth-bank"
    shutil.rmtree(rebuilt, ignore_errors=True)  # a fresh rebuild each time, not a resumed one
    synth_status = pipeline.run(synth.parse_args(["bundled", "--replay", "bundled", "--out", str(rebuilt), "--quiet"]))
    if synth_status == 0:
        synth_status = _compare_with_bundled(Bank.open(rebuilt))
    print(f"\n== 2/3  verification of the bank at {bank}", flush=True)
    verify_status = cmd_verify(argparse.Namespace(paths=[bank], json=False, write=False, into=None, workers=None))
    print("\n== 3/3  every task played by the verified oracle over MCP (local streamable HTTP server)", flush=True)
    eval_status = demo_table(bank, out=out / "oracle-eval")
    failed = [name for name, status in (("synthesis", synth_status), ("verification", verify_status),
                                        ("oracle evaluation", eval_status)) if status]
    print(f"\ndemo {'FAILED: ' + ', '.join(failed) if failed else 'OK'} (outputs in {out})")
    return 1 if failed else 0


# --- commands that live in other packages -----------------------------------------------------
#: command -> (module, help). The module is imported only when its command runs (so the runtime works
#: without optional extras); it provides ``add_arguments(parser)`` and ``run(args) -> int``.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("mcp_gyms.server", "serve a gym over MCP (stdio), or a whole bank over streamable HTTP"),
    "install": ("mcp_gyms.install", "add a gym to an MCP host's config (claude-desktop, cursor, vscode)"),
    "export-verl": ("rl.export", "export a bank's tasks as train/val parquet for veRL (RLHFDataset)"),
    "export-sft": ("rl.sft", "export successful oracle or eval trajectories as chat parquet for veRL's SFT trainer"),
    "import-v1": ("mcp_gyms.v1_import", "import environments in the original CodeGym format into a verified bank"),
    "synth": ("synthesis.pipeline", "synthesize verified gyms from coding problems with an LLM (resumable)"),
    "eval": ("eval.cli", "evaluate a policy (oracle, any OpenAI-compatible model, random) on gyms over MCP"),
}
#: command -> the extra (pyproject.toml) that installs what it needs beyond the core
EXTRAS: dict[str, str] = {"export-verl": "rl", "export-sft": "rl", "import-v1": "v1", "synth": "synth",
                          "eval": "eval", "demo": "eval,synth"}


def _missing(name: str, exc: ImportError) -> str:
    extra = EXTRAS.get(name)
    hint = f" (install the extra: pip install 'codegym-mcp[{extra}]')" if extra else ""
    return f"'{name}' needs a missing package: {exc}{hint}"


def _add_lazy(sub: argparse._SubParsersAction, name: str, selected: bool) -> None:
    module_name, help_text = LAZY_COMMANDS[name]
    p = sub.add_parser(name, help=help_text, description=help_text)
    if not selected:
        return
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        message = _missing(name, exc)
        p.add_argument("ignored", nargs=argparse.REMAINDER)  # so the message below is what the user sees
        p.set_defaults(func=lambda _a: _fail(message))
        return
    module.add_arguments(p)
    p.set_defaults(func=module.run)


def _fail(message: str) -> int:
    print(f"codegym: error: {message}", file=sys.stderr)
    return 2


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``selected`` names the command about to run (its module gets imported)."""
    parser = argparse.ArgumentParser(prog="codegym", description="Verified tool-use gyms from coding problems, over MCP")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the gyms of a bank")
    _bank_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output (the bank index rows)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="show a gym: task text, tools with schemas, tasks")
    p.add_argument("gym")
    _bank_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output (gym record and tasks)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("verify", help="run the paper's stable checks on gyms, in the sandbox")
    p.add_argument("paths", nargs="*", help="a bank folder, or gym folders (default: the bundled bank)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--write", action="store_true", help="store tools, oracle steps and reports back in the bank")
    p.add_argument("--into", metavar="BANK", help="write the verified gyms into this bank (created if missing)")
    p.add_argument("--workers", type=int, default=None, help="sandbox worker processes (default: CPU count)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("demo", help="synthesis by replay, verification, and the oracle over MCP, end to end")
    _bank_arg(p)
    p.add_argument("--out", default="runs/demo", help="where the demo writes its outputs (default: runs/demo)")
    p.set_defaults(func=cmd_demo)

    for name in LAZY_COMMANDS:
        _add_lazy(sub, name, selected == name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(selected).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BankError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `codegym show X | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
