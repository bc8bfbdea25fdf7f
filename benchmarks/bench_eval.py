"""Eval harness overhead: episodes/s against an instant, scripted model endpoint.

Three processes: the scripted OpenAI-compatible endpoint of the eval tests
(``tests/fixtures/eval/scripted_openai.py``, served by ``benchmarks/scripted_llm.py``; script ``native``:
``Observe``, then ``Done(3)``), ``codegym serve coin_vault --http``, and this one, which runs
:func:`eval.evaluation.run_evaluation` (what ``codegym eval --server URL --policy openai`` does) at
concurrency 256. The model answers at once, so what is measured is the harness: the OpenAI client, the
conversation, the tool calls over MCP, the records and the reports.

Per run: ``EPISODES`` episodes (2 model turns and 2 tool calls each, plus start and close) — episodes/s
over the whole run (start-up, listing the gyms and writing the reports included) and the CPU the harness
process used per episode.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import REPEATS, CpuMeter, Figure, save, spawn_server  # noqa: E402
from eval.evaluation import EvalConfig, run_evaluation  # noqa: E402

GYM = "coin_vault"
TASKS = 12
K = 64  # 12 tasks x 64 samples = 768 episodes per run
CONCURRENCY = 256
PY = sys.executable
LLM = [PY, "benchmarks/scripted_llm.py", "--port", "0"]
GYMS = [PY, "-m", "mcp_gyms.cli", "serve", GYM, "--http", "--port", "0", "--procs", "1", "--max-episodes", "10000"]


def one_run(gym_url: str, llm_url: str, k: int, concurrency: int) -> tuple[float, float, int, int]:
    """(episodes/s, harness CPU ms per episode, episodes, episodes that did not end with Done)."""
    with tempfile.TemporaryDirectory(prefix="codegym-bench-eval-") as out:
        config = EvalConfig(server=gym_url, gyms=[GYM], policy="openai", model="native", base_url=llm_url,
                            api_key="EMPTY", k=k, concurrency=concurrency, max_turns=8, max_retries=0,
                            request_timeout=120.0, out=out)
        cpu0, started = time.process_time(), time.perf_counter()
        outcome = run_evaluation(config, progress=False)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    records = outcome.records
    bad = sum(1 for r in records if r.reason != "done")
    return len(records) / elapsed, cpu / max(1, len(records)) * 1e3, len(records), bad


def main(repeats: int, k: int, concurrency: int) -> None:
    """Start the model endpoint and the gym server, run the evaluation ``repeats`` times, save the table."""
    rates = Figure("episodes/s", "episodes/s")
    harness_cpu = Figure("harness CPU per episode", "ms")
    server_cpu = Figure("gym server CPU per episode (host + workers)", "ms")
    llm_cpu = Figure("scripted model endpoint CPU per episode", "ms")
    episodes, bad = 0, 0
    with spawn_server(LLM) as (llm_proc, llm_url), spawn_server(GYMS) as (gym_proc, gym_url):
        base = gym_url.split("/gyms/")[0]
        gym_meter, llm_meter = CpuMeter(gym_proc.pid), CpuMeter(llm_proc.pid)
        one_run(base, llm_url, 1, concurrency)  # warm up: the gym loads, connections open
        for _ in range(repeats):
            gym_meter.mark()
            llm_meter.mark()
            rate, cpu, n, b = one_run(base, llm_url, k, concurrency)
            rates.runs.append(rate)
            harness_cpu.runs.append(cpu)
            server_cpu.runs.append(sum(gym_meter.read()) / n * 1e3)
            llm_cpu.runs.append(sum(llm_meter.read()) / n * 1e3)
            episodes, bad = episodes + n, bad + b
    n_per_run = TASKS * k
    rows = [
        ("measure", "value (median, min–max of runs)"),
        (f"episodes/s at concurrency {concurrency} ({n_per_run} episodes per run)", rates.text(1)),
        ("eval harness CPU per episode", harness_cpu.text(2)),
        ("gym server CPU per episode (host + sandbox workers)", server_cpu.text(2)),
        ("scripted model endpoint CPU per episode", llm_cpu.text(2)),
        ("episodes not ending with Done", f"{bad} of {episodes}"),
    ]
    save("eval", "Eval harness overhead against an instant scripted model", rows,
         [rates, harness_cpu, server_cpu, llm_cpu],
         notes=("An episode = start, 2 chat completions (Observe, then Done), 2 tool calls over MCP, close, "
                "one trajectory record. Episodes/s covers the whole run_evaluation call (gym listing, "
                "reports included). The three processes share the machine's 2 cores."),
         extra={"episodes_per_run": n_per_run, "concurrency": concurrency})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("-k", type=int, default=K, help="samples per task (12 tasks)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args()
    main(args.repeats, args.k, args.concurrency)
