#!/usr/bin/env bash
# GRPO on CodeGym gyms with veRL 0.9.1 (vLLM rollouts) on veRL's default V1 trainer path.
# rl/configs/codegym_grpo.yaml says which settings are the paper's (512 prompts x 8 samples, lr 1e-6, KL 0,
# clip 0.2, temperature 1.0, prompt 5,120 / response 24,576 tokens, at most 256 tool calls) and which are ours.
#
# Usage:  examples/train_grpo.sh [hydra overrides...]
#   e.g.  MODEL=Qwen/Qwen2.5-7B-Instruct GPUS_PER_NODE=8 examples/train_grpo.sh trainer.total_epochs=2
#         examples/train_grpo.sh --cfg job          # print the composed config, run nothing
#
# Environment (all optional):
#   BANK           bank folder to train on (default: the bundled bank)
#   DATA_DIR       where the train/val parquet live; exported from BANK first if missing (default: data/codegym)
#   MODEL          policy model path or hub id (default: the config's)
#   NNODES, GPUS_PER_NODE   cluster shape (default: the config's, 1 x 8)
#   GYM_SERVERS    comma-separated gym server URLs (http://host:port); empty: the launcher starts one
#                  `codegym serve --http` per Ray node, serving BANK
#   PYTHON         the interpreter (default: python)
# Needs the GPU install of README.md "Training with veRL" (pip install -e '.[rl,gpu]', which pins torch 2.11.0).
set -euo pipefail

PYTHON=${PYTHON:-python}
DATA_DIR=${DATA_DIR:-data/codegym}

if [[ ! -f "$DATA_DIR/train.parquet" ]]; then
  "$PYTHON" -m mcp_gyms.cli export-verl ${BANK:+--bank "$BANK"} --out "$DATA_DIR"
fi

args=("data.train_files=$DATA_DIR/train.parquet" "data.val_files=$DATA_DIR/val.parquet")
[[ -n "${BANK:-}" ]] && args+=("codegym.server.bank=$BANK")
[[ -n "${MODEL:-}" ]] && args+=("actor_rollout_ref.model.path=$MODEL")
[[ -n "${NNODES:-}" ]] && args+=("trainer.nnodes=$NNODES")
[[ -n "${GPUS_PER_NODE:-}" ]] && args+=("trainer.n_gpus_per_node=$GPUS_PER_NODE")
[[ -n "${GYM_SERVERS:-}" ]] && args+=("codegym.servers=[$GYM_SERVERS]")

# Hydra wants its flags (--cfg job, -cn NAME, ...) before the overrides.
flags=() overrides=()
while (($#)); do
  case "$1" in
    --cfg|-c|--package|-p|--config-path|-cp|--config-name|-cn|--config-dir|-cd|--info|-i)
      flags+=("$1"); [[ $# -gt 1 ]] && { flags+=("$2"); shift; } ;;
    -*) flags+=("$1") ;;
    *) overrides+=("$1") ;;
  esac
  shift
done

exec "$PYTHON" -m rl.train "${flags[@]}" "${args[@]}" "${overrides[@]}"
