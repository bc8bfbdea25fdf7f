"""Outputs of an evaluation: ``trajectories.jsonl``, ``results.json``, ``report.md`` and ``report.png``.

Every file is written atomically (a temp file in the same folder, then a rename), so a reader never
sees half a file. ``trajectories.jsonl`` is the source of truth: the other three are derived from it
and can be rebuilt with :func:`write_reports` (``codegym eval report DIR`` does that).

- ``trajectories.jsonl``: one :class:`~eval.records.EpisodeRecord` per line, in the order episodes
  finished. While a run is in progress it grows as ``trajectories.jsonl.partial`` (flushed per line),
  renamed at the end of the run — also on Ctrl-C, so what finished is kept.
- ``results.json``: the run's configuration (never an API key), timings, whether it was interrupted, and
  :class:`~eval.metrics.Summary` overall, per gym, per difficulty and per (gym, difficulty).
- ``report.md``: the same as tables, for people.
- ``report.png``: success rate by difficulty, and the distribution of tool calls next to the oracle's.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from mcp_gyms.constants import DIFFICULTIES
from mcp_gyms.files import atomic_write

from .metrics import Summary, group_summaries, summarise
from .records import EpisodeRecord

__all__ = [
    "TrajectoryWriter",
    "build_results",
    "read_trajectories",
    "render_markdown",
    "render_table",
    "write_plot",
    "write_reports",
]

RESULTS_FORMAT = "codegym-eval-results/1"
TRAJECTORIES = "trajectories.jsonl"


class TrajectoryWriter:
    """Appends records to ``DIR/trajectories.jsonl.partial`` as episodes finish; :meth:`close` renames it
    to ``trajectories.jsonl``. Usable as a context manager (closing also on errors and Ctrl-C)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.final = out_dir / TRAJECTORIES
        self.partial = out_dir / (TRAJECTORIES + ".partial")
        self._fh: IO[str] | None = None
        self.count = 0

    def __enter__(self) -> TrajectoryWriter:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._fh = self.partial.open("w", encoding="utf-8")
        return self

    def write(self, record: EpisodeRecord) -> None:
        if self._fh is None:
            raise RuntimeError("TrajectoryWriter is not open")
        self._fh.write(record.model_dump_json() + "\n")
        self._fh.flush()
        self.count += 1

    def close(self) -> None:
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.replace(self.partial, self.final)

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_trajectories(path: Path) -> list[EpisodeRecord]:
    """Read ``trajectories.jsonl`` (or a folder holding it). Raises ``ValueError`` naming a bad line."""
    path = Path(path)
    if path.is_dir():
        path = path / TRAJECTORIES
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(EpisodeRecord.model_validate_json(line))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(record)"
            raise ValueError(f"{path}:{number}: not an episode record ({where}: {first['msg']})") from None
    return records


# --- results ----------------------------------------------------------------------------------------
def build_results(records: Sequence[EpisodeRecord], config: dict[str, Any], *, started_at: str = "",
                  finished_at: str = "", wall_s: float = 0.0, interrupted: bool = False,
                  expected: int | None = None, ks: Iterable[int] | None = None,
                  error: str | None = None) -> dict[str, Any]:
    """The content of ``results.json``."""
    ks = list(ks) if ks is not None else None
    by_gd: dict[str, dict[str, Any]] = {}
    for gym, _ in group_summaries(records, "gym", ks).items():
        subset = [r for r in records if r.gym == gym]
        by_gd[gym] = {d: s.model_dump(mode="json")
                      for d, s in group_summaries(subset, "difficulty", ks, DIFFICULTIES).items()}
    return {
        "format": RESULTS_FORMAT,
        "config": config,
        "started_at": started_at,
        "finished_at": finished_at,
        "wall_s": round(wall_s, 3),
        "interrupted": interrupted,
        "error": error,
        "episodes_expected": expected if expected is not None else len(records),
        "episodes_finished": len(records),
        "overall": summarise(records, ks).model_dump(mode="json"),
        "by_gym": {k: v.model_dump(mode="json") for k, v in group_summaries(records, "gym", ks).items()},
        "by_difficulty": {k: v.model_dump(mode="json")
                          for k, v in group_summaries(records, "difficulty", ks, DIFFICULTIES).items()},
        "by_gym_difficulty": by_gd,
    }


# --- tables -----------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _rows(groups: dict[str, Summary], label: str) -> tuple[list[str], list[list[str]]]:
    ks: list[str] = []
    for s in groups.values():
        ks.extend(k for k in s.pass_at_k if k not in ks)
    ks.sort(key=int)
    header = [label, "episodes", "success", *[f"pass@{k}" for k in ks if k != "1"],
              *[f"pass^{k}" for k in ks if k != "1"], "calls", "oracle", "calls/oracle", "invalid", "tool err"]
    rows = []
    for name, s in groups.items():
        rows.append([name, str(s.episodes), _pct(s.success_rate),
                     *[_pct(s.pass_at_k.get(k)) for k in ks if k != "1"],
                     *[_pct(s.pass_hat_k.get(k)) for k in ks if k != "1"],
                     _num(s.mean_tool_calls), _num(s.mean_oracle_steps), _num(s.calls_over_oracle, 2),
                     _pct(s.invalid_call_rate), _pct(s.tool_error_rate)])
    return header, rows


