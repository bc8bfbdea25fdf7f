"""Serving capacity measured with a native load generator: the bare MCP SDK server vs ``codegym serve --http``.

The Python-client benchmark (``bench_serving.py``) is what eval and rl see, but its client costs more CPU
per call than either server, so it measures the client. Here the load comes from ``wrk`` (C, with
``benchmarks/wrk_tools_call.lua``), which costs a few microseconds per request:

- The servers run at once, each its own process on 127.0.0.1: **(a)** ``benchmarks/bare_server.py`` (the
  SDK's low-level server, one tool answering a constant: the protocol stack's ceiling), **(b)**
  ``codegym serve mountain_peak --http`` as shipped (every call in a sandbox worker, with trial then
  overwrite; the call answered by codegym's hot path, ``mcp_gyms/hot_path.py``) and **(c)** the same with
  ``--no-hot-path`` (every request through the SDK's streamable-HTTP path, as (a) does).
- 3,000 episodes are started on (b) and (c) beforehand with ``codegym/episodes/start``; every request is an
  MCP 2026-07-28 ``tools/call`` of ``Height(position)`` naming the next handle in ``_meta``, so every call
  does real work on a live episode (the bare server gets the same bytes). Every response is checked: HTTP
  200, ``"isError":false``, ``structuredContent`` with an integer observation and no error. A run with any
  bad response or socket error is reported as FAILED (exit status 1).
- After a warm-up, the servers are measured in turn, the order reversed every round, ``--seconds`` each,
  64 connections: calls/s, the server side's CPU per call (server process + its sandbox workers, from /proc)
  and wrk's p50/p99 latency. CPU per call is the figure to read on a busy machine: calls/s moves with
  whatever else runs, CPU per call much less.

Run it with one command (about 2 minutes; ``make bench-deps`` installs wrk where it is missing)::

    python benchmarks/bench_native.py [--rounds 3] [--seconds 8] [--no-sdk-path] [--compare old=../checkout]

``--compare LABEL=CHECKOUT`` adds ``codegym serve`` from another checkout of this project as one more server
(an A/B of two versions in one run). Results: ``benchmarks/results/serving_native.json`` and the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import CpuMeter, Figure, save, spawn_server  # noqa: E402
from mcp_gyms.client import GymConnection, connect  # noqa: E402

GYM = "mountain_peak"
HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "wrk_tools_call.lua"
PY = sys.executable
BARE = [PY, "benchmarks/bare_server.py", "--port", "0"]
SERVE = ["serve", GYM, "--http", "--port", "0", "--max-episodes", "10000"]


@dataclass
class Server:
    """One server under test: how to start it, where its MCP endpoint is, and its runs."""

    label: str
    command: list[str]
    path: str
    episodes: bool = True  # False: the bare server (no episodes: the handles are sent but not used)
    runs: list[dict[str, float]] = field(default_factory=list)
    bad: int = 0
    first_bad: str = ""

    def figure(self, key: str, unit: str) -> Figure:
        return Figure(f"{self.label}: {key}", unit, [r[key] for r in self.runs])


def codegym_server(label: str, checkout: Path | None = None, extra: tuple[str, ...] = ()) -> Server:
    """``codegym serve --http`` of this checkout, or of ``checkout`` (its ``mcp_gyms`` first on sys.path), as
    one server process (``--procs 1`` where the checkout has that option): this measures the cost of a call
    in one process; how capacity grows with processes is another measurement. ``extra``: more options."""
    boot = "import sys; from mcp_gyms.cli import main; sys.exit(main())"
    if checkout is not None:
        boot = f"import sys; sys.path.insert(0, {str(checkout)!r}); " + boot
    server_py = (checkout or HERE.parent) / "mcp_gyms" / "server.py"
    procs = ["--procs", "1"] if '"--procs"' in server_py.read_text() else []
    return Server(label, [PY, "-c", boot, *SERVE, *procs, *extra], f"/gyms/{GYM}/mcp")


async def start_episodes(url: str, n: int) -> list[str]:
    """Start ``n`` episodes on the server at ``url`` (256 requests at a time); return their handles."""
    handles: list[str] = []
    limiter = anyio.CapacityLimiter(256)

    async def one(gym: GymConnection) -> None:
        async with limiter:
            episode = await gym.start()
            assert episode.handle is not None
            handles.append(episode.handle)

    async with connect(url, request_timeout=120) as gym, anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one, gym)
    return handles


def run_wrk(url: str, handles: Path, seconds: float, connections: int, threads: int) -> tuple[dict[str, Any], float]:
    """One wrk run; returns (its NATIVE_RESULT record, wrk's own CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([shutil.which("wrk") or "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
                           "-s", str(SCRIPT), url], capture_output=True, text=True,
                          env={"HANDLES_FILE": str(handles), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("NATIVE_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (status {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(line.removeprefix("NATIVE_RESULT ")), cpu


def measure(server: Server, url: str, meter: CpuMeter, handles: Path, args: argparse.Namespace) -> str:
    """One timed run of ``server``; appends its figures; returns a one-line summary."""
    meter.mark()
    out, wrk_cpu = run_wrk(url, handles, args.seconds, args.connections, args.threads)
    host, workers = meter.read()
    calls = max(out["requests"], 1)
    failed = out["bad"] + out["socket_errors"] + out["status_errors"]
    server.bad += failed
    server.first_bad = server.first_bad or out["first_bad"]
    server.runs.append({
        "calls_s": out["requests"] / (out["duration_us"] / 1e6), "cpu_ms": (host + workers) / calls * 1e3,
        "host_ms": host / calls * 1e3, "workers_ms": workers / calls * 1e3, "wrk_ms": wrk_cpu / calls * 1e3,
        "p50_ms": out["p50_us"] / 1e3, "p99_ms": out["p99_us"] / 1e3, "calls": out["requests"], "bad": failed})
    r = server.runs[-1]
    return (f"{server.label:>22}: {r['calls_s']:7,.0f} calls/s  {r['cpu_ms']:.3f} ms CPU/call "
            f"(host {r['host_ms']:.3f}, workers {r['workers_ms']:.3f})  p50 {r['p50_ms']:.1f} ms  "
            f"p99 {r['p99_ms']:.1f} ms  bad {failed}")


def fmt(fig: Figure, digits: int = 0) -> str:
    return f"{fig.median:,.{digits}f} ({min(fig.runs):,.{digits}f}–{max(fig.runs):,.{digits}f})"


def main(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("bench_native: `wrk` is not installed; run `make bench-deps` (Debian/Ubuntu: apt-get install wrk)",
              file=sys.stderr)
        return 2
    servers = [Server("(a) bare SDK", BARE, "/mcp", episodes=False), codegym_server("(b) codegym")]
    if not args.no_sdk_path:
        servers.append(codegym_server("(c) codegym, SDK path", extra=("--no-hot-path",)))
    for spec in args.compare:
        label, _, checkout = spec.partition("=")
        if not label or not checkout or not (Path(checkout) / "mcp_gyms" / "server.py").is_file():
            print(f"bench_native: --compare {spec!r}: expected LABEL=CHECKOUT, a checkout of this project",
                  file=sys.stderr)
            return 2
        servers.append(codegym_server(f"(d) codegym {label}", Path(checkout).resolve()))
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-native-") as tmp:
        live: list[tuple[Server, str, CpuMeter, Path]] = []
        for server in servers:
            proc, url = stack.enter_context(spawn_server(server.command))
            base = url.split("/gyms/")[0].removesuffix("/mcp")
            started = time.perf_counter()
            if server.episodes:
                handles = anyio.run(start_episodes, base + server.path, args.episodes)
            else:
                handles = [secrets.token_urlsafe(18) for _ in range(args.episodes)]
            print(f"{server.label}: {len(handles)} episodes started in {time.perf_counter() - started:.1f} s",
                  flush=True)
            path = Path(tmp) / f"handles-{len(live)}.txt"
            path.write_text("\n".join(handles) + "\n")
            live.append((server, base + server.path, CpuMeter(proc.pid), path))
        for server, url, _, handles in live:  # warm-up: imports, first calls, the interpreter's caches
            out, _ = run_wrk(url, handles, args.warmup, args.connections, args.threads)
            server.bad += out["bad"] + out["socket_errors"] + out["status_errors"]
            server.first_bad = server.first_bad or out["first_bad"]
        for r in range(args.rounds):
            order = live if r % 2 == 0 else live[::-1]
            for server, url, meter, handles in order:
                print(f"round {r + 1}: " + measure(server, url, meter, handles, args), flush=True)
    return report(servers, args)


def report(servers: list[Server], args: argparse.Namespace) -> int:
    """Print and save the table; return 1 when any response was bad."""
    bare = servers[0]
    rows: list[tuple[str, ...]] = [("server", "calls/s", "server CPU ms/call (host + workers)", "host ms/call",
                                    "workers ms/call", "p50 ms", "p99 ms", "bad responses",
                                    "CPU/call vs bare", "calls/s vs bare")]
    figures: list[Figure] = []
    summary: dict[str, Any] = {}
    for s in servers:
        calls, cpu = s.figure("calls_s", "calls/s"), s.figure("cpu_ms", "ms")
        cpu_ratio = Figure(f"{s.label}: CPU per call / bare's", "x",
                           [x["cpu_ms"] / y["cpu_ms"] for x, y in zip(s.runs, bare.runs)])
        rate_ratio = Figure(f"{s.label}: calls/s / bare's", "x",
                            [x["calls_s"] / y["calls_s"] for x, y in zip(s.runs, bare.runs)])
        figs = [calls, cpu, s.figure("host_ms", "ms"), s.figure("workers_ms", "ms"), s.figure("p50_ms", "ms"),
                s.figure("p99_ms", "ms"), s.figure("wrk_ms", "ms")]
        figures += figs + ([cpu_ratio, rate_ratio] if s is not bare else [])
        total = sum(int(r["calls"]) for r in s.runs)
        rows.append((s.label, fmt(calls), fmt(cpu, 3), fmt(figs[2], 3), fmt(figs[3], 3), fmt(figs[4], 1),
                     fmt(figs[5], 1), f"{s.bad} of {total:,}", "" if s is bare else fmt(cpu_ratio, 2),
                     "" if s is bare else fmt(rate_ratio, 2)))
        summary[s.label] = {"calls_s": calls.median, "cpu_ms": cpu.median, "host_ms": figs[2].median,
                            "workers_ms": figs[3].median, "p50_ms": figs[4].median, "p99_ms": figs[5].median,
                            "bad": s.bad, "first_bad": s.first_bad, "wrk_cpu_ms": figs[6].median,
                            "cpu_vs_bare": None if s is bare else cpu_ratio.median,
                            "calls_vs_bare": None if s is bare else rate_ratio.median}
    failed = [s.label for s in servers if s.bad]
    notes = (f"wrk, {args.threads} threads, {args.connections} connections, {args.rounds} alternating runs of "
             f"{args.seconds:g} s per server after a {args.warmup:g} s warm-up; {args.episodes:,} episode handles "
             f"in rotation; MCP 2026-07-28 tools/call Height(position) on gym {GYM}, JSON responses. Server CPU = "
             "the server process + its sandbox workers (from /proc). Target: codegym's CPU per call "
             "<= 1.4x the bare SDK server's."
             + (f" FAILED: bad responses from {', '.join(failed)} (first: "
                f"{next((s.first_bad for s in servers if s.first_bad), '')[:200]})" if failed else ""))
    save("serving_native", "Serving with a native load generator (wrk): bare MCP SDK server vs codegym", rows,
         figures, notes=notes, extra={"summary": summary, "failed": failed,
                                      "settings": {k: v for k, v in vars(args).items()}})
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_REPEATS", "3")),
                        help="alternating timed runs per server (default: $BENCH_REPEATS, else 3)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one timed run (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed warm-up per server (default 2)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=3000, help="episode handles in rotation (default 3000)")
    parser.add_argument("--no-sdk-path", action="store_true",
                        help="leave out (c), codegym with --no-hot-path (every call through the MCP SDK's path)")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=CHECKOUT",
                        help="also serve codegym from another checkout of this project (repeatable)")
    sys.exit(main(parser.parse_args()))
