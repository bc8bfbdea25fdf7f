"""Verification throughput: (candidate x task) runs per second of `verify` vs a process per run.

`verify` runs every task of the bundled bank (reference answer + oracle) on a warm sandbox pool; the
baseline starts a fresh Python process per run that loads the gym and plays the same oracle (the
straightforward way to isolate untrusted code). Target: >= 10x.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import repeat, save  # noqa: E402
from mcp_gyms.verify import collect_sources, verify_sources  # noqa: E402

CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from mcp_gyms.episode import LocalEpisode
req = json.loads(sys.stdin.read())
ns = {{}}
exec(compile(req["code"], "gym", "exec"), ns)
cls = ns[req["class_name"]]
ref = cls.reference_answer(req["task"])
res = LocalEpisode(cls, req["task"]).run_oracle()
print(json.dumps({{"reward": res.reward, "steps": res.steps, "ref": ref}}))
"""


def verify_runs_per_s(sources) -> float:  # noqa: ANN001
    started = time.perf_counter()
    verdicts = anyio.run(verify_sources, sources, None)
    elapsed = time.perf_counter() - started
    assert all(v.verified for v in verdicts)
    return sum(len(s.tasks) for s in sources) / elapsed


def process_per_run_per_s(sources, runs: int = 30) -> float:  # noqa: ANN001
    jobs = [(s, t) for s in sources for t in s.tasks][:runs]
    child = CHILD.format(root=str(ROOT))
    started = time.perf_counter()
    for source, task in jobs:
        payload = json.dumps({"code": source.code, "class_name": source.record.class_name, "task": task.config})
        out = subprocess.run([sys.executable, "-c", child], input=payload, capture_output=True, text=True, check=True)
        assert json.loads(out.stdout)["reward"] == 1.0
    return len(jobs) / (time.perf_counter() - started)


def main() -> None:
    sources, _ = collect_sources([])
    ours = repeat(lambda: verify_runs_per_s(sources), "verify (sandbox pool)", "runs/s")
    baseline = repeat(lambda: process_per_run_per_s(sources), "process per run", "runs/s")
    ratio = ours.median / baseline.median
    tasks = sum(len(s.tasks) for s in sources)
    rows = [
        ("measure", "value (median, min–max of runs)", "target"),
        (f"codegym verify, {len(sources)} gyms / {tasks} tasks (incl. pool start)", ours.text(0), ""),
        ("a fresh process per run (30 runs)", baseline.text(1), ""),
        ("ratio", f"{ratio:.1f}x", ">= 10x"),
    ]
    save("verify", "Verification throughput", rows, [ours, baseline],
         notes="A run = reference answer + oracle episode of one task. Pool start-up is included in ours.",
         extra={"ratio": ratio})


if __name__ == "__main__":
    main()
