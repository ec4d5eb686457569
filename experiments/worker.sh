#!/usr/bin/env bash
# Takes recipe runs one at a time from experiments/queue.txt (a line: NAME bwt-train-options) and
# runs them with experiments/run.sh until the queue is empty. Start one worker per core:
#   experiments/worker.sh &  experiments/worker.sh &
set -uo pipefail
cd "$(dirname "$0")/.."
queue=experiments/queue.txt
while :; do
  line=$(flock "$queue.lock" bash -c "head -n 1 '$queue'; sed -i 1d '$queue'" 2>/dev/null)
  [ -n "$line" ] || { sleep 20; [ -s "$queue" ] && continue; break; }
  # shellcheck disable=SC2086
  experiments/run.sh $line
done
