#!/usr/bin/env bash
# Seed 000's loss-uniqueness claim (issue 18): the `losses` grid (cross-entropy, squared error and
# policy gradient, and fine-tunes from cross-entropy, on the bijection and the HMM), then the
# geometry, ablations and detector of each cell's seed-1 model, kept under
# experiments/verdicts/losses_CELL/ and tabulated by experiments/verdicts.py; the grid's own table
# is copied to experiments/losses_results.md.
#   experiments/losses.sh [PRESET [SEEDS]]        (default: quick 3)
set -euo pipefail
cd "$(dirname "$0")/.."
bwt=${BWT:-build/bwt}
threads=${THREADS:-2}
preset=${1:-quick} seeds=${2:-3}
out=runs/reproduce/losses-$preset
"$bwt" reproduce losses --preset "$preset" --seeds "$seeds" --threads "$threads" --out "$out"
cp "$out/results.md" experiments/losses_results.md
names=()
for task in bijection hmm; do
  for loss in ce mse pg ce_then_mse ce_then_pg; do
    cell=${task}_$loss run=$out/${task}_$loss/seed1 keep=experiments/verdicts/losses_${task}_$loss
    mkdir -p "$keep"
    echo "== $cell" >&2
    "$bwt" geometry "$run" --seqs 1000 --threads "$threads" >"$keep/geometry.txt"
    "$bwt" ablate "$run" --threads "$threads" >"$keep/ablate.txt"
    "$bwt" dynamics detect "$run" --threads "$threads" >"$keep/detect.txt"
    cp "$run"/geometry/*.json "$run"/ablate/*.json "$run"/dynamics/*.json "$run/eval.json" "$keep/" 2>/dev/null || true
    names+=("losses_$cell")
  done
done
/usr/bin/python3 experiments/verdicts.py "${names[@]}"
