"""RL-scale rollout simulation: many concurrent trajectories against one server (issue 8, item 6).

Every trajectory is what a veRL agent loop does with a gym: start an episode, then repeat "the policy
generates (a wait drawn uniformly from 0.5–2 s), then one tool call", and close the episode. The server
is ``codegym serve mountain_peak --http`` in its own process (2 sandbox workers); the trajectories run in
this process with the project's MCP client (one connection), as the RL loop does.

Per run: the **env share** (time trajectories spent waiting on the environment — episode start, tool
calls, close, as the rollout sees them, client included — over their total wall time), the calls/s the
server sustained over the run, and p50/p99 of one call. Target: env share < 2 %.

The issue asks for 4,096 trajectories (512 prompts × 8 samples) of 40 calls: that load asks for
4,096 / 1.25 s ≈ 3,300 calls/s for 50 s, beyond what one Python MCP client process plus the server can
carry on a 2-core machine. The default run here is scaled, and says so: ``PROMPTS`` × 8 trajectories of
``CALLS`` calls with the same waits (the waits are what the env share is measured against, so they are
not shortened). ``--full`` runs the issue's exact numbers.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import REPEATS, CpuMeter, Figure, percentile, save, spawn_server  # noqa: E402
from mcp_gyms.client import GymConnection, connect  # noqa: E402

GYM = "mountain_peak"
SAMPLES = 8
PROMPTS = 48  # x 8 = 384 trajectories: ~310 calls/s asked, what this 2-core machine carries unsaturated
CALLS = 40  # the 40 calls per trajectory; only the number of trajectories is scaled
WAIT_S = (0.5, 2.0)
COMMAND = [sys.executable, "-m", "mcp_gyms.cli", "serve", GYM, "--http", "--port", "0", "--max-episodes", "10000"]


async def rollout(gym: GymConnection, prompts: int, calls: int, seed: int) -> dict[str, float]:
    """One batch of prompts × SAMPLES trajectories at once; returns the run's figures."""
    rng = random.Random(seed)
    env: list[float] = []
    in_calls: list[float] = []
    total: list[float] = []
    latencies: list[float] = []
    failed = 0
    first_call: list[float] = []
    last_call: list[float] = []
    started_at: list[float] = []  # when each episode's start returned
    call_log: list[tuple[float, float]] = []  # (sent at, latency) of every tool call

    async def trajectory(prompt: int, sample: int) -> None:
        nonlocal failed
        waits = [rng.uniform(*WAIT_S) for _ in range(calls)]
        t0 = time.perf_counter()
        ep = await gym.start(task=prompt % 12, seed=sample)
        started_at.append(time.perf_counter())
        spent = time.perf_counter() - t0
        calls_spent = 0.0
        try:
            for k, wait in enumerate(waits):
                await anyio.sleep(wait)  # the policy generating its next turn
                started = time.perf_counter()
                if k == 0:
                    first_call.append(started)
                try:
                    out = await ep.call("Height", {"position": (prompt + k) % 40})
                    failed += out.error is not None
                except Exception:  # noqa: BLE001 - counted
                    failed += 1
                done = time.perf_counter()
                latencies.append(done - started)
                call_log.append((started, done - started))
                spent += done - started
                calls_spent += done - started
            last_call.append(time.perf_counter())
        finally:
            closing = time.perf_counter()
            await ep.close()
            spent += time.perf_counter() - closing
        env.append(spent)
        in_calls.append(calls_spent)
        total.append(time.perf_counter() - t0)

    async with anyio.create_task_group() as tg:
        for p in range(prompts):
            for s in range(SAMPLES):
                tg.start_soon(trajectory, p, s)
    latencies.sort()
    n = len(latencies)
    all_started = max(started_at)
    in_burst = sum(latency for sent, latency in call_log if sent < all_started)
    return {"env_share": 100 * sum(env) / sum(total), "call_share": 100 * sum(in_calls) / sum(total),
            "burst_share": 100 * in_burst / max(1e-9, sum(in_calls)),
            "start_burst_s": all_started - min(started_at),
            "calls_per_s": n / (max(last_call) - min(first_call)),
            "p50_ms": percentile(latencies, 0.5) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3,
            "failed": failed, "calls": n, "wall_s": max(total)}


async def main(repeats: int, prompts: int, calls: int) -> None:
    """One server, ``repeats`` rollout batches; print and save the table."""
    runs: list[dict[str, float]] = []
    cpu: list[float] = []
    with spawn_server(COMMAND) as (proc, url):
        meter = CpuMeter(proc.pid)
        async with connect(url.replace("{gym_id}", GYM), request_timeout=120) as gym:
            async with await gym.start() as warm:
                await warm.call("Height", {"position": 1})
            for r in range(repeats):
                meter.mark()
                runs.append(await rollout(gym, prompts, calls, seed=r))
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
                    "Scaled: the issue's 4,096 x 40 asks ~3,300 calls/s, more than one client process and "
                    "the server can carry on 2 cores; the waits are the issue's, so the share is measured at "
                    "the same think time, at the load this machine sustains." if scaled else "")),
         extra={"prompts": prompts, "samples": SAMPLES, "calls": calls, "scaled": scaled})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--prompts", type=int, default=PROMPTS)
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--full", action="store_true", help="the issue's 512 prompts x 8 samples x 40 calls")
    args = parser.parse_args()
    if args.full:
        args.prompts, args.calls = 512, 40
    anyio.run(main, args.repeats, args.prompts, args.calls)
