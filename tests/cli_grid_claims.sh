#!/usr/bin/env bash
# The claims by which several processes share a bwt reproduce grid (docs/cluster.md), without MPI:
# a cell whose claim another process holds is left to it while the others are trained, the grid
# waits for it, and when that process dies (its lock with it) the cell is taken up and finished; two
# plain invocations on one grid split its cells between them and agree with one invocation's runs.
# Usage: cli_grid_claims.sh BWT_BINARY TMPDIR
set -u
source "$(dirname "$0")/lib/cli_checks.sh" "$@"
grid="boundary --steps 12 --seeds 1 --threads 1"

ok reproduce $grid --out "$tmp/one"

# Another process holds modular_opaque seed 1 (flock(1) on its claim file, as bwt's flock).
mkdir -p "$tmp/held/modular_opaque"
flock -o "$tmp/held/modular_opaque/seed1.claim" sleep 600 >/dev/null 2>&1 &
holder=$!
sleep 1
"$bwt" reproduce $grid --out "$tmp/held" >"$tmp/held.out" 2>"$tmp/held.err" &
job=$!
for _ in $(seq 1500); do grep -q 'waiting for 1 cell runs that other processes hold' "$tmp/held.err" && break; sleep 0.2; done
check "a held cell is left to its holder while the rest are trained" grep -q 'waiting for 1 cell runs that other processes hold' "$tmp/held.err"
check "the held cell not trained meanwhile" test ! -e "$tmp/held/modular_opaque/seed1/checkpoint.safetensors"
check "the grid waits for it" kill -0 $job
pkill -P $holder sleep
kill $holder  # flock -o: the lock is the flock process's alone
wait $job
check "its holder gone, the cell is taken up and the grid ends: exit 0" test $? = 0
check "the taken-up cell is finished" test -e "$tmp/held/modular_opaque/seed1/done"
for f in $(cd "$tmp/one" && find . -name 'eval*.json'); do check "held grid: $f as one process's" cmp -s "$tmp/one/$f" "$tmp/held/$f"; done

# Two invocations at once share the grid; both end with every cell done and print the same table.
"$bwt" reproduce $grid --out "$tmp/two" >"$tmp/a.out" 2>"$tmp/a.err" &
a=$!
"$bwt" reproduce $grid --out "$tmp/two" >"$tmp/b.out" 2>"$tmp/b.err"
rc_b=$?
wait $a
check "two invocations: both exit 0" test "$?$rc_b" = 00
check "two invocations: each trained some cells" sh -c "grep -q 'training into' '$tmp/a.err' && grep -q 'training into' '$tmp/b.err'"
check "two invocations: 6 runs trained in all" test "$(cat "$tmp/a.err" "$tmp/b.err" | grep -c 'training into')" = 6
for f in $(cd "$tmp/one" && find . -name 'eval*.json'); do check "two invocations: $f as one process's" cmp -s "$tmp/one/$f" "$tmp/two/$f"; done

finish cli_grid_claims
