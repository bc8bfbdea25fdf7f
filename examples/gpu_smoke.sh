#!/usr/bin/env bash
# Two GRPO steps end to end on ONE GPU, with nothing downloaded but the packages: prints PASS or FAIL.
#
# NOT YET RUN ON A GPU: written against veRL 0.9.1's source and proven on CPU up to the GPU (the V1 agent-loop
# path, main_ppo's config checks, the SFT data); the first person with a GPU who runs it finds out the rest.
#
#   pip install -e '.[rl,gpu]'        # README "Training with veRL": vllm 0.24.0 / torch 2.11.0 / veRL 0.9.1
#   examples/gpu_smoke.sh             # ~10-20 min on one GPU; WORK=/some/dir to keep the files elsewhere
#
# What it does:
#   1. a tiny Qwen2-shaped model built locally from a config (byte-level tokenizer, random weights), and a
#      bank with the `probe` gym: hide a number, Read() it, submit it with Done(answer);
#   2. a short SFT warm-up on the oracle's trajectories (`codegym export-sft`, veRL's SFT trainer) so the model
#      writes valid Hermes tool calls;
#   3. 2 GRPO steps with `python -m rl.train` (veRL's default V1 trainer, vLLM rollouts over MCP against a
#      `codegym serve --http` the launcher starts), 4 samples per prompt;
#   4. PASS when both steps logged a finite policy loss and grad norm, the rollouts made tool calls, and every
#      group of samples of one prompt had rewards that differ (the GRPO signal). Otherwise FAIL, saying why.
set -euo pipefail

PYTHON=${PYTHON:-python}
WORK=${WORK:-/tmp/codegym-gpu-smoke}
SFT_STEPS=${SFT_STEPS:-300}
mkdir -p "$WORK"
cd "$(dirname "$0")/.."
log() { printf '\n== %s\n' "$*"; }

log "1/4 tiny model and probe bank in $WORK"
"$PYTHON" - "$WORK" <<'EOF'
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from mcp_gyms.bank import Bank, GymRecord, Provenance, TaskRecord
from rl.testing import PROBE_GYM_CODE, write_model_dir

work = Path(sys.argv[1])
model = write_model_dir(work / "model")
torch.manual_seed(0)
AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model), torch_dtype=torch.bfloat16).save_pretrained(model)
if not (work / "bank").exists():
    bank = Bank.create(work / "bank", name="gpu-smoke")
    record = GymRecord(id="probe", title="Probe", class_name="ProbeGym", max_steps=16,
                       task_text="Find the hidden value with Read and submit it with Done.",
                       provenance=Provenance(source="gpu-smoke"))
    tasks = [TaskRecord(id=f"t{i}", difficulty="easy", config={"value": v}, answer=v, oracle_steps=2)
             for i, v in enumerate(range(3, 67))]
    bank.put_gym(record, PROBE_GYM_CODE, tasks)
print(f"model {model}, bank {work / 'bank'}")
EOF

log "2/4 SFT warm-up on the oracle's trajectories"
"$PYTHON" -m mcp_gyms.cli export-sft --bank "$WORK/bank" --include-unverified --val-fraction 0.1 --out "$WORK/sft"
torchrun --standalone --nnodes=1 --nproc_per_node=1 -m verl.trainer.sft_trainer \
  data.train_files="$WORK/sft/train.parquet" data.val_files="$WORK/sft/val.parquet" \
  data.custom_cls.path=pkg://rl.sft_dataset data.custom_cls.name=CodeGymSFTDataset \
  data.train_batch_size=16 data.micro_batch_size_per_gpu=4 data.max_length=4096 data.num_workers=0 \
  model.path="$WORK/model" optim.lr=1e-3 \
  trainer.total_training_steps="$SFT_STEPS" trainer.total_epochs=1000 trainer.save_freq="$SFT_STEPS" \
  trainer.test_freq=-1 trainer.logger=[console] trainer.default_local_dir="$WORK/sft-ckpt" \
  'checkpoint.save_contents=[model,optimizer,extra,hf_model]' 2>&1 | tee "$WORK/sft.log"
