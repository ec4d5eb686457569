#!/usr/bin/env bash
# The MPI build through mpirun -np 2 on this machine (CI runs it as root; docs/cluster.md):
# - a grid over 2 ranks equals the same grid run by one process, cell for cell (every eval file
#   byte for byte, the table once);
# - data-parallel training on 2 ranks is bit-identical across reruns, its loss curve and weights
#   within a stated tolerance of one process at the same global batch; it resumes on 1 rank from a
#   2-rank checkpoint and on 2 ranks from a 1-rank one, and bit-exactly on 2 from 2;
# - Ctrl-C (mpirun's SIGTERM to every rank) stops all ranks with a checkpoint, and a rank killed
#   mid-run brings the job down with mpirun's message naming it; either way the checkpoint loads and
#   the resumed run ends bit-identical to an uninterrupted one;
# - commands other than train and reproduce refuse to run as several ranks.
# Usage: mpi_cli.sh BWT_BINARY TMPDIR   (the binary of a -DBWT_MPI=ON build)
set -u
source "$(dirname "$0")/lib/cli_checks.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
# Root may run mpirun here (CI); vader's single-copy mechanism needs ptrace rights a container may lack.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi() { timeout "$OK_TIMEOUT" mpirun --oversubscribe -np "$@"; }
compare() { python3 "$here/lib/compare_checkpoints.py" "$@" >/dev/null; }
small="--steps 200 --batch 32 --threads 1 --log-every 20 --eval-seqs 200 --ckpt-every 50"

# A grid over two ranks and over one process.
ok reproduce boundary --steps 12 --seeds 2 --threads 1 --out "$tmp/grid1"
mpi 2 "$bwt" reproduce boundary --steps 12 --seeds 2 --threads 1 --out "$tmp/grid2" >"$tmp/grid2.out" 2>"$tmp/grid2.err"
check "grid over 2 ranks: exit 0" test $? = 0
check "grid over 2 ranks: the table printed once" test "$(grep -c '^# bwt reproduce boundary' "$tmp/grid2.out")" = 1
evals=$(cd "$tmp/grid1" && find . -name 'eval*.json' | sort)
check "grid: 12 cell runs evaluated" test "$(echo "$evals" | wc -l)" = 12
for f in $evals; do check "grid: $f the same over 2 ranks" cmp -s "$tmp/grid1/$f" "$tmp/grid2/$f"; done
check "grid: results.csv the same" cmp -s "$tmp/grid1/results.csv" "$tmp/grid2/results.csv"
check "grid: 12 cell runs trained" test "$(grep -c 'training into' "$tmp/grid2.err")" = 12
check "grid: rank 0 trained cells" grep -q '^rank 0: \[' "$tmp/grid2.err"
check "grid: rank 1 trained cells" grep -q '^rank 1: \[' "$tmp/grid2.err"

# Ctrl-C during a grid over 2 ranks: each rank's cell saved; the same command resumes them.
mpi 2 "$bwt" reproduce boundary --steps 1000000 --seeds 1 --threads 1 --out "$tmp/grid_int" >/dev/null 2>"$tmp/grid_int.err" &
job=$!
for _ in $(seq 100); do [ "$(grep -c 'training into' "$tmp/grid_int.err")" = 2 ] && break; sleep 0.2; done
sleep 2
pkill -INT -f "^mpirun .*--out $tmp/grid_int\$"
wait $job
check "grid Ctrl-C: both ranks' cells saved" test "$(find "$tmp/grid_int" -name checkpoint.safetensors | wc -l)" = 2
check "grid Ctrl-C: both say so" test "$(grep -c 'interrupted; run the same command again to resume' "$tmp/grid_int.err")" = 2
mpi 2 "$bwt" reproduce boundary --steps 1000000 --seeds 1 --threads 1 --out "$tmp/grid_int" >/dev/null 2>"$tmp/grid_int.err" &
job=$!
for _ in $(seq 100); do [ "$(grep -c 'resuming' "$tmp/grid_int.err")" = 2 ] && break; sleep 0.2; done
pkill -INT -f "^mpirun .*--out $tmp/grid_int\$"
wait $job
check "grid Ctrl-C: the same command resumes both cells" test "$(grep -c 'resuming .* at step [1-9]' "$tmp/grid_int.err")" = 2

# Data-parallel training: one process, two ranks, two ranks again.
ok train $small --out "$tmp/one"
mpi 2 "$bwt" train $small --out "$tmp/two" 2>"$tmp/two.err"
check "2 ranks: exit 0" test $? = 0
check "2 ranks: says how the batch is split" grep -q 'data-parallel over 2 MPI ranks: 16 sequences each of the batch of 32' "$tmp/two.err"
mpi 2 "$bwt" train $small --out "$tmp/two_again" 2>/dev/null
check "2 ranks: reruns are bit-identical" cmp -s "$tmp/two/checkpoint.safetensors" "$tmp/two_again/checkpoint.safetensors"
check "2 ranks: the same log, timings aside" cmp -s <(sed 's/"tokens_per_s.*//; s/"elapsed_s.*//' "$tmp/two/metrics.jsonl") <(sed 's/"tokens_per_s.*//; s/"elapsed_s.*//' "$tmp/two_again/metrics.jsonl")
# Summation order differs with the rank count: measured here 1.7e-5 of the largest weight after 200 steps.
check "2 ranks against 1 process: weights within 1e-3 of the largest" compare "$tmp/one/checkpoint.safetensors" "$tmp/two/checkpoint.safetensors" 1e-3
check "2 ranks against 1 process: every logged loss within 1e-4 (relative)" python3 -c '
import json, sys
def losses(p): return [json.loads(l)["loss"] for l in open(p) if "\"loss\"" in l]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) == 10, (len(a), len(b))
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
assert worst < 1e-4, worst' "$tmp/one/metrics.jsonl" "$tmp/two/metrics.jsonl"

