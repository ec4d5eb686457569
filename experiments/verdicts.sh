#!/usr/bin/env bash
# The papers' mechanism claims re-tested on the most accurate models of the recipe search: runs
# bwt geometry (and --series), ablate, dynamics timescales and detect on each run directory given
# (trained with --snapshots), keeps their JSON under experiments/verdicts/NAME/ and prints the
# summary table (experiments/verdicts.py).
#   experiments/verdicts.sh runs/recipes/NAME ...
set -euo pipefail
cd "$(dirname "$0")/.."
bwt=${BWT:-build/bwt}
threads=${THREADS:-2}
for run in "$@"; do
  name=$(basename "$run")
  keep=experiments/verdicts/$name
  mkdir -p "$keep"
  echo "== $name" >&2
  "$bwt" geometry "$run" --seqs 1000 --threads "$threads" >"$keep/geometry.txt"
  "$bwt" geometry "$run" --series --threads "$threads" >"$keep/series.txt"
  "$bwt" ablate "$run" --threads "$threads" >"$keep/ablate.txt"
  "$bwt" dynamics timescales "$run" --threads "$threads" >"$keep/timescales.txt"
  "$bwt" dynamics detect "$run" --threads "$threads" >"$keep/detect.txt"
  cp "$run"/geometry/*.json "$run"/ablate/*.json "$run"/dynamics/*.json "$run/eval.json" "$keep/" 2>/dev/null || true
  cp "$run"/geometry/*.png "$keep/" 2>/dev/null || true
done
/usr/bin/python3 experiments/verdicts.py "$@"
