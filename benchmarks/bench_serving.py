"""Serving throughput and latency: a bare MCP SDK server vs ``codegym serve --http``, same client.

What runs:

- **(a)** ``benchmarks/bare_server.py``: the SDK's low-level ``Server`` whose one tool returns a constant
  (the ceiling of the protocol stack), and **(b)** ``codegym serve mountain_peak --http`` (HttpService,
  every call in a sandbox worker). Each server is **its own process** (b's sandbox workers are its
  children); the load comes from this process with the project's own MCP client
  (:func:`mcp_gyms.client.connect`, streamable HTTP on 127.0.0.1), identical for both servers.
- For each server, 2,048 episodes are started first (untimed; the bare server has no episodes, so the
  client falls back to handle-less calls); then, at 64, 512 and 2,048 concurrent episodes, every episode
  makes ``CALLS[c]`` calls of ``Height(position)`` back to back. Per run: calls/s over the timed phase,
  p50/p99 latency of one call as the client sees it, failed calls (an exception or an error result),
  and the CPU the server side burned per call (server process + sandbox workers, from /proc).
- Transport options are compared on the bare server first (64 episodes): 2026-07-28 single-exchange
  POSTs with JSON or SSE responses, and the handshake revision with sessions, stateful or stateless.

On a 2-core machine the client and the servers share the two cores (they are separate processes, but
there is no third core to give the client), and the Python MCP client costs more CPU per call than
either server. So calls/s is bounded by the client for both servers and the b/a ratio of calls/s
understates the difference between them; the server-CPU-per-call ratio is the client-independent figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import REPEATS, CpuMeter, Figure, percentile, save, spawn_server  # noqa: E402
from mcp_gyms.client import GymConnection, RemoteEpisode, connect  # noqa: E402

GYM = "mountain_peak"
CONCURRENCY = (64, 512, 2048)
CALLS = {64: 16, 512: 3, 2048: 2}  # calls per episode per run: ~1,000-4,000 calls, a few seconds each
OPTION_EPISODES = 64
OPTION_CALLS = 16
PY = sys.executable
BARE = [PY, "benchmarks/bare_server.py", "--port", "0"]
CODEGYM = [PY, "-m", "mcp_gyms.cli", "serve", GYM, "--http", "--port", "0", "--procs", "1", "--max-episodes", "10000"]


@dataclass
class Run:
    """One timed phase: calls/s, latency quantiles, failures, server CPU per call."""

    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failed: int
    server_cpu_ms: float
    worker_cpu_ms: float
    client_cpu_ms: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


@dataclass
class Series:
    """Repeated runs of one (server, concurrency)."""

    label: str
    runs: list[Run] = field(default_factory=list)

    def figure(self, name: str, unit: str, attr: str) -> Figure:
        return Figure(f"{self.label}: {name}", unit, [float(getattr(r, attr)) for r in self.runs])


async def open_episodes(gym: GymConnection, n: int) -> list[RemoteEpisode]:
    """Start ``n`` episodes, 256 requests at a time."""
    episodes: list[RemoteEpisode | None] = [None] * n
    limiter = anyio.CapacityLimiter(256)

    async def one(i: int) -> None:
        async with limiter:
            episodes[i] = await gym.start()

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return [e for e in episodes if e is not None]


async def close_episodes(episodes: list[RemoteEpisode]) -> None:
    """Close every episode that has a handle, 256 requests at a time."""
    limiter = anyio.CapacityLimiter(256)

    async def one(ep: RemoteEpisode) -> None:
        async with limiter:
            await ep.close()

    async with anyio.create_task_group() as tg:
        for ep in episodes:
            if ep.handle is not None:
                tg.start_soon(one, ep)


async def drive(episodes: list[RemoteEpisode], calls: int, meter: CpuMeter, offset: int) -> Run:
    """Every episode makes ``calls`` calls back to back, all episodes at once."""
    latencies: list[float] = []
    failed = 0

    async def play(i: int, ep: RemoteEpisode) -> None:
        nonlocal failed
        for k in range(calls):
            started = time.perf_counter()
            try:
                out = await ep.call("Height", {"position": (i + k + offset) % 40})
            except Exception:  # noqa: BLE001 - a failed call is what we count
                failed += 1
                continue
            latencies.append(time.perf_counter() - started)
            if out.error is not None:
                failed += 1

    meter.mark()
    client0 = time.process_time()
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i, ep in enumerate(episodes):
            tg.start_soon(play, i, ep)
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client0
    server_cpu, worker_cpu = meter.read()
    latencies.sort()
    n = len(episodes) * calls
    return Run(n, elapsed, percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3, failed,
               server_cpu / n * 1e3, worker_cpu / n * 1e3, client_cpu / n * 1e3)


async def measure(command: list[str], path: str, label: str, plan: dict[int, int], repeats: int,
                  mode: str = "auto") -> dict[int, Series]:
    """Start the server, open max(plan) episodes, then run each concurrency ``repeats`` times."""
    out = {c: Series(f"{label} @{c}") for c in plan}
    with spawn_server(command) as (proc, url):
        base = url.split("/gyms/")[0].removesuffix("/mcp")
        meter = CpuMeter(proc.pid)
        async with connect(base + path, mode=mode, request_timeout=120) as gym:
            episodes = await open_episodes(gym, max(plan))
            for warm in episodes[:8]:  # warm up both sides (imports, first sandbox calls)
                await warm.call("Height", {"position": 1})
            for r in range(repeats):
                for c, calls in plan.items():
                    out[c].runs.append(await drive(episodes[:c], calls, meter, offset=r))
            await close_episodes(episodes)
    return out


def fmt(fig: Figure, digits: int = 0) -> str:
    """``median (min–max)`` of a figure, without its unit (the column says it)."""
    return f"{fig.median:,.{digits}f} ({min(fig.runs):,.{digits}f}–{max(fig.runs):,.{digits}f})"


async def main(repeats: int, quick: bool) -> None:
    """Measure the transport options, then (a) vs (b) at every concurrency; print and save the tables."""
    plan = {64: CALLS[64]} if quick else dict(CALLS)
    figures: list[Figure] = []

    # 1. transport options, on the bare server
    options = [
        ("2026-07-28, JSON responses", BARE, "auto"),
        ("2026-07-28, SSE responses", [*BARE, "--sse"], "auto"),
        ("handshake + session, JSON", BARE, "legacy"),
        ("handshake, stateless HTTP, JSON", [*BARE, "--stateless"], "legacy"),
    ]
    option_rows: list[tuple[str, ...]] = [("bare SDK server, 64 episodes", "calls/s", "p50 ms", "p99 ms",
                                           "server CPU ms/call", "failed")]
    option_rates: dict[str, float] = {}
    option_cpu: dict[str, float] = {}
    for label, command, mode in options:
        series = (await measure(command, "/mcp", label, {OPTION_EPISODES: OPTION_CALLS}, repeats, mode))[OPTION_EPISODES]
        rate = series.figure("calls/s", "calls/s", "rate")
        figures += [rate, series.figure("server CPU per call", "ms", "server_cpu_ms")]
        option_rates[label] = rate.median
        option_cpu[label] = series.figure("cpu", "ms", "server_cpu_ms").median
        option_rows.append((label, fmt(rate), fmt(series.figure("p50", "ms", "p50_ms"), 1),
                            fmt(series.figure("p99", "ms", "p99_ms"), 1),
                            fmt(series.figure("cpu", "ms", "server_cpu_ms"), 2),
                            str(sum(r.failed for r in series.runs))))
    save("serving_options", "Serving: transport options of the MCP SDK (bare server)", option_rows, figures[:],
         notes="The codegym HTTP service serves 2026-07-28 requests with JSON responses (no SSE) and keeps "
               "handshake-era sessions only for clients that need them (implicit episodes).",
         extra={"rates": option_rates, "server_cpu_ms": option_cpu})

    # 2. bare SDK server vs codegym serve --http, same client, same transport (2026-07-28 + JSON)
    bare = await measure(BARE, "/mcp", "bare SDK server", plan, repeats)
    ours = await measure(CODEGYM, f"/gyms/{GYM}/mcp", "codegym serve --http", plan, repeats)
    rows: list[tuple[str, ...]] = [("episodes", "server", "calls/s", "p50 ms", "p99 ms", "server CPU ms/call",
                                    "client CPU ms/call", "failed calls", "ratio b/a (calls/s)",
                                    "ratio a/b (server CPU)")]
    summary: dict[str, Any] = {}
    main_figures: list[Figure] = []
    for c in plan:
        a, b = bare[c], ours[c]
        fa, fb = a.figure("calls/s", "calls/s", "rate"), b.figure("calls/s", "calls/s", "rate")
        cpu_a = Figure(f"{a.label}: server CPU per call", "ms", [r.server_cpu_ms for r in a.runs])
        cpu_b = Figure(f"{b.label}: server CPU per call (host + workers)", "ms",
                       [r.server_cpu_ms + r.worker_cpu_ms for r in b.runs])
        ratio = Figure(f"@{c}: calls/s b/a", "x", [rb.rate / ra.rate for ra, rb in zip(a.runs, b.runs)])
        cpu_ratio = Figure(f"@{c}: server CPU per call a/b", "x", [x / y for x, y in zip(cpu_a.runs, cpu_b.runs)])
        failed_a, failed_b = sum(r.failed for r in a.runs), sum(r.failed for r in b.runs)
        main_figures += [fa, fb, cpu_a, cpu_b, ratio, cpu_ratio,
                         a.figure("p50", "ms", "p50_ms"), a.figure("p99", "ms", "p99_ms"),
                         b.figure("p50", "ms", "p50_ms"), b.figure("p99", "ms", "p99_ms")]
        worker = Figure("w", "ms", [r.worker_cpu_ms for r in b.runs])
        client_a, client_b = a.figure("client CPU", "ms", "client_cpu_ms"), b.figure("client CPU", "ms", "client_cpu_ms")
        main_figures += [client_a, client_b]
        rows.append((str(c), "(a) bare SDK", fmt(fa), fmt(a.figure("p50", "ms", "p50_ms"), 1),
                     fmt(a.figure("p99", "ms", "p99_ms"), 1), fmt(cpu_a, 2), fmt(client_a, 2),
                     f"{failed_a} of {sum(r.calls for r in a.runs)}", "", ""))
        rows.append((str(c), "(b) codegym", fmt(fb), fmt(b.figure("p50", "ms", "p50_ms"), 1),
                     fmt(b.figure("p99", "ms", "p99_ms"), 1), f"{fmt(cpu_b, 2)} (workers {worker.median:.2f})",
                     fmt(client_b, 2), f"{failed_b} of {sum(r.calls for r in b.runs)}", fmt(ratio, 2),
                     fmt(cpu_ratio, 2)))
        summary[str(c)] = {"ratio_calls": ratio.median, "ratio_cpu": cpu_ratio.median,
                           "failed_a": failed_a, "failed_b": failed_b, "server_cpu_a": cpu_a.median,
                           "server_cpu_b": cpu_b.median, "client_cpu_a": client_a.median,
                           "client_cpu_b": client_b.median}
    save("serving", "Serving: bare MCP SDK server (a) vs codegym serve --http (b), same MCP client", rows,
         main_figures,
         notes=("Each server is its own process; the client (mcp_gyms.client, one connection, at most 64 "
                "requests out at once) runs in the benchmark process. Latency is what a call waits in all, "
                "its turn in the client included: with every episode calling back to back it is about "
                "episodes / (calls/s). Calls/s is bounded by the client on 2 cores, "
                "for both servers: read the server-CPU ratio for the cost of codegym's extra work (episode "
                "lookup, sandbox round trip, trial then overwrite). Targets: calls/s b/a >= 0.9; 2,048 "
                "episodes with no failed call."),
         extra={"summary": summary})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--quick", action="store_true", help="64 episodes only (a smoke run)")
    args = parser.parse_args()
    anyio.run(main, args.repeats, args.quick)
