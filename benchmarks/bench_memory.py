"""Memory: resident memory of a gym server with 10,000 open idle episodes.

``codegym serve mountain_peak --http`` runs as its own process (2 sandbox workers, its children). One
episode is started and closed first (the gym loads, the endpoint is built, the first calls warm up), then
the resident set sizes are read; then 10,000 episodes are started over MCP (the project's client, 256 at
a time) and left idle, in 5 equal batches (the runs; sizes read after each batch).

Per episode: the growth of the server process (host: handles, bookkeeping, the committed call logs) and
of the sandbox workers (the live gym instances), divided by 10,000. The gym's own state is estimated as
the pickled size of a fresh instance's ``__dict__`` (what trial-then-overwrite snapshots); what is left
after subtracting it is the framework's cost per idle episode. Target: <= 20 KB.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_sandbox import load_trusted  # noqa: E402
from benchmarks.common import REPEATS, Figure, descendants, rss_bytes, save, spawn_server  # noqa: E402
from mcp_gyms.bank import Bank  # noqa: E402
from mcp_gyms.client import RemoteEpisode, connect  # noqa: E402
from mcp_gyms.episode import LocalEpisode  # noqa: E402

GYM = "mountain_peak"
EPISODES = 10_000
COMMAND = [sys.executable, "-m", "mcp_gyms.cli", "serve", GYM, "--http", "--port", "0", "--procs", "1", "--workers", "2",
           "--max-episodes", str(EPISODES)]


def gym_state_bytes(bank: Bank) -> float:
    """Mean pickled size of a fresh gym instance's state over the gym's tasks (seed 0)."""
    cls = load_trusted(bank)
    sizes = [len(pickle.dumps(LocalEpisode(cls, t.config).gym.__dict__, protocol=pickle.HIGHEST_PROTOCOL))
             for t in bank.tasks(GYM)]
    return sum(sizes) / len(sizes)


def sizes(pid: int) -> tuple[int, int]:
    """(server RSS, sum of the workers' RSS) in bytes."""
    return rss_bytes(pid), sum(rss_bytes(p) for p in descendants(pid))


async def measure(tasks: int, batches: int) -> tuple[list[tuple[float, float, float]], tuple[float, float]]:
    """One server; open EPISODES episodes in ``batches`` equal batches, reading the sizes after each.

    Returns, per batch, (host bytes/episode, workers bytes/episode, seconds to open the batch), and the
    overall (host, workers) bytes per episode from one warm episode to all EPISODES open."""
    per_batch = EPISODES // batches
    out: list[tuple[float, float, float]] = []
    with spawn_server(COMMAND) as (proc, url):
        endpoint = url.replace("{gym_id}", GYM)
        async with connect(endpoint, request_timeout=120) as gym:
            async with await gym.start() as warm:
                await warm.call("Height", {"position": 1})
            await anyio.sleep(0.5)
            host0, workers0 = before = sizes(proc.pid)
            episodes: list[RemoteEpisode] = []
            limiter = anyio.CapacityLimiter(256)

            async def start(i: int) -> None:
                async with limiter:
                    episodes.append(await gym.start(task=i % tasks))

            for b in range(batches):
                started = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for i in range(b * per_batch, (b + 1) * per_batch):
                        tg.start_soon(start, i)
                opened = time.perf_counter() - started
                await anyio.sleep(0.3)
                after = sizes(proc.pid)
                out.append(((after[0] - before[0]) / per_batch, (after[1] - before[1]) / per_batch, opened))
                before = after
            overall = ((before[0] - host0) / len(episodes), (before[1] - workers0) / len(episodes))
    return out, overall


async def main(repeats: int) -> None:
    """Measure, print and save the memory table."""
    bank = Bank.open()
    state = gym_state_bytes(bank)
    tasks = len(bank.tasks(GYM))
    batches, overall = await measure(tasks, repeats)
    per_batch = EPISODES // repeats
    host = Figure("server process per episode", "KB", [h / 1024 for h, _, _ in batches])
    workers = Figure("sandbox workers per episode", "KB", [w / 1024 for _, w, _ in batches])
    total = Figure("total per episode", "KB", [(h + w) / 1024 for h, w, _ in batches])
    beyond = Figure("per episode beyond the gym's state", "KB", [(h + w - state) / 1024 for h, w, _ in batches])
    opening = Figure(f"open {per_batch:,} episodes over MCP", "s", [t for _, _, t in batches])
    all_host, all_workers = overall[0] / 1024, overall[1] / 1024
    all_beyond = (overall[0] + overall[1] - state) / 1024
    rows = [
        ("measure", f"per batch of {per_batch:,} (median, min–max)", f"all {EPISODES:,} open", "target"),
        ("server process (host), per idle episode", host.text(2), f"{all_host:.2f} KB", ""),
        ("sandbox workers, per idle episode", workers.text(2), f"{all_workers:.2f} KB", ""),
        ("total, per idle episode", total.text(2), f"{all_host + all_workers:.2f} KB", ""),
        (f"gym's own state (pickled {GYM} instance, mean of its tasks)", f"{state / 1024:.2f} KB", "", ""),
        ("per idle episode beyond the gym's state", beyond.text(2), f"{all_beyond:.2f} KB", "<= 20 KB"),
        (f"time to open {per_batch:,} episodes over MCP", opening.text(1), "", ""),
    ]
    save("memory", f"Memory: {EPISODES:,} open idle episodes of {GYM}", rows,
         [host, workers, total, beyond, opening],
         notes=(f"One server process (2 sandbox workers); after one warm episode, {EPISODES:,} episodes are "
                f"opened in {repeats} batches of {per_batch:,} (the runs), each measured as the RSS growth it "
                "causes; the last column is the growth from the warm server to all of them open. Workers' RSS "
                "is the sum over both. The gym's in-memory state is larger than its pickle (Python objects), "
                "so 'beyond the gym's state' still holds part of it."),
         extra={"gym_state_bytes": state, "beyond_kb": beyond.median, "beyond_kb_all": all_beyond,
                "episodes": EPISODES})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    anyio.run(main, args.repeats)
