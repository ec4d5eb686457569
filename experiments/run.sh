#!/usr/bin/env bash
# One recipe-search run: trains with build/bwt (or $BWT) into runs/recipes/NAME and keeps what the
# repository records of it (no checkpoints) in experiments/recipes/NAME: the command, config.json,
# the evaluation lines of metrics.jsonl (the frontier: entropy MAE against wall time), eval.json and
# the progress log.
#   experiments/run.sh NAME [bwt train options]
# STOP_AFTER=N stops the run (with a checkpoint) after step N, fresh or resumed.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
bwt=${BWT:-build/bwt}
run=runs/recipes/$name keep=experiments/recipes/$name
mkdir -p "$keep" runs/recipes
[ -e "$run/checkpoint.safetensors" ] && args=(--resume "$run") || args=(--out "$run" "$@")
[ -n "${STOP_AFTER:-}" ] && args+=(--stop-after "$STOP_AFTER")
echo "$bwt train ${args[*]}" >> "$keep/command.txt"
rc=0
"$bwt" train "${args[@]}" >> "$keep/train.log" 2>&1 || rc=$?
cp "$run/config.json" "$keep/" 2>/dev/null || true
cp "$run/eval.json" "$keep/" 2>/dev/null || true
grep '"eval"' "$run/metrics.jsonl" > "$keep/evals.jsonl" 2>/dev/null || true
echo "exit $rc" >> "$keep/train.log"
exit $rc
