"""RL-scale rollout simulation: many concurrent trajectories against gym servers.

Every trajectory is what a veRL agent loop does with a gym: start an episode, then repeat "the policy
generates (a wait drawn uniformly from 0.5–2 s), then one tool call", and close the episode. The server
is ``codegym serve mountain_peak --http`` in its own process (2 sandbox workers); the trajectories use
the project's pooled MCP client (:class:`mcp_gyms.client.GymPool`), as the RL loop does.

Per run: the **env share** (time trajectories spent waiting on the environment — episode start, tool
calls, close, as the rollout sees them, client included — over their total wall time), the calls/s the
servers sustained over the run, and p50/p99 of one call. Target: env share < 2 %.

Two modes:

- **One client process** (default, ``--procs 0``): the trajectories run in this process. The target's
  4,096 trajectories (512 prompts × 8 samples) of 40 calls ask 4,096 / 1.25 s ≈ 3,300 calls/s for 50 s,
  beyond what one Python MCP client process plus the server can carry on a 2-core machine, so the default
  run is scaled and says so: ``PROMPTS`` × 8 trajectories of ``CALLS`` calls with the same waits (the
  waits are what the env share is measured against, so they are not shortened). ``--full``: 512 prompts.
- **As veRL drives it** (``--procs P``): P agent-loop worker processes, each with its own pooled client,
  share the trajectories, against ``--servers N`` gym server processes (the pool spreads each worker's
  episodes over all N, least loaded first, as ``codegym serve --procs N`` would serve them). All workers
  start their trajectories at the same instant. ``--time-scale S`` stretches every policy wait S times,
  so the machine carries the same concurrency at 1/S of the call rate; the table then also gives the
  share **at real time**, env time over (env time + the unstretched waits), which holds while the env
  time of a call does not depend on the rate (check the servers' and workers' CPU in the table: far
  below a core each means it does). What breaks first shows as failures by kind, a long start burst,
  a p99 that grows, or a process whose CPU reaches a full core. The full run, for a quiet machine::

      python benchmarks/bench_rollout.py --procs 8 --servers 2 --trajectories 4096 --calls 40 \\
          --time-scale 8 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import REPEATS, CpuMeter, Figure, percentile, save, spawn_server  # noqa: E402
from mcp_gyms.client import GymClientError, GymPool, RemoteEpisode  # noqa: E402

GYM = "mountain_peak"
SAMPLES = 8
PROMPTS = 48  # x 8 = 384 trajectories: ~310 calls/s asked, what this 2-core machine carries unsaturated
CALLS = 40  # the target's 40 calls per trajectory; only the number of trajectories is scaled
WAIT_S = (0.5, 2.0)
COMMAND = [sys.executable, "-m", "mcp_gyms.cli", "serve", GYM, "--http", "--port", "0", "--procs", "1",
           "--max-episodes", "10000"]

Start = Callable[[int, int], Awaitable[RemoteEpisode]]


async def rollout(start: Start, trajectories: list[tuple[int, int]], calls: int, seed: int,
                  time_scale: float = 1.0) -> dict[str, Any]:
    """Run ``trajectories`` ((prompt, sample) pairs) at once; return the raw timings (see :func:`summary`).
    Times are ``time.monotonic()`` (one clock for every process of the machine)."""
    rng = random.Random(seed)
    raw: dict[str, Any] = {"env": [], "in_calls": [], "total": [], "waits": [], "latencies": [], "call_log": [],
                           "started_at": [], "first_call": [], "last_call": [], "failed": Counter(), "calls": 0}

    async def trajectory(prompt: int, sample: int) -> None:
        waits = [rng.uniform(*WAIT_S) for _ in range(calls)]
        t0 = time.monotonic()
        try:
            ep = await start(prompt, sample)
        except GymClientError as exc:
            raw["failed"][f"start: {type(exc).__name__}"] += 1
            return
        raw["started_at"].append(time.monotonic())
        spent = time.monotonic() - t0
        calls_spent = 0.0
        try:
            for k, wait in enumerate(waits):
                await anyio.sleep(wait * time_scale)  # the policy generating its next turn
                started = time.monotonic()
                if k == 0:
                    raw["first_call"].append(started)
                try:
                    out = await ep.call("Height", {"position": (prompt + k) % 40})
                    if out.error is not None:
                        raw["failed"][f"call: {out.error}"] += 1
                except GymClientError as exc:
                    raw["failed"][f"call: {type(exc).__name__}"] += 1
                done = time.monotonic()
                raw["calls"] += 1
                raw["latencies"].append(done - started)
                raw["call_log"].append((started, done - started))
                spent += done - started
                calls_spent += done - started
            raw["last_call"].append(time.monotonic())
        finally:
            closing = time.monotonic()
            try:
                await ep.close()
            except GymClientError as exc:
                raw["failed"][f"close: {type(exc).__name__}"] += 1
            spent += time.monotonic() - closing
        raw["env"].append(spent)
        raw["in_calls"].append(calls_spent)
        raw["total"].append(time.monotonic() - t0)
        raw["waits"].append(sum(waits))

    async with anyio.create_task_group() as tg:
        for prompt, sample in trajectories:
            tg.start_soon(trajectory, prompt, sample)
    return raw


def merge(raws: list[dict[str, Any]]) -> dict[str, Any]:
    """The raw timings of several processes as one run."""
    out: dict[str, Any] = {"failed": Counter(), "calls": 0}
    for raw in raws:
        for key, value in raw.items():
            if key == "failed":
                out["failed"].update(value)
            elif key == "calls":
                out["calls"] += value
            else:
                out.setdefault(key, []).extend(value)
    return out


def summary(raw: dict[str, Any]) -> dict[str, float]:
    """The run's figures from its raw timings."""
    latencies = sorted(raw["latencies"])
    all_started = max(raw["started_at"])
    in_burst = sum(latency for sent, latency in raw["call_log"] if sent < all_started)
    env, total = sum(raw["env"]), sum(raw["total"])
    return {"env_share": 100 * env / total, "call_share": 100 * sum(raw["in_calls"]) / total,
            "real_time_share": 100 * env / (env + sum(raw["waits"])),
            "burst_share": 100 * in_burst / max(1e-9, sum(raw["in_calls"])),
            "start_burst_s": all_started - min(raw["started_at"]),
            "calls_per_s": len(latencies) / (max(raw["last_call"]) - min(raw["first_call"])),
            "p50_ms": percentile(latencies, 0.5) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3,
            "failed": sum(raw["failed"].values()), "calls": raw["calls"], "wall_s": max(raw["total"])}