def render_table(groups: dict[str, Summary], label: str, *, markdown: bool = True) -> str:
    """A table of summaries, one row per group: Markdown, or aligned plain text for a terminal."""
    header, rows = _rows(groups, label)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(header, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for r in rows:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def render_markdown(records: Sequence[EpisodeRecord], results: dict[str, Any], plot_name: str | None) -> str:
    """The content of ``report.md``."""
    cfg = results.get("config", {})
    overall = summarise(records)
    lines = [f"# Evaluation: {cfg.get('policy', '?')}" + (f" ({cfg['model']})" if cfg.get("model") else ""), ""]
    if results.get("error"):
        lines += [f"**Stopped by an error**: {results['error']}", ""]
    if results.get("interrupted"):
        lines += [f"**Interrupted**: {results['episodes_finished']} of {results['episodes_expected']} episodes "
                  "finished; the numbers below cover the finished ones only.", ""]
    facts = [("gyms from", cfg.get("server") or cfg.get("bank") or "the bundled bank"), ("policy", cfg.get("policy", "-")),
             ("model", cfg.get("model") or "-"), ("samples per task (k)", str(cfg.get("k", "-"))),
             ("split", cfg.get("split") or "all"), ("episodes", f"{len(records)}"),
             ("wall time", f"{results.get('wall_s', 0):.1f} s"),
             ("tokens (prompt / completion)", f"{overall.prompt_tokens:,} / {overall.completion_tokens:,}")]
    lines += ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in facts], ""]
    lines += ["## Overall", "", render_table({"all": overall}, ""), ""]
    lines += ["## By difficulty", "", render_table(group_summaries(records, "difficulty", None, DIFFICULTIES),
                                                   "difficulty"), ""]
    lines += ["## By gym", "", render_table(group_summaries(records, "gym"), "gym"), ""]
    lines += ["## How episodes ended", "", "| reason | episodes |", "|---|---|"]
    lines += [f"| {reason} | {count} |" for reason, count in overall.reasons.items()]
    lines += ["", "Columns: *success* = episodes with reward 1; *pass@k* = chance that at least one of k samples "
              "succeeds (unbiased estimator); *pass^k* = chance that all k succeed; *calls* = mean tool calls per "
              "episode; *oracle* = mean oracle steps of the same tasks; *calls/oracle* = mean ratio over successful "
              "episodes; *invalid* = malformed, unknown-tool or schema-violating calls / calls; *tool err* = calls "
              "that failed inside the gym / calls.", ""]
    if plot_name:
        lines += [f"![success by difficulty and tool calls]({plot_name})", ""]
    return "\n".join(lines)


# --- plot -------------------------------------------------------------------------------------------
def write_plot(records: Sequence[EpisodeRecord], path: Path, title: str = "") -> bool:
    """Write the PNG (success by difficulty; tool calls vs oracle steps). False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    groups = group_summaries(records, "difficulty", None, DIFFICULTIES)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = list(groups) or ["-"]
    rates = [100 * groups[n].success_rate for n in groups] or [0.0]
    bars = ax1.bar(names, rates, color="#4C72B0")
    for bar, n in zip(bars, groups):
        ax1.annotate(f"{groups[n].successes}/{groups[n].episodes}", (bar.get_x() + bar.get_width() / 2,
                     bar.get_height()), ha="center", va="bottom", fontsize=9)
    ax1.set_ylim(0, 112)
    ax1.set_ylabel("success rate (%)")
    ax1.set_title("Success by difficulty")
    calls = [r.tool_calls for r in records]
    oracle = [r.oracle_steps for r in records if r.oracle_steps is not None]
    top = max([*calls, *oracle, 1])
    bins = min(40, max(5, top // 4 + 1))
    ax2.hist(calls, bins=bins, range=(0, top), alpha=0.7, label="policy", color="#4C72B0")
    if oracle:
        ax2.hist(oracle, bins=bins, range=(0, top), alpha=0.5, label="oracle", color="#DD8452")
    ax2.set_xlabel("tool calls per episode")
    ax2.set_ylabel("episodes")
    ax2.set_title("Tool calls")
    ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=100)
    finally:
        plt.close(fig)
    atomic_write(path, png.getvalue())
    return True


def write_reports(out_dir: Path, records: Sequence[EpisodeRecord], config: dict[str, Any], **timing: Any) -> dict[str, Any]:
    """Write ``results.json``, ``report.md`` and ``report.png`` for ``records``; return the results."""
    out_dir = Path(out_dir)
    results = build_results(records, config, **timing)
    label = f"{config.get('policy', '')}" + (f" / {config['model']}" if config.get("model") else "")
    plotted = write_plot(records, out_dir / "report.png", label)
    atomic_write(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write(out_dir / "report.md", render_markdown(records, results, "report.png" if plotted else None))
    return results
