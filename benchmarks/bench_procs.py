"""Does capacity grow with server processes? ``codegym serve --http --procs N`` under a native load generator.

``--procs N`` serves one bank from N full server processes on N ports (see ``mcp_gyms/procs.py``). This
benchmark serves ``mountain_peak`` with each N of ``--procs-list`` (default 1 and 2), starts 3,000 episodes
spread evenly over the N ports, and loads every port at once with its own ``wrk`` (the same Lua script and
response checks as ``bench_native.py``; the connections are split over the ports). The configurations are
measured alternately, ``--rounds`` times. Reported: total calls/s, server CPU per call (every server process
and its sandbox workers), p50/p99, and calls/s against one process.

On a 2-core machine the load generator and the sandbox workers share the cores with the servers, so the
ceiling is the machine: the target is 2 processes >= 1.3x the calls/s of one.

    python benchmarks/bench_procs.py [--procs-list 1,2,4] [--rounds 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_native import GYM, run_wrk, start_episodes  # noqa: E402
from benchmarks.common import ROOT, CpuMeter, Figure, save  # noqa: E402
from mcp_gyms.ready import ReadyInfo  # noqa: E402


@contextlib.contextmanager
def serve(procs: int, ready_file: Path, timeout: float = 120.0) -> Any:
    """``codegym serve GYM --http --procs N`` until the block ends; yields (process, ReadyInfo)."""
    command = [sys.executable, "-m", "mcp_gyms.server", GYM, "--http", "--port", "0", "--procs", str(procs),
               "--max-episodes", "10000", "--ready-file", str(ready_file)]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.monotonic() + timeout
        while (ready := ReadyInfo.read(ready_file)) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"codegym serve --procs {procs} did not start (status {proc.poll()})")
            time.sleep(0.1)
        yield proc, ready
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(urls: list[str], handle_files: list[Path], meter: CpuMeter,
            args: argparse.Namespace) -> dict[str, float]:
    """One timed run: a wrk per port, all at once; the totals."""
    connections = max(1, args.connections // len(urls))
    meter.mark()
    with ThreadPoolExecutor(len(urls)) as pool:
        outs = list(pool.map(lambda job: run_wrk(job[0], job[1], args.seconds, connections, 1),
                             zip(urls, handle_files)))
    host, workers = meter.read()
    calls = sum(out["requests"] for out, _ in outs)
    seconds = max(out["duration_us"] for out, _ in outs) / 1e6
    bad = sum(out["bad"] + out["socket_errors"] + out["status_errors"] for out, _ in outs)
    return {"calls_s": calls / seconds, "cpu_ms": (host + workers) / max(calls, 1) * 1e3,
            "p50_ms": sum(out["p50_us"] for out, _ in outs) / len(outs) / 1e3,
            "p99_ms": max(out["p99_us"] for out, _ in outs) / 1e3, "calls": calls, "bad": bad}


def main(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("bench_procs: `wrk` is not installed; run `make bench-deps`", file=sys.stderr)
        return 2
    counts = [int(n) for n in args.procs_list.split(",")]
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-procs-") as tmp:
        live = []
        for n in counts:
            proc, ready = stack.enter_context(serve(n, Path(tmp) / f"ready-{n}.json"))
            urls = [f"{url}/gyms/{GYM}/mcp" for url in ready.urls]
            files = []
            for i, url in enumerate(urls):
                handles = anyio.run(start_episodes, url, args.episodes // len(urls))
                path = Path(tmp) / f"handles-{n}-{i}.txt"
                path.write_text("\n".join(handles) + "\n")
                files.append(path)
            print(f"--procs {n}: {len(urls)} port(s), {args.episodes} episodes started", flush=True)
            live.append((n, urls, files, CpuMeter(proc.pid)))
        for _, urls, files, _ in live:  # warm-up
            for url, path in zip(urls, files):
                run_wrk(url, path, args.warmup, max(1, args.connections // len(urls)), 1)
        for r in range(args.rounds):
            for n, urls, files, meter in live if r % 2 == 0 else live[::-1]:
                result = measure(urls, files, meter, args)
                runs[n].append(result)
                print(f"round {r + 1}: --procs {n}: {result['calls_s']:7,.0f} calls/s  {result['cpu_ms']:.3f} ms "
                      f"CPU/call  p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  bad {result['bad']}",
                      flush=True)
    return report(counts, runs, args)


def report(counts: list[int], runs: dict[int, list[dict[str, float]]], args: argparse.Namespace) -> int:
    one = runs[counts[0]]
    rows: list[tuple[str, ...]] = [("server processes", "calls/s", "server CPU ms/call", "p50 ms", "p99 ms",
                                    f"calls/s vs --procs {counts[0]}", "bad responses")]
    figures: list[Figure] = []
    summary: dict[str, Any] = {}
    for n in counts:
        figs = [Figure(f"--procs {n}: {key}", unit, [r[key] for r in runs[n]])
                for key, unit in (("calls_s", "calls/s"), ("cpu_ms", "ms"), ("p50_ms", "ms"), ("p99_ms", "ms"))]
        ratio = Figure(f"--procs {n}: calls/s / --procs {counts[0]}'s", "x",
                       [x["calls_s"] / y["calls_s"] for x, y in zip(runs[n], one)])
        bad = sum(int(r["bad"]) for r in runs[n])
        figures += [*figs, ratio]
        rows.append((str(n), f"{figs[0].median:,.0f}", f"{figs[1].median:.3f}", f"{figs[2].median:.1f}",
                     f"{figs[3].median:.1f}", f"{ratio.median:.2f} ({min(ratio.runs):.2f}–{max(ratio.runs):.2f})",
                     f"{bad} of {sum(int(r['calls']) for r in runs[n]):,}"))
        summary[str(n)] = {"calls_s": figs[0].median, "cpu_ms": figs[1].median, "ratio": ratio.median, "bad": bad}
    failed = any(s["bad"] for s in summary.values())
    notes = (f"wrk per port, {args.connections} connections in all, {args.rounds} alternating runs of "
             f"{args.seconds:g} s after a {args.warmup:g} s warm-up; {args.episodes:,} episodes spread over the "
             f"ports; tools/call Height on {GYM}. {os.cpu_count()} CPU(s), shared by wrk, the servers and their "
             "sandbox workers. Target: 2 processes >= 1.3x the calls/s of one."
             + (" FAILED: bad responses." if failed else ""))
    save("serving_procs", "Serving from several processes (--procs N), native load generator", rows, figures,
         notes=notes, extra={"summary": summary, "settings": vars(args)})
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs-list", default="1,2", help="server process counts to compare (default 1,2)")
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_REPEATS", "3")))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=3000)
    sys.exit(main(parser.parse_args()))