SFT_MODEL=$(ls -d "$WORK"/sft-ckpt/global_step_*/huggingface | sort -V | tail -1)
# the checkpoint's tokenizer files come from the model folder
cp -n "$WORK"/model/tokenizer* "$WORK"/model/special_tokens_map.json "$SFT_MODEL"/ 2>/dev/null || true
echo "SFT model: $SFT_MODEL"

log "3/4 two GRPO steps (vLLM rollouts over MCP)"
"$PYTHON" -m mcp_gyms.cli export-verl --bank "$WORK/bank" --include-unverified --val-fraction 0.1 --out "$WORK/rl"
rm -rf "$WORK/rollouts"
"$PYTHON" -m rl.train \
  actor_rollout_ref.model.path="$SFT_MODEL" codegym.server.bank="$WORK/bank" codegym.server.workers=4 \
  data.train_files="$WORK/rl/train.parquet" data.val_files="$WORK/rl/val.parquet" \
  data.train_batch_size=8 data.max_prompt_length=2048 data.max_response_length=1024 data.dataloader_num_workers=0 \
  actor_rollout_ref.rollout.n=4 actor_rollout_ref.actor.ppo_mini_batch_size=8 \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384 actor_rollout_ref.model.use_remove_padding=false \
  actor_rollout_ref.model.enable_gradient_checkpointing=false actor_rollout_ref.actor.optim.lr=1e-5 \
  actor_rollout_ref.rollout.gpu_memory_utilization=0.4 actor_rollout_ref.rollout.max_model_len=4096 \
  actor_rollout_ref.rollout.max_num_batched_tokens=4096 actor_rollout_ref.rollout.agent.num_workers=2 \
  codegym.max_tool_calls=16 trainer.n_gpus_per_node=1 trainer.nnodes=1 trainer.total_training_steps=2 \
  trainer.save_freq=-1 trainer.test_freq=-1 trainer.val_before_train=false trainer.logger=[console] \
  trainer.rollout_data_dir="$WORK/rollouts" 2>&1 | tee "$WORK/grpo.log"

log "4/4 checks"
"$PYTHON" - "$WORK" <<'EOF'
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

work = Path(sys.argv[1])
text = (work / "grpo.log").read_text(errors="replace")
problems = []
for step in (1, 2):
    line = next((l for l in text.splitlines() if re.search(rf"\bstep:{step}\b", l) and "actor/" in l), None)
    if line is None:
        problems.append(f"step {step}: no metrics line in grpo.log (did training reach it?)")
        continue
    for key in ("actor/pg_loss", "actor/grad_norm"):
        found = re.search(rf"{re.escape(key)}:\s*([-+0-9.eEnaif]+)", line)
        value = float(found.group(1)) if found else math.nan
        print(f"step {step}: {key} = {value}")
        if not math.isfinite(value):
            problems.append(f"step {step}: {key} is {value}")
    calls = re.search(r"num_turns/mean:\s*([0-9.]+)", line)
    if calls and float(calls.group(1)) <= 2:
        problems.append(f"step {step}: num_turns/mean {calls.group(1)}: the rollouts made no tool call")
dumps = sorted((work / "rollouts").glob("*.jsonl"))
if len(dumps) < 2:
    problems.append(f"expected 2 rollout dumps in {work / 'rollouts'}, found {len(dumps)}")
for dump in dumps:
    groups = defaultdict(list)
    for line in dump.read_text().splitlines():
        row = json.loads(line)
        groups[row["uid"].rsplit("_", 2)[0]].append(float(row["score"]))
    flat = [uid for uid, scores in groups.items() if len(set(scores)) < 2]
    print(f"{dump.name}: {len(groups)} groups, mean reward {sum(map(sum, groups.values())) / max(1, sum(map(len, groups.values()))):.3f}, "
          f"{len(flat)} group(s) without reward variance")
    if flat:
        problems.append(f"{dump.name}: {len(flat)} of {len(groups)} groups have no reward variance (no GRPO signal)")
print("\nFAIL:\n  " + "\n  ".join(problems) if problems else "\nPASS: 2 GRPO steps, finite loss and grad norm, reward variance in every group")
sys.exit(1 if problems else 0)
EOF
