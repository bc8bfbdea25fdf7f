"""``codegym export-verl``: a bank's tasks as the train/val parquet files veRL's ``RLHFDataset`` loads.

One row per (gym, task). The bank is read as *data* (task text, task ids, reference answers, oracle step
counts); no gym code is loaded or run. Columns, as veRL expects them:

- ``data_source``: ``"codegym"`` (veRL's ``reward_fn_key``);
- ``prompt``: chat messages — a system message on how to act through tools, then the gym's task text.
  The gym's tools are *not* here: the agent loop lists them from the gym server at run time and the chat
  template renders them, so the model sees exactly the tools the server runs;
- ``ability``: ``"tool-use"``;
- ``agent_name``: ``"codegym_agent"`` (the registered loop);
- ``reward_model``: ``{"style": "rule", "ground_truth": <reference answer as JSON text>}`` — JSON text,
  because answers differ in type from task to task and a parquet column has one type;
- ``extra_info``: ``index``, ``split``, ``gym``, ``task`` (id), ``task_index``, ``difficulty``, ``seed``,
  ``oracle_steps`` and ``tools_kwargs = {"codegym": {"create_kwargs": {gym, task, seed}}}`` (what the loop
  reads to start the episode).

The split is a stable hash of (gym, task) — or of the gym alone with ``--split-by gym`` — so re-exporting a
grown bank keeps every old row on its side. When ``--val-fraction`` > 0 and there are two or more rows (or
gyms), val holds at least one. ``manifest.json`` beside the files records the bank, its digest and the counts.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mcp_gyms.bank import Bank, BankError

from .settings import AGENT_NAME, DATA_SOURCE, TOOLS_KWARGS_KEY

__all__ = ["DEFAULT_SYSTEM_PROMPT", "ExportOptions", "ExportReport", "add_arguments", "build_rows", "export", "run"]

DEFAULT_SYSTEM_PROMPT = (
    "You are an agent working in an environment whose state is hidden from you. You act only by calling the "
    "tools you are given, one or more per turn; each call returns an observation. Observe shows part of the "
    "current state. Explore with the tools, work out the answer, and submit it by calling Done(answer) — "
    "that ends the task, and only the submitted answer is graded. Every call, including a malformed one, "
    "counts toward the call budget."
)

SplitBy = Literal["task", "gym"]


class ExportOptions(BaseModel):
    """What ``codegym export-verl`` does (validated)."""

    model_config = ConfigDict(extra="forbid")

    bank: Path | None = Field(None, description="bank folder (None: the bundled bank)")
    out: Path
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    split_by: SplitBy = "task"
    salt: str = Field("codegym", description="changes which rows go to val, stably")
    gyms: list[str] | None = None
    include_unverified: bool = False
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    data_source: str = DATA_SOURCE
    agent_name: str = AGENT_NAME


class ExportReport(BaseModel):
    """What was written."""

    bank: str
    bank_digest: str
    train_file: str
    val_file: str
    train_rows: int
    val_rows: int
    gyms: int
    skipped_gyms: dict[str, str] = Field(default_factory=dict, description="gym id -> why it was left out")


def _unit_hash(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _user_message(task_text: str, max_steps: int) -> str:
    return f"{task_text.strip()}\n\nYou may make at most {max_steps} tool calls. Submit your answer with Done(answer)."


def build_rows(bank: Bank, options: ExportOptions) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every exported row (``split`` not yet assigned) and the gyms left out with the reason.

    Raises:
        BankError: a named gym is not in the bank, or a record cannot be read.
    """
    wanted = options.gyms if options.gyms is not None else bank.gym_ids
    skipped: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for gym_id in wanted:
        summary = bank.summary(gym_id)  # raises BankError naming the bank's gyms
        if not summary.verified and not options.include_unverified:
            skipped[gym_id] = "not verified (pass --include-unverified to export it anyway)"
            continue
        record = bank.gym(gym_id)
        tasks = bank.tasks(gym_id)
        if not tasks:
            skipped[gym_id] = "has no tasks"
            continue
        prompt = [{"role": "system", "content": options.system_prompt},
                  {"role": "user", "content": _user_message(record.task_text, record.max_steps)}]
        for task_index, task in enumerate(tasks):
            rows.append({
                "data_source": options.data_source,
                "prompt": prompt,
                "ability": "tool-use",
                "agent_name": options.agent_name,
                "reward_model": {"style": "rule", "ground_truth": json.dumps(task.answer, sort_keys=True)},
                "extra_info": {
                    "index": 0,
                    "split": "",
                    "gym": gym_id,
                    "task": task.id,
                    "task_index": task_index,
                    "difficulty": task.difficulty,
                    "seed": task.seed,
                    "oracle_steps": task.oracle_steps,
                    "tools_kwargs": {TOOLS_KWARGS_KEY: {"create_kwargs": {
                        "gym": gym_id, "task": task.id, "seed": task.seed}}},
                },
            })
    return rows, skipped


