"""Shared helpers for the benchmarks: machine facts, repeated timing, result files.

Every benchmark is a script that prints a table and writes ``benchmarks/results/<name>.json``;
``run_all.py`` runs them and assembles ``benchmarks/RESULTS.md``. Figures are medians of >= 5 runs
with min-max, and every comparison is made side by side in the same run, as a ratio.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPEATS = max(1, int(os.environ.get("BENCH_REPEATS", "5")))
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


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
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


# --- processes -------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(p) for p in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (a server's fork server and the sandbox workers it started)."""
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def sandbox_workers(pid: int) -> list[int]:
    """The sandbox workers of server process ``pid``: the processes its fork server (the zygote, a child
    of the server) started."""
    return [worker for zygote in children(pid) for worker in descendants(zygote)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except OSError:
        return 0


class CpuMeter:
    """CPU seconds of a server process and of its descendants (sandbox workers), between two marks.

    Workers that die during the interval lose what they used since the last mark, so call
    :meth:`mark` right before the interval."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start: dict[int, float] = {}

    def _now(self) -> dict[int, float]:
        return {p: cpu_seconds(p) for p in [self.pid, *descendants(self.pid)]}

    def mark(self) -> None:
        self._start = self._now()

    def read(self) -> tuple[float, float]:
        """(server process CPU s, descendants' CPU s) since :meth:`mark`."""
        now = self._now()
        server = now.pop(self.pid, 0.0) - self._start.get(self.pid, 0.0)
        workers = sum(v - self._start.get(p, 0.0) for p, v in now.items())
        return server, workers


@contextlib.contextmanager
def spawn_server(command: list[str], ready: str = r"serving .*?on (http://\S+)",
                 timeout: float = 60.0) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run a server command (its own process, on 127.0.0.1) until the block ends; yield (process, URL).

    The URL is the first group of ``ready`` matched on the server's stderr. The server is stopped with
    SIGTERM (then SIGKILL) when the block exits."""
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stderr is not None
    try:
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(ready, line)
            if match:
                url = match.group(1)
        if url is None:
            raise RuntimeError(f"the server did not start: {' '.join(command)}\n{''.join(seen)}")
        # keep draining stderr so a chatty server cannot block on a full pipe
        drain = subprocess.Popen(["cat"], stdin=proc.stderr, stdout=subprocess.DEVNULL)
        try:
            yield proc, url
        finally:
            _stop(proc)
            drain.wait(timeout=10)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def listen_socket(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 set up as the gym server's own (see ``mcp_gyms.http_service``):
    IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections, and a deep backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


#: uvicorn settings shared by the benchmark's helper servers, as ``mcp_gyms.http_service.uvicorn_config`` has
#: them (keep-alive longer than the client's, so no request meets a connection being closed).
UVICORN = {"log_level": "warning", "lifespan": "on", "ws": "none", "timeout_graceful_shutdown": 2,
           "timeout_keep_alive": 75}


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values (nearest rank)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values))) - 1))]


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
    """Await ``fn`` (which returns one measurement) ``repeats`` times."""
    figure = Figure(name, unit)
    for _ in range(repeats):
        figure.runs.append(await fn())
    return figure


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn()`` took."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def print_table(title: str, rows: list[tuple[str, ...]]) -> None:
    """Print ``rows`` (the first is the header) as a Markdown table."""
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
