"""Shared helpers for the benchmarks: machine facts, repeated timing, result files.

Every benchmark is a script that prints a table and writes ``benchmarks/results/<name>.json``;
``run_all.py`` runs them and assembles ``benchmarks/RESULTS.md``. Figures are medians of >= 5 runs
with min-max, and every comparison is made side by side in the same run, as a ratio.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def machine() -> dict[str, Any]:
    """Cores, memory, Python, date: the context every figure needs."""
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


@dataclass
class Figure:
    """A measured quantity: the median of repeated runs, with min and max."""

    name: str
    unit: str
    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def text(self, digits: int = 1) -> str:
        return f"{self.median:,.{digits}f} {self.unit} ({min(self.runs):,.{digits}f}–{max(self.runs):,.{digits}f})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median": self.median, "min": min(self.runs), "max": max(self.runs)}


def repeat(fn: Callable[[], float], name: str, unit: str, repeats: int = REPEATS) -> Figure:
    """Run ``fn`` (which returns one measurement) ``repeats`` times."""
    figure = Figure(name, unit)
    for _ in range(repeats):
        figure.runs.append(fn())
    return figure


async def repeat_async(fn: Callable[[], Awaitable[float]], name: str, unit: str, repeats: int = REPEATS) -> Figure:
    figure = Figure(name, unit)
    for _ in range(repeats):
        figure.runs.append(await fn())
    return figure


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def print_table(title: str, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n## {title}\n")
    for n, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


def save(name: str, title: str, rows: list[tuple[str, ...]], figures: list[Figure], notes: str = "",
         extra: dict[str, Any] | None = None) -> None:
    """Print the table and write results/<name>.json (read by run_all.py for RESULTS.md)."""
    print_table(title, rows)
    if notes:
        print(f"\n{notes}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "title": title, "machine": machine(), "rows": rows,
               "figures": [f.to_dict() for f in figures], "notes": notes, **(extra or {})}
    tmp = RESULTS_DIR / f".{name}.json.tmp"
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(RESULTS_DIR / f"{name}.json")