# Ranks x threads: 2 ranks of 2 threads each (oversubscribed here) train the same run.
mpi 2 "$bwt" train ${small/--threads 1/--threads 2} --out "$tmp/two_by_two" 2>/dev/null
check "2 ranks x 2 threads: within 1e-3 of 1 process" compare "$tmp/one/checkpoint.safetensors" "$tmp/two_by_two/checkpoint.safetensors" 1e-3

# Resume across rank counts, and bit-exactly at the same count.
mpi 2 "$bwt" train $small --stop-after 100 --out "$tmp/two_stop" 2>/dev/null
cp -r "$tmp/two_stop" "$tmp/two_stop_1"
mpi 2 "$bwt" train --resume "$tmp/two_stop" 2>/dev/null
check "2 ranks stopped and resumed on 2: bit-identical to uninterrupted" cmp -s "$tmp/two/checkpoint.safetensors" "$tmp/two_stop/checkpoint.safetensors"
ok train --resume "$tmp/two_stop_1"
check "2-rank checkpoint resumed on 1 process: within 1e-3" compare "$tmp/one/checkpoint.safetensors" "$tmp/two_stop_1/checkpoint.safetensors" 1e-3
check "2-rank checkpoint resumed on 1 process: finished" test -s "$tmp/two_stop_1/eval.json"
ok train $small --stop-after 100 --out "$tmp/one_stop"
mpi 2 "$bwt" train --resume "$tmp/one_stop" 2>/dev/null
check "1-process checkpoint resumed on 2 ranks: within 1e-3" compare "$tmp/one/checkpoint.safetensors" "$tmp/one_stop/checkpoint.safetensors" 1e-3

long="--steps 100000 --batch 32 --threads 1 --log-every 50 --eval-seqs 200 --ckpt-every 100"
# Ctrl-C: mpirun sends every rank SIGTERM; they agree on a step and rank 0 saves it.
mpi 2 "$bwt" train $long --out "$tmp/int" >/dev/null 2>"$tmp/int.err" &
job=$!
sleep 4
pkill -INT -f "^mpirun .*--out $tmp/int\$"
wait $job
check "Ctrl-C: mpirun exits non-zero" test $? != 0
check "Ctrl-C: rank 0 saved and said so" grep -q 'stopped at step [0-9]* of 100000; checkpoint saved' "$tmp/int.err"
ok eval "$tmp/int" --eval-seqs 16
step=$(sed -n 's/.*stopped at step \([0-9]*\) of.*/\1/p' "$tmp/int.err")
mpi 2 "$bwt" train --resume "$tmp/int" --stop-after $((step + 30)) 2>/dev/null
mpi 2 "$bwt" train $long --stop-after $((step + 30)) --out "$tmp/int_ref" 2>/dev/null
check "Ctrl-C: resumed, bit-identical to an uninterrupted run" cmp -s "$tmp/int/checkpoint.safetensors" "$tmp/int_ref/checkpoint.safetensors"

# A rank killed: mpirun stops the job and names it; the last checkpoint is whole.
mpi 2 "$bwt" train $long --out "$tmp/kill" >/dev/null 2>"$tmp/kill.err" &
job=$!
sleep 4
for p in $(pgrep -f "train $long --out $tmp/kill"); do
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && kill -9 "$p"
done
wait $job
check "a rank killed: mpirun exits non-zero" test $? != 0
check "a rank killed: the message names rank 1" grep -q 'rank 1 .*signal 9' "$tmp/kill.err"
ok eval "$tmp/kill" --eval-seqs 16
step=$(python3 -c 'import json,sys; print(max(json.loads(l)["step"] for l in open(sys.argv[1])))' "$tmp/kill/metrics.jsonl")
mpi 2 "$bwt" train --resume "$tmp/kill" --stop-after $((step + 30)) 2>/dev/null
mpi 2 "$bwt" train $long --stop-after $((step + 30)) --out "$tmp/kill_ref" 2>/dev/null
check "a rank killed: resumed, bit-identical to an uninterrupted run" cmp -s "$tmp/kill/checkpoint.safetensors" "$tmp/kill_ref/checkpoint.safetensors"

# What cannot run as ranks says so.
mpi 2 "$bwt" eval "$tmp/one" >/dev/null 2>"$tmp/err"
check "eval as 2 ranks: refused" grep -q 'bwt eval: runs as one process, not as 2 MPI ranks' "$tmp/err"
mpi 2 "$bwt" train --steps 10 --batch 1 --threads 1 --out "$tmp/tiny" >/dev/null 2>"$tmp/err"
check "a batch smaller than the ranks: refused" grep -q '2 processes share a batch of 1 sequences' "$tmp/err"
check "the version names the MPI build" sh -c "'$bwt' --version | grep -q 'MPI build'"

finish mpi_cli
