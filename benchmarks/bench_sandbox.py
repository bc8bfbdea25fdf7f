"""Sandbox overhead, and the original CodeGym server design as a baseline.

1. Overhead: one tool call through the sandbox (host -> worker -> host) vs the same call on an
   in-process LocalEpisode. Target: <= 0.3 ms added.
2. Original design: a process forked per call on a pickled copy of the environment (trial then
   overwrite), one call at a time per server process — vs this project's pool with one worker,
   many episodes in flight. Both drive the same bundled gym; calls/s per core, i.e. calls per CPU
   second actually used by each design's processes (server/host + children/worker). Target: >= 20x.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import resource
import sys
import time
import types
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import CpuMeter, Figure, repeat, repeat_async, save  # noqa: E402
from mcp_gyms.bank import Bank  # noqa: E402
from mcp_gyms.episode import LocalEpisode  # noqa: E402
from mcp_gyms.sandbox import GymCode, SandboxPool  # noqa: E402

GYM = "mountain_peak"
CALLS = 2000


def load_trusted(bank: Bank) -> type:
    """Import a bundled (team-written, trusted) gym in-process: only the baselines do this."""
    module = types.ModuleType("bench_trusted_gym")
    exec(compile(bank.code(GYM), GYM, "exec"), module.__dict__)
    sys.modules[module.__name__] = module  # so the baseline can pickle instances
    return getattr(module, bank.gym(GYM).class_name)


def in_process_call_s(cls: type, task: dict) -> float:
    ep = LocalEpisode(cls, task, max_steps=10**9)
    started = time.perf_counter()
    for i in range(CALLS):
        ep.call("Height", {"position": i % 50})
    return (time.perf_counter() - started) / CALLS


async def sandbox_call_s(pool: SandboxPool, gym: GymCode, task: dict) -> float:
    ep = await pool.open(gym, task, max_steps=10**9)
    started = time.perf_counter()
    for i in range(CALLS):
        await ep.call("Height", {"position": i % 50})
    elapsed = time.perf_counter() - started
    await ep.aclose()
    return elapsed / CALLS


# --- the original design ----------------------------------------------------------------------
def _child(cls: type, task: dict, snapshot: bytes, action: tuple[str, dict], out) -> None:  # noqa: ANN001
    episode = LocalEpisode(cls, task, max_steps=10**9)
    episode.gym = pickle.loads(snapshot)
    result = episode.call(*action)
    out.send((pickle.dumps(episode.gym), result.observation))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def original_design_calls_per_s(cls: type, task: dict, calls: int = 200, per_cpu: list[float] | None = None) -> float:
    """One server process; each call forks a child that unpickles the env, runs the call, and sends
    back the new state, which the server commits only if the child finished within the limit.

    Returns calls/s; appends calls per CPU second (server + children) to ``per_cpu``."""
    ctx = mp.get_context("fork")
    state = pickle.dumps(LocalEpisode(cls, task, max_steps=10**9).gym)
    cpu0 = time.process_time() + _children_cpu()
    started = time.perf_counter()
    for i in range(calls):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(cls, task, state, ("Height", {"position": i % 50}), child))
        proc.start()
        if parent.poll(3.0):
            new_state, _observation = parent.recv()
            state = new_state  # overwrite: commit the trial
        proc.join()
    elapsed = time.perf_counter() - started
    if per_cpu is not None:
        per_cpu.append(calls / (time.process_time() + _children_cpu() - cpu0))
    return calls / elapsed


async def pool_calls_per_s(pool: SandboxPool, gym: GymCode, task: dict, episodes: int = 64, calls: int = 40,
                           per_cpu: list[float] | None = None) -> float:
    """calls/s of ``episodes`` episodes in flight on the pool; appends calls per CPU second (this
    process, the host, + its sandbox workers) to ``per_cpu``."""
    eps = [await pool.open(gym, task, max_steps=10**9) for _ in range(episodes)]
    meter = CpuMeter(os.getpid())
    meter.mark()

    async def play(ep) -> None:  # noqa: ANN001
        for i in range(calls):
            await ep.call("Height", {"position": i % 50})

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for ep in eps:
            tg.start_soon(play, ep)
    elapsed = time.perf_counter() - started
    if per_cpu is not None:
        per_cpu.append(episodes * calls / sum(meter.read()))
    for ep in eps:
        await ep.aclose()
    return episodes * calls / elapsed


async def main() -> None:
    """Measure the sandbox overhead and the original design; print and save the table."""
    bank = Bank.open()
    cls = load_trusted(bank)
    task = bank.task(GYM, 0).config
    gym = GymCode(bank.code(GYM), bank.gym(GYM).class_name)
    async with SandboxPool(workers=1) as pool:
        await sandbox_call_s(pool, gym, task)  # warm up
        local = repeat(lambda: in_process_call_s(cls, task) * 1e3, "in-process call", "ms")
        sandboxed = await repeat_async(lambda: _ms(sandbox_call_s(pool, gym, task)), "sandboxed call", "ms")
        ours_cpu = Figure("pool, 1 worker, per CPU second", "calls/cpu-s")
        ours = await repeat_async(lambda: pool_calls_per_s(pool, gym, task, per_cpu=ours_cpu.runs), "pool, 1 worker",
                                  "calls/s")
    base_cpu = Figure("fork per call, per CPU second", "calls/cpu-s")
    baseline = repeat(lambda: original_design_calls_per_s(cls, task, per_cpu=base_cpu.runs), "fork per call",
                      "calls/s")
    added = Figure("added by the sandbox", "ms", [sb - lo for sb, lo in zip(sandboxed.runs, local.runs)])
    # per core = per CPU second actually used: server + forked children vs host + worker
    ratio = Figure("calls per CPU second, ours / original", "x", [o / b for o, b in zip(ours_cpu.runs, base_cpu.runs)])
    per_core_ratio = ratio.median
    rows = [
        ("measure", "value (median, min–max of runs)", "target"),
        ("in-process tool call", local.text(4), ""),
        ("sandboxed tool call (round trip)", sandboxed.text(4), ""),
        ("added by the sandbox", added.text(4), "<= 0.3 ms"),
        ("original design: fork per call", baseline.text(0), ""),
        ("  per CPU second (server + children)", base_cpu.text(0), ""),
        ("this pool: 1 worker, 64 episodes in flight", ours.text(0), ""),
        ("  per CPU second (host + worker)", ours_cpu.text(0), ""),
        ("calls/s per core, ours / original", f"{ratio.median:.1f}x ({min(ratio.runs):.1f}–{max(ratio.runs):.1f})",
         ">= 20x"),
    ]
    save("sandbox", "Sandbox overhead and the original server design", rows,
         [local, sandboxed, added, baseline, base_cpu, ours, ours_cpu, ratio],
         notes=(f"{os.cpu_count()} cores. The original design is implemented here with fork (its cheapest form). "
                "Per core = calls per CPU second actually used by each design's processes."),
         extra={"per_core_ratio": per_core_ratio})


async def _ms(coro) -> float:  # noqa: ANN001
    return (await coro) * 1e3


if __name__ == "__main__":
    anyio.run(main)
