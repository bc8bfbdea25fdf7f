"""Author's check of one bundled gym, in-process (only for trusted code written by the team).

Usage: python scripts/check_gym.py mcp_gyms/default_bank/gyms/<gym_id>

Loads gym.py, validates gym.json and tasks.jsonl with the bank models, prints the tool schemas, and for
every task: reference answer == stored answer, oracle reward == 1, 10 <= oracle steps <= 256,
stored oracle_steps == measured. Exits non-zero on any problem. (`codegym verify` does the same in the
sandbox once it exists; this script is for writing gyms.)
"""

import importlib.util
import json
import sys
from pathlib import Path

from mcp_gyms.bank import GymRecord, read_tasks
from mcp_gyms.episode import Episode
from mcp_gyms.gym import GymSpec, normalise_answer

folder = Path(sys.argv[1])
record = GymRecord.model_validate_json((folder / "gym.json").read_text())
spec = importlib.util.spec_from_file_location(f"gym_{record.id}", folder / "gym.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
cls = getattr(module, record.class_name)
tools = GymSpec.of(cls)
print(json.dumps(tools.public_tools(), indent=1)[:3000])
assert len(tools.tools) >= 4, "need >= 4 tools incl. Observe and Done"
tasks = read_tasks(folder / "tasks.jsonl")
problems = []
mix = {}
for t in tasks:
    mix[t.difficulty] = mix.get(t.difficulty, 0) + 1
    ref = normalise_answer(cls.reference_answer(t.config))
    if ref != normalise_answer(t.answer):
        problems.append(f"{t.id}: stored answer {t.answer!r} != reference {ref!r}")
    if len(json.dumps(ref)) >= 100:
        problems.append(f"{t.id}: answer prints >= 100 chars")
    res = Episode(cls, t.config, t.seed).run_oracle()
    if res.reward != 1.0 or res.error:
        problems.append(f"{t.id}: oracle reward {res.reward} error {res.error}")
    if not 10 <= res.steps <= 256:
        problems.append(f"{t.id}: oracle steps {res.steps} outside 10..256")
    if t.oracle_steps != res.steps:
        problems.append(f"{t.id}: stored oracle_steps {t.oracle_steps} != measured {res.steps}")
    print(f"{t.id:8} {t.difficulty:6} steps={res.steps:3} reward={res.reward} answer={ref!r}")
print("difficulty mix:", mix)
if len(tasks) < 10 or len(mix) < 3:
    problems.append("need >= 10 tasks spread over easy/medium/hard")
print("\n".join(problems) or "OK")
sys.exit(1 if problems else 0)
