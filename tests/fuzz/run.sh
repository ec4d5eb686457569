#!/usr/bin/env bash
# Builds the libFuzzer harnesses into build-fuzz/ (clang, ASan + UBSan) and fuzzes each for a bounded
# time on a copy of its committed seed corpus, so that the repository stays clean. Fails on any
# crash, leak, timeout, out-of-memory, UB or violated invariant; the input that caused it is kept in
# build-fuzz/fuzz-artifacts/<harness>/ (reproduce: build-fuzz/tests/fuzz/fuzz_<harness> FILE).
#
# Usage: tests/fuzz/run.sh [SECONDS]   (seconds per harness; default $BWT_FUZZ_SECONDS, else 60)
# Needs clang, libclang-rt-14-dev and libomp-14-dev: scripts/setup.sh --fuzz installs them.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-${BWT_FUZZ_SECONDS:-60}}
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: seconds must be a positive integer (got '$secs')" >&2; exit 2; }
harnesses=(safetensors checkpoint config)

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DBWT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${harnesses[@]/#/fuzz_}" >/dev/null

# One thread: loading touches no BLAS or OpenMP loop, and spare threads only cost memory. Leaks are
# reported (LSan) and every sanitizer report aborts, which libFuzzer counts as a crash.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# -max_len: checkpoints of tiny models are a few KB (the seeds are at most ~28 KB); -timeout: seconds
# per input, for a hang; -rss_limit_mb: a malloc of more than that is reported as out-of-memory too.
opts=(-max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=1536 -print_final_stats=1
      -dict=tests/fuzz/bwt.dict)
failed=()
for h in "${harnesses[@]}"; do
  corpus=build-fuzz/fuzz-corpus/$h artifacts=build-fuzz/fuzz-artifacts/$h log=build-fuzz/fuzz-$h.log
  rm -rf "$corpus" "$artifacts"
  mkdir -p "$corpus" "$artifacts"
  cp tests/fuzz/corpus/"$h"/* "$corpus"/
  rc=0
  build-fuzz/tests/fuzz/fuzz_"$h" "${opts[@]}" -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  grown=$(find "$corpus" -type f | wc -l)
  if [ "$rc" != 0 ] || [ -z "$execs" ] || [ -n "$(ls -A "$artifacts")" ]; then
    echo "fuzz_$h: FAILED (exit $rc) after ${execs:-?} executions; log $log; input(s):" >&2
    ls "$artifacts"/* >&2 || true
    grep -E -A40 '^==[0-9]+==ERROR|runtime error|invariant violated|round trip differs|^==[0-9]+== ERROR' "$log" | head -n 80 >&2 || tail -n 40 "$log" >&2
    failed+=("$h")
  else
    echo "fuzz_$h: ok, $execs executions in ${secs} s, corpus $(find tests/fuzz/corpus/"$h" -type f | wc -l) -> $grown inputs"
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