def pool_for(servers: list[str]) -> GymPool:
    return GymPool(servers, request_timeout=120, call_timeout=300, start_retries=4)


async def warm(pool: GymPool) -> None:
    """One short episode per server (connections open, gym loaded everywhere)."""
    for _ in pool.servers:
        async with await pool.start(GYM) as ep:
            await ep.call("Height", {"position": 1})


def assignment(trajectories: int) -> list[tuple[int, int]]:
    return [(t // SAMPLES, t % SAMPLES) for t in range(trajectories)]


# --- one agent-loop worker process (--worker) ---------------------------------------------------------------
async def worker(spec: dict[str, Any]) -> None:
    """Connect, warm up, say ``ready``, wait for ``go`` on stdin, run the share of trajectories, print JSON."""
    async with pool_for(spec["servers"]) as pool:
        await warm(pool)
        for run in range(spec["repeats"]):
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            cpu = time.process_time()
            raw = await rollout(lambda p, s: pool.start(GYM, task=p % 12, seed=s), spec["trajectories"],
                                spec["calls"], seed=spec["seed"] + run, time_scale=spec["time_scale"])
            raw["cpu_s"] = [time.process_time() - cpu]
            raw["maxrss_mib"] = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]
            print(json.dumps(raw), flush=True)


# --- the driver ---------------------------------------------------------------------------------------------
async def main(repeats: int, prompts: int, calls: int) -> None:
    """One server, one client process (this one), ``repeats`` rollout batches; print and save the table."""
    runs: list[dict[str, float]] = []
    cpu: list[float] = []
    with spawn_server(COMMAND) as (proc, url):
        meter = CpuMeter(proc.pid)
        async with pool_for([url.split("/gyms/")[0]]) as pool:
            await warm(pool)
            for r in range(repeats):
                meter.mark()
                raw = await rollout(lambda p, s: pool.start(GYM, task=p % 12, seed=s),
                                    assignment(prompts * SAMPLES), calls, seed=r)
                runs.append(summary(raw))
                host, workers = meter.read()
                cpu.append(100 * (host + workers) / runs[-1]["wall_s"])
    trajectories = prompts * SAMPLES

    def fig(key: str, name: str, unit: str) -> Figure:
        return Figure(name, unit, [float(r[key]) for r in runs])

    share = fig("env_share", "env share of rollout time", "%")
    call_share = fig("call_share", "tool calls' share of rollout time", "%")
    burst = fig("burst_share", "tool-call time spent while episodes were still starting", "%")
    burst_s = fig("start_burst_s", "time until every episode had started", "s")
    rate = fig("calls_per_s", "calls/s sustained", "calls/s")
    p50, p99 = fig("p50_ms", "call p50", "ms"), fig("p99_ms", "call p99", "ms")
    load = Figure("server CPU (host + workers)", "% of a core", cpu)
    failed = sum(int(r["failed"]) for r in runs)
    scaled = (prompts, calls) != (512, 40)
    what = (f"{prompts} prompts x {SAMPLES} samples = {trajectories:,} concurrent trajectories x {calls} calls, "
            f"policy waits {WAIT_S[0]}–{WAIT_S[1]} s before each call")
    rows = [
        ("measure", "value (median, min–max of runs)", "target"),
        ("what ran" + (" (scaled down)" if scaled else ""), what, "4,096 x 40"),
        ("env share of total rollout time", share.text(2), "< 2 %"),
        ("  of which tool calls (the rest: episode start and close)", call_share.text(2), ""),
        ("time until all episodes had started (they all start at once)", burst_s.text(2), ""),
        ("share of tool-call time spent in calls made before that", burst.text(1), ""),
        ("calls/s sustained by the server", rate.text(0), ""),
        ("tool call latency p50", p50.text(1), ""),
        ("tool call latency p99", p99.text(1), ""),
        ("server CPU while rolling out", load.text(0), ""),
        ("failed calls", f"{failed} of {sum(int(r['calls']) for r in runs):,}", "0"),
    ]
    save("rollout", "RL-scale rollout simulation", rows, [share, call_share, burst_s, burst, rate, p50, p99, load],
         notes=("Env time = episode start + every tool call + close, as the trajectory sees it (MCP client "
                "included); total = the trajectory's wall time. " + (
                    "Scaled: the target's 4,096 x 40 asks ~3,300 calls/s, more than one client process and "
                    "the server can carry on 2 cores; the waits are the target's, so the share is measured at "
                    "the same think time, at the load this machine sustains." if scaled else "")),
         extra={"prompts": prompts, "samples": SAMPLES, "calls": calls, "scaled": scaled})


async def main_multi(repeats: int, trajectories: int, calls: int, procs: int, servers: int, time_scale: float,
                     sandbox_workers: int) -> None:
    """``servers`` gym servers, ``procs`` agent-loop worker processes sharing ``trajectories``; save the table."""
    runs: list[dict[str, float]] = []
    server_cpu: list[float] = []
    worker_cpu: list[float] = []
    server_ms: list[float] = []  # CPU per request, all servers together
    worker_ms: list[float] = []  # CPU per request, all agent-loop workers together
    failures: Counter[str] = Counter()
    command = [*COMMAND, "--workers", str(sandbox_workers)]
    with ExitStack() as stack:
        spawned = [stack.enter_context(spawn_server(command)) for _ in range(servers)]
        urls = [url.split("/gyms/")[0] for _, url in spawned]
        meters = [CpuMeter(proc.pid) for proc, _ in spawned]
        everything = assignment(trajectories)
        workers = []
        for w in range(procs):
            spec = {"servers": urls, "trajectories": everything[w::procs], "calls": calls, "seed": 1000 * w,
                    "time_scale": time_scale, "repeats": repeats}
            workers.append(stack.enter_context(subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps(spec)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True)))
        for _ in range(repeats):
            for proc in workers:
                assert proc.stdout is not None
                line = await anyio.to_thread.run_sync(proc.stdout.readline)
                if line.strip() != "ready":
                    raise RuntimeError(f"a worker did not get ready: {line!r}")
            for meter in meters:
                meter.mark()
            for proc in workers:  # all at once, as veRL hands a batch to its agent-loop workers
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            raws = []
            for proc in workers:
                assert proc.stdout is not None
                raws.append(json.loads(await anyio.to_thread.run_sync(proc.stdout.readline)))
            raw = merge(raws)
            runs.append(summary(raw))
            failures.update(raw["failed"])
            wall = runs[-1]["wall_s"]
            used = [sum(m.read()) for m in meters]
            server_cpu.append(max(100 * c / wall for c in used))
            worker_cpu.append(max(100 * c / wall for c in raw["cpu_s"]))
            requests = raw["calls"] + 2 * len(raw["env"])  # tool calls, starts and closes
            server_ms.append(1e3 * sum(used) / requests)
            worker_ms.append(1e3 * sum(raw["cpu_s"]) / requests)
        for proc in workers:
            proc.wait(timeout=60)

    def fig(key: str, name: str, unit: str) -> Figure:
        return Figure(name, unit, [float(r[key]) for r in runs])

    share = fig("env_share", "env share of rollout time", "%")
    real = fig("real_time_share", "env share at real time (waits not stretched)", "%")
    call_share = fig("call_share", "tool calls' share of rollout time", "%")
    burst_s = fig("start_burst_s", "time until every episode had started", "s")
    rate = fig("calls_per_s", "calls/s sustained", "calls/s")
    p50, p99 = fig("p50_ms", "call p50", "ms"), fig("p99_ms", "call p99", "ms")
    s_cpu = Figure("busiest server's CPU (host + workers)", "% of a core", server_cpu)
    w_cpu = Figure("busiest agent-loop worker's CPU", "% of a core", worker_cpu)
    s_ms = Figure("servers' CPU per request", "ms", server_ms)
    w_ms = Figure("agent-loop workers' CPU per request", "ms", worker_ms)
    asked = trajectories / (sum(WAIT_S) / 2 * time_scale)
    what = (f"{trajectories:,} concurrent trajectories x {calls} calls from {procs} worker processes (one pooled "
            f"client each) against {servers} gym server process(es) of {sandbox_workers} sandbox workers; policy "
            f"waits {WAIT_S[0]}–{WAIT_S[1]} s x {time_scale:g} before each call (~{asked:,.0f} calls/s asked)")
    total_calls = sum(int(r["calls"]) for r in runs)
    rows = [
        ("measure", "value (median, min–max of runs)", "target"),
        ("what ran", what, "4,096 x 40, real time"),
        ("env share of total rollout time (at the stretched waits)", share.text(2), ""),
        ("env share at real time: env / (env + unstretched waits)", real.text(2), "< 2 %"),
        ("  tool calls' share (stretched; the rest: episode start and close)", call_share.text(2), ""),
        ("time until all episodes had started (they all start at once)", burst_s.text(2), ""),
        ("calls/s sustained by the servers", rate.text(0), ""),
        ("tool call latency p50", p50.text(1), ""),
        ("tool call latency p99", p99.text(1), ""),
        ("busiest gym server's CPU (host + sandbox workers)", s_cpu.text(0), "< 100 %"),
        ("busiest agent-loop worker's CPU", w_cpu.text(0), "< 100 %"),
        ("CPU per request (tool call, start or close): gym servers, all together", s_ms.text(2), ""),
        ("CPU per request: agent-loop workers' MCP clients, all together", w_ms.text(2), ""),
        ("failures", (", ".join(f"{k}: {v}" for k, v in failures.most_common()) or "none")
         + f" (of {total_calls:,} calls)", "none"),
    ]
    save("rollout_multi", "RL-scale rollout as veRL drives it (several agent-loop worker processes)", rows,
         [share, real, call_share, burst_s, rate, p50, p99, s_cpu, w_cpu, s_ms, w_ms],
         notes=("Env time = episode start + every tool call + close, as each trajectory sees it (pooled MCP "
                "client included). The real-time share assumes a call's env time does not depend on the call "
                "rate; it holds while no process is near a full core."),
         extra={"trajectories": trajectories, "calls": calls, "procs": procs, "servers": servers,
                "time_scale": time_scale, "sandbox_workers": sandbox_workers, "failures": dict(failures)})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        anyio.run(worker, json.loads(sys.argv[2]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--prompts", type=int, default=PROMPTS, help="one-process mode: prompts (x 8 samples)")
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--full", action="store_true", help="one-process mode: 512 prompts x 8 samples x 40 calls")
    parser.add_argument("--procs", type=int, default=0, help="agent-loop worker processes (0: this process)")
    parser.add_argument("--servers", type=int, default=1, help="gym server processes (with --procs)")
    parser.add_argument("--trajectories", type=int, default=4096, help="with --procs: trajectories in all")
    parser.add_argument("--time-scale", type=float, default=1.0, help="with --procs: stretch every wait this much")
    parser.add_argument("--sandbox-workers", type=int, default=2, help="with --procs: sandbox workers per server")
    args = parser.parse_args()
    if args.full:
        args.prompts, args.calls = 512, 40
    if args.procs > 0:
        anyio.run(main_multi, args.repeats, args.trajectories, args.calls, args.procs, args.servers, args.time_scale,
                  args.sandbox_workers)
    else:
        anyio.run(main, args.repeats, args.prompts, args.calls)
