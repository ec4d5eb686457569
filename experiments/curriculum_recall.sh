#!/usr/bin/env bash
# Associative recall (64 pairs) through a curriculum: the same model trained on 8, 16, 32 and then
# 64 pairs, each stage starting from the last one's weights (bwt train --init-from), since 3 queries
# among 64 pairs give a small model too little signal to find the binding from scratch (a plain
# 64-pair run stays at chance: recall_d64L2_torch_wd0_30k, recall_q32_*). Sinusoidal positions, so
# that what a short stage learns holds at every position of a longer one.
#   experiments/curriculum_recall.sh NAME "MODEL FLAGS" STEPS_PER_STAGE FINAL_STEPS
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 model=$2 steps=$3 final=$4
common="--task recall --positions sinusoidal --init torch --no-attn-bias $model --batch 64 --lr 1e-3 --weight-decay 0 --min-lr-frac 0 --clip 1 --log-every 500 --ckpt-every 2000 --eval-seqs 500 --threads ${THREADS:-1}"
prev=""
for pairs in 8 16 32 64; do
  n=$steps queries=8 fillers=$((pairs / 2))
  [ "$pairs" = 64 ] && n=$final queries=3 fillers=32
  stage=${name}_p$pairs
  # shellcheck disable=SC2086
  experiments/run.sh "$stage" $common --pairs $pairs --queries $queries --fillers $fillers --warmup $((n / 10)) \
    --steps $n --eval-every $((n / 5)) ${prev:+--init-from runs/recipes/$prev}
  prev=$stage
done
