"""Progress of a synthesis run, per stage: tqdm bars on a terminal, periodic plain lines in a log.

Each stage counts the problems that reached it, passed it and were dropped by it. On a terminal,
one tqdm bar per stage (its total grows as problems reach the stage); otherwise (CI, ``| tee``) one
line with every stage's counts at most every ``interval_s`` seconds, and a last one at the end, so
logs stay readable. Disabled, or without tqdm on a terminal, it only counts.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from .state import ProblemState

__all__ = ["StageProgress"]


class StageProgress:
    def __init__(self, stages: tuple[str, ...], enabled: bool, stream: TextIO | None = None,
                 interval_s: float = 10.0) -> None:
        self.stages = stages
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval_s = interval_s
        self.counts = {s: {"reached": 0, "passed": 0, "dropped": 0} for s in stages}
        self.bars: dict[str, Any] = {}
        self._last_line = time.monotonic()
        if not enabled or not self.stream.isatty():
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        width = max(len(s) for s in stages)
        for position, stage in enumerate(stages):
            self.bars[stage] = tqdm(total=0, desc=stage.ljust(width), position=position, unit="problem",
                                    dynamic_ncols=True, leave=True, file=self.stream)

    def reached(self, stage: str) -> None:
        """A problem entered ``stage``."""
        self.counts[stage]["reached"] += 1
        bar = self.bars.get(stage)
        if bar is not None:
            bar.total += 1  # drawn at the next update

    def finished(self, stage: str, passed: bool) -> None:
        """A problem left ``stage``, passed or dropped."""
        counts = self.counts[stage]
        counts["passed" if passed else "dropped"] += 1
        bar = self.bars.get(stage)
        if bar is not None:
            bar.set_postfix_str(f"passed {counts['passed']}, dropped {counts['dropped']}", refresh=False)
            bar.update(1)
        elif self.enabled and time.monotonic() - self._last_line >= self.interval_s:
            self._line()

    def replay(self, state: ProblemState) -> None:
        """Count a problem's stored results (a resumed run starts where the last one stopped)."""
        self.reached(self.stages[0])
        for index, stage in enumerate(self.stages):
            result = state.results.get(stage)
            if result is None:
                return
            self.finished(stage, result.passed)
            if not result.passed:
                return
            if index + 1 < len(self.stages):
                self.reached(self.stages[index + 1])

    def line(self) -> str:
        """Every stage's counts on one line: ``tests 120/201 (3 dropped) | gym 50/117 ...``."""
        parts = []
        for stage, c in self.counts.items():
            done = c["passed"] + c["dropped"]
            parts.append(f"{stage} {done}/{c['reached']}" + (f" ({c['dropped']} dropped)" if c["dropped"] else ""))
        return "progress: " + " | ".join(parts)

    def _line(self) -> None:
        self._last_line = time.monotonic()
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if self.enabled and not self.bars:
            self._line()
