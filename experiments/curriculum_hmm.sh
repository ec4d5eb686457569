#!/usr/bin/env bash
# The HMM at K=50 through a curriculum: the cpu preset's K=20 model (sequences of 93 tokens, whose
# steps cost 0.6x those of K=50's 153) trained until past its phase change, then trained on K=50
# from those weights with a fresh warmup and cosine. Stage 1 pauses every 1000 steps from FIRST to
# LAST and keeps each checkpoint (runs/recipes/NAME_k20/step_S.safetensors), so that stage 2 can
# start from any of them.
#   experiments/curriculum_hmm.sh stage1 NAME FIRST LAST
#   experiments/curriculum_hmm.sh stage2 NAME STEP STEPS [LR]   K=50 from stage 1's step STEP
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$1 name=$2 a=$3 b=$4 lr=${5:-3e-4}
model="--task hmm --soft-targets --positions sinusoidal --init torch --no-attn-bias --d-model 64 --layers 4 --heads 4 --batch 64 --weight-decay 0 --min-lr-frac 0 --clip 1 --threads ${THREADS:-1} --log-every 500"
stage1=runs/recipes/${name}_k20
if [ "$stage" = stage1 ]; then
  for ((s = a; s <= b; s += 1000)); do
    # shellcheck disable=SC2086
    STOP_AFTER=$s experiments/run.sh "${name}_k20" $model --K 20 --lr 1e-3 --warmup 1000 --steps 40000 \
      --eval-every 1000 --eval-seqs 1000 --ckpt-every 1000
    cp "$stage1/checkpoint.safetensors" "$stage1/step_$s.safetensors"
  done
else
  # shellcheck disable=SC2086
  experiments/run.sh "${name}_k50_from${a}_${b}_lr$lr" $model --K 50 --lr "$lr" --warmup $((b / 20)) \
    --steps "$b" --eval-every $((b / 8)) --eval-seqs 1000 --ckpt-every 500 --init-from "$stage1/step_$a.safetensors"
fi