def _assign_splits(rows: list[dict[str, Any]], options: ExportOptions) -> Iterator[tuple[str, dict[str, Any]]]:
    def key(row: dict[str, Any]) -> tuple[str, ...]:
        info = row["extra_info"]
        return (options.salt, info["gym"]) if options.split_by == "gym" else (options.salt, info["gym"], info["task"])

    scores = {key(r): _unit_hash(*key(r)) for r in rows}
    val_keys = {k for k, h in scores.items() if h < options.val_fraction}
    if options.val_fraction > 0 and not val_keys and len(scores) >= 2:
        val_keys = {min(scores, key=scores.__getitem__)}
    if len(val_keys) == len(scores) and len(scores) >= 2:  # never leave train empty
        val_keys.discard(max(val_keys, key=scores.__getitem__))
    for row in rows:
        yield ("val" if key(row) in val_keys else "train"), row


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("agent_name", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([
            ("index", pa.int64()), ("split", pa.string()), ("gym", pa.string()), ("task", pa.string()),
            ("task_index", pa.int64()), ("difficulty", pa.string()), ("seed", pa.int64()),
            ("oracle_steps", pa.int64()),
            ("tools_kwargs", pa.struct([(TOOLS_KWARGS_KEY, pa.struct([("create_kwargs", pa.struct([
                ("gym", pa.string()), ("task", pa.string()), ("seed", pa.int64())]))]))])),
        ])),
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    tmp.replace(path)


def export(options: ExportOptions) -> ExportReport:
    """Write ``train.parquet``, ``val.parquet`` and ``manifest.json`` into ``options.out``.

    Raises:
        BankError: the bank cannot be opened or read, or a named gym is missing.
        ValueError: nothing to export (no verified gym with tasks).
    """
    bank = Bank.open(options.bank)
    rows, skipped = build_rows(bank, options)
    if not rows:
        reasons = "; ".join(f"{g}: {why}" for g, why in list(skipped.items())[:5]) or "the bank has no gyms"
        raise ValueError(f"nothing to export from {bank.root} ({reasons})")
    split: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
    for name, row in _assign_splits(rows, options):
        row["extra_info"]["split"] = name
        row["extra_info"]["index"] = len(split[name])
        split[name].append(row)
    out = options.out
    train_file, val_file = out / "train.parquet", out / "val.parquet"
    _write_parquet(split["train"], train_file)
    _write_parquet(split["val"], val_file)
    report = ExportReport(bank=str(bank.root), bank_digest=bank.digest, train_file=str(train_file),
                          val_file=str(val_file), train_rows=len(split["train"]), val_rows=len(split["val"]),
                          gyms=len({r["extra_info"]["gym"] for r in rows}), skipped_gyms=skipped)
    manifest = {**report.model_dump(), "options": options.model_dump(mode="json", exclude={"system_prompt"})}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return report


# --- the `codegym export-verl` command ------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``codegym export-verl`` to ``parser``."""
    parser.add_argument("--bank", default=None, help="bank folder (default: the bundled bank)")
    parser.add_argument("--out", required=True, help="output folder for train.parquet, val.parquet, manifest.json")
    parser.add_argument("--val-fraction", type=float, default=0.05,
                        help="share of rows (or gyms, with --split-by gym) held out for validation (default: 0.05)")
    parser.add_argument("--split-by", choices=("task", "gym"), default="task",
                        help="hold out single tasks (default) or whole gyms")
    parser.add_argument("--salt", default="codegym", help="changes which rows go to val, stably (default: codegym)")
    parser.add_argument("--gym", dest="gyms", action="append", default=None, metavar="GYM",
                        help="export only this gym (repeatable; default: every gym)")
    parser.add_argument("--include-unverified", action="store_true", help="also export gyms that are not verified")
    parser.add_argument("--system-prompt", default=None, metavar="FILE",
                        help="text file with the system prompt (default: the built-in one)")


def run(args: argparse.Namespace) -> int:
    """Run ``codegym export-verl``; print a summary. Returns the exit code (2 for bad input)."""
    from pydantic import ValidationError

    if importlib.util.find_spec("pyarrow") is None:
        print("codegym export-verl: needs pyarrow, which comes with the rl extra: pip install -e '.[rl]' "
              "(on CPU: pip install torch==2.13.0 first)", file=sys.stderr)
        return 2
    try:
        system_prompt = DEFAULT_SYSTEM_PROMPT
        if args.system_prompt:
            system_prompt = Path(args.system_prompt).read_text(encoding="utf-8").strip()
            if not system_prompt:
                raise ValueError(f"{args.system_prompt}: the system prompt file is empty")
        options = ExportOptions(bank=args.bank, out=args.out, val_fraction=args.val_fraction, split_by=args.split_by,
                                salt=args.salt, gyms=args.gyms, include_unverified=args.include_unverified,
                                system_prompt=system_prompt)
        report = export(options)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        print(f"codegym export-verl: {problems}", file=sys.stderr)
        return 2
    except (BankError, ValueError, OSError) as exc:
        print(f"codegym export-verl: {exc}", file=sys.stderr)
        return 2
    print(f"exported {report.train_rows} train / {report.val_rows} val rows from {report.gyms} gym(s) of "
          f"{report.bank} (digest {report.bank_digest})\n  {report.train_file}\n  {report.val_file}")
    for gym_id, why in report.skipped_gyms.items():
        print(f"  skipped {gym_id}: {why}")
    return 0
