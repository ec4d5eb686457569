#!/usr/bin/env bash
# The crash harness: `bwt train` killed at random points (SIGKILL, SIGTERM and SIGINT after a random
# delay, and SIGKILL at the N-th write through BWT_FAULT=kill-write:N, which lands inside checkpoint
# and metrics writes deterministically), then resumed (`--resume DIR`, some resumes killed too; a
# run killed before its first checkpoint is started again with the same `--out DIR` command) until
# it finishes. Every run must end bit-identical to one uninterrupted reference run: the checkpoint,
# eval.json, positions.csv and config.json byte for byte, metrics.jsonl line by line without its
# wall-time fields, and no temporary files left. Then a stop during an evaluation, and two processes
# on one run directory: exactly one runs, the other fails at once naming the holder's pid.
# Usage: cli_crash.sh BWT_BINARY TMPDIR
set -u
bwt=$1
tmp=$2
rm -rf "$tmp" && mkdir -p "$tmp"
export OMP_NUM_THREADS=1
unset BWT_FAULT
RANDOM=4242 # a fixed seed: the same kill points at the start (what follows depends on where the signals land)
failures=0 checks=0 trials=0 identical=0 resumes=0 restarts=0 killed_resumes=0
landed_kill=0 landed_stop=0 landed_after=0 # where the first kill of each trial landed
LIMIT=60 # seconds any one command may take before it counts as a hang

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# The run: d 64 gives a 1.2 MB checkpoint with the AdamW moments (19 writes of 64 KiB); checkpoints
# at steps 7, 14, ..., 56 and 60, evaluations at 20 and 40 and at the end.
args=(--V 6 --L 5 --d-model 64 --heads 2 --layers 2 --steps 60 --batch 16 --ckpt-every 7 --log-every 5
  --eval-every 20 --eval-seqs 64 --threads 1)

# The metrics log without the wall-time fields (step is always the first key, so each removed field
# follows a comma).
strip_times() { sed -E 's/,"(elapsed_s|train_s|tokens_per_s)":[^,}]*//g' "$1"; }

# attempt DIR SPEC MODE ERR: one bwt train into DIR (MODE fresh: the run's own command with --out;
# resume: --resume DIR), killed as SPEC says: none, KILL:DELAY, TERM:DELAY, INT:DELAY (seconds) or
# write:N (SIGKILL at the N-th write). Sets rc; returns 1 (after reporting) if rc is not one that
# SPEC allows: 0 always; 137 for KILL and write; 130 (stopped with a checkpoint, or killed by
# SIGINT) for INT and TERM; 143 for TERM before the handler is installed. Anything else is an
# error, a crash, or (124, or 137 after TERM/INT) a hang.
attempt() {
  local dir=$1 spec=$2 mode=$3 err=$4 cmd
  if [ "$mode" = fresh ]; then cmd=(train "${args[@]}" --out "$dir"); else cmd=(train --resume "$dir"); fi
  local kind=${spec%%:*} val=${spec#*:}
  case $kind in
    none) { timeout -k 5 $LIMIT "$bwt" "${cmd[@]}" >/dev/null 2>"$err"; rc=$?; } 2>/dev/null ;;
    write) { BWT_FAULT=kill-write:$val timeout -k 5 $LIMIT "$bwt" "${cmd[@]}" >/dev/null 2>"$err"; rc=$?; } 2>/dev/null ;;
    KILL) { timeout --preserve-status -s KILL "$val" "$bwt" "${cmd[@]}" >/dev/null 2>"$err"; rc=$?; } 2>/dev/null ;;
    TERM | INT) { timeout --preserve-status -k $LIMIT -s "$kind" "$val" "$bwt" "${cmd[@]}" >/dev/null 2>"$err"; rc=$?; } 2>/dev/null ;;
  esac
  local allowed="0"
  case $kind in
    KILL | write) allowed="0 137" ;;
    INT) allowed="0 130" ;;
    TERM) allowed="0 130 143" ;;
  esac
  case " $allowed " in *" $rc "*) return 0 ;; esac
  fail "bwt ${cmd[*]} killed by $spec: exit $rc (allowed: $allowed)$([ "$rc" = 124 ] || [ "$rc" = 137 ] && echo ': a hang?'):"
  sed 's/^/    /' "$err"
  return 1
}

# These set a variable rather than print: bash reseeds RANDOM in a command substitution's subshell,
# and the trials are to be the same every time.
# delay: a random delay in seconds between 0.01 s and the reference run's wall time, in $delay_s.
delay() {
  local ms=$((10 + RANDOM % ref_ms))
  delay_s=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
}
# random_spec: a random kill for a resume, a signal after a random delay or a kill at a random
# write, in $spec_r.
random_spec() {
  local sigs=(KILL TERM INT) r=$((RANDOM % 4))
  if [ $r = 3 ]; then
    spec_r="write:$((1 + RANDOM % (writes / 2)))"
  else
    delay
    spec_r="${sigs[$r]}:$delay_s"
  fi
}

# same_as_ref DIR [REF]: the final state of DIR against the reference run REF ($ref if not given);
# reports each difference.
same_as_ref() {
  local dir=$1 ref=${2:-$ref} ok=0 f
  for f in checkpoint.safetensors eval.json positions.csv config.json; do
    cmp -s "$ref/$f" "$dir/$f" || { fail "$dir/$f differs from the reference's"; ok=1; }
  done
  if ! diff <(strip_times "$ref/metrics.jsonl") <(strip_times "$dir/metrics.jsonl") >"$tmp/metrics.diff"; then
    fail "$dir/metrics.jsonl differs from the reference's (wall times aside):"
    head -c 2000 "$tmp/metrics.diff" | cut -c1-300 | sed 's/^/    /'
    ok=1
  fi
  local stray
  stray=$(find "$dir" -name '*.tmp.*')
  [ -z "$stray" ] || { fail "temporary files left in $dir: $stray"; ok=1; }
  return $ok
}

# trial NAME SPEC [SPEC...]: a fresh run killed as the first SPEC says, then resumed (or restarted)
# until it finishes; the resumes are killed as the further SPECs say, then at random.
trial() {
  local name=$1 spec=$2 dir=$tmp/trials/$1 k=0 mode=fresh ok=1 s=$2 history=""
  shift 2
  local later=("$@")
  trials=$((trials + 1))
  while :; do
    k=$((k + 1))
    attempt "$dir" "$s" "$mode" "$tmp/trials/$name.err$k" || { ok=0; break; }
    if [ $k = 1 ]; then
      case $rc in
        0) landed_after=$((landed_after + 1)) ;;
        130) landed_stop=$((landed_stop + 1)) ;;
        *) landed_kill=$((landed_kill + 1)) ;;
      esac
    fi
    [ "$rc" = 0 ] && break
    if [ $k -ge 8 ]; then
      fail "$name: not finished after $k attempts (a dead end?)"
      ok=0
      break
    fi
    # A third of the first two resumes are killed too; later ones run to the end.
    s=none
    if [ $k -le ${#later[@]} ]; then
      s=${later[$((k - 1))]}
    elif [ $k -le 2 ] && [ $((RANDOM % 3)) = 0 ]; then
      random_spec
      s=$spec_r
    fi
    [ "$s" = none ] || killed_resumes=$((killed_resumes + 1))
    if [ -e "$dir/checkpoint.safetensors" ]; then
      mode=resume
      resumes=$((resumes + 1))
    else
      mode=fresh # killed before its first checkpoint: the same command starts it again
      restarts=$((restarts + 1))
    fi
    history="$history, then $mode$([ "$s" = none ] || echo " killed by $s")"
  done
  checks=$((checks + 1))
  if [ $ok = 1 ] && same_as_ref "$dir"; then
    identical=$((identical + 1))
  elif [ $ok = 1 ]; then
    echo "    ($name: killed by $spec$history)"
  fi
}

mkdir -p "$tmp/trials"
start_s=$(date +%s)
# The reference: one uninterrupted run.
ref=$tmp/ref
t0=$(date +%s%N)
attempt "$ref" none fresh "$tmp/ref.err" || { echo "cli_crash: the reference run failed"; exit 1; }
ref_ms=$((($(date +%s%N) - t0) / 1000000))
[ $ref_ms -ge 50 ] || ref_ms=50

# How many writes the run makes: the smallest N at which kill-write:N does not fire (doubling, then
# bisection). Each probe is itself a crash, resumed as a trial below would be.
lo=1 hi=64
while :; do
  rm -rf "$tmp/probe"
  attempt "$tmp/probe" "write:$hi" fresh "$tmp/probe.err" || exit 1
  [ "$rc" = 0 ] && break
  lo=$hi hi=$((hi * 2))
  [ $hi -le 65536 ] || { echo "cli_crash: kill-write never stops firing"; exit 1; }
done
while [ $((hi - lo)) -gt 1 ]; do
  mid=$(((lo + hi) / 2))
  rm -rf "$tmp/probe"
  attempt "$tmp/probe" "write:$mid" fresh "$tmp/probe.err" || exit 1
  if [ "$rc" = 0 ]; then hi=$mid; else lo=$mid; fi
done
writes=$lo
echo "cli_crash: reference run $ref_ms ms, $writes writes"

# A finished run resumed again is left as it was.
cp -a "$ref" "$tmp/again"
checks=$((checks + 1))
attempt "$tmp/again" none resume "$tmp/again.err" && same_as_ref "$tmp/again" || echo "    (resuming a finished run)"

# Kill trials: SIGKILL at 30 writes spread over the whole run (the first checkpoint's writes, where
# no checkpoint exists yet, the metrics lines, every later checkpoint, eval.json and positions.csv,
# the last write), then 8 each of SIGKILL, SIGTERM and SIGINT after a random delay.
n_write=30 n_sig=8
for i in $(seq 0 $((n_write - 1))); do
  trial "write$i" "write:$((1 + i * (writes - 1) / (n_write - 1)))"
done
for sig in KILL TERM INT; do
  for i in $(seq $n_sig); do
    delay
    trial "$sig$i" "$sig:$delay_s"
  done
done
# Resumes killed at their first writes: the log repair's rewrite of metrics.jsonl, then config.json.
trial resume_writes "write:$((writes / 2))" write:1 write:2 write:3

# A stop during an evaluation: with many held-out sequences the evaluation at step 20 takes most of
# the run, and SIGTERM is sent as soon as the log shows step 15 (steps take well under a
# millisecond). It must say that it stopped during an evaluation (a few tries in case the signal
# missed it), and the resumed run must still equal an uninterrupted one.
eval_args=(--V 6 --L 5 --d-model 16 --heads 2 --layers 1 --steps 40 --batch 8 --log-every 5 --eval-every 20
  --eval-seqs 40000 --threads 1)
{ timeout -k 5 $LIMIT "$bwt" train "${eval_args[@]}" --out "$tmp/eval_ref" >/dev/null 2>"$tmp/eval_ref.err"; rc=$?; } 2>/dev/null
[ "$rc" = 0 ] || { fail "the reference run with long evaluations: exit $rc"; sed 's/^/    /' "$tmp/eval_ref.err"; }
for try in 1 2 3; do
  d=$tmp/eval_stop$try
  "$bwt" train "${eval_args[@]}" --out "$d" >/dev/null 2>"$d.err" &
  p=$!
  for _ in $(seq $((LIMIT * 100))); do grep -qs '"step":15,' "$d/metrics.jsonl" && break; kill -0 $p 2>/dev/null || break; sleep 0.01; done
  kill -TERM $p 2>/dev/null
  wait $p
  rc=$?
  grep -q "stopped at step 20 of 40 during an evaluation" "$d.err" && break
done
checks=$((checks + 1))
if [ "$rc" != 130 ] || ! grep -q "during an evaluation" "$d.err"; then
  fail "SIGTERM during an evaluation (3 tries): exit $rc, want 130 and 'stopped at step 20 of 40 during an evaluation':"
  sed 's/^/    /' "$d.err"
else
  trials=$((trials + 1)) resumes=$((resumes + 1))
  { timeout -k 5 $LIMIT "$bwt" train --resume "$d" >/dev/null 2>"$d.err2"; rc=$?; } 2>/dev/null
  checks=$((checks + 1))
  if [ "$rc" != 0 ]; then
    fail "resuming a run stopped during an evaluation: exit $rc"
    sed 's/^/    /' "$d.err2"
  elif same_as_ref "$d" "$tmp/eval_ref"; then
    identical=$((identical + 1))
  else
    echo "    (stopped by SIGTERM during the evaluation at step 20, then resumed)"
  fi
fi

# Two processes on one run directory: exactly one runs, the other fails at once naming its pid.
long=(train --V 6 --L 5 --d-model 16 --heads 2 --layers 1 --steps 1000000 --batch 8 --ckpt-every 3000
  --log-every 1000 --eval-seqs 8 --threads 1)
shared=$tmp/shared
# wait_one PID1 PID2: waits (up to LIMIT) until one of them has exited; sets gone (its pid) and
# gone_rc, or gone="" on a hang.
wait_one() {
  gone=""
  for _ in $(seq $((LIMIT * 10))); do
    for p in "$@"; do
      if ! kill -0 "$p" 2>/dev/null; then
        gone=$p
        wait "$p"
        gone_rc=$?
        return
      fi
    done
    sleep 0.1
  done
}
# stop_run PID: SIGTERM, then the exit status (130: stopped with a checkpoint); SIGKILL on a hang.
stop_run() {
  kill -TERM "$1" 2>/dev/null
  wait_one "$1"
  [ -n "$gone" ] || { kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; gone_rc=hang; }
  checks=$((checks + 1))
  [ "$gone_rc" = 130 ] || fail "SIGTERM to a running bwt train: exit $gone_rc, want 130 (stopped with a checkpoint)"
}
# loser_ok RC ERR WINNER: exit 1, the last stderr line naming the winner's pid.
loser_ok() {
  checks=$((checks + 1))
  if [ "$1" != 1 ] || ! tail -n 1 "$2" | grep -q "is in use by pid $3\b"; then
    fail "a second bwt train on a busy run directory: exit $1, want 1 and 'is in use by pid $3':"
    sed 's/^/    /' "$2"
  fi
}

# race ERR1 ERR2 ARGS...: two `bwt ARGS` at once; exactly one must go on running and the other fail
# at once naming its pid. Sets winner to the running one's pid ("" after a failure, with nothing
# left running).
race() {
  local e1=$1 e2=$2
  shift 2
  "$bwt" "$@" >/dev/null 2>"$e1" &
  local a=$!
  "$bwt" "$@" >/dev/null 2>"$e2" &
  local b=$!
  winner=""
  wait_one $a $b
  if [ -z "$gone" ]; then
    fail "two bwt $* both ran for $LIMIT s"
    kill -KILL $a $b 2>/dev/null
    wait $a $b 2>/dev/null
    return
  fi
  local other=$a err=$e2
  [ "$gone" = $a ] && other=$b err=$e1
  checks=$((checks + 1))
  if ! kill -0 $other 2>/dev/null; then
    wait $other
    fail "of two bwt $* neither is running (exits $gone_rc and $?):"
    sed 's/^/    /' "$e1" "$e2"
    return
  fi
  loser_ok "$gone_rc" "$err" $other
  winner=$other
}

race "$tmp/p1.err" "$tmp/p2.err" "${long[@]}" --out "$shared"
if [ -n "$winner" ]; then
  # Once it has a checkpoint, --resume of the running directory fails the same way.
  for _ in $(seq $((LIMIT * 10))); do
    [ -e "$shared/checkpoint.safetensors" ] || ! kill -0 $winner 2>/dev/null && break
    sleep 0.1
  done
  { timeout -k 5 $LIMIT "$bwt" train --resume "$shared" >/dev/null 2>"$tmp/p3.err"; rc=$?; } 2>/dev/null
  loser_ok $rc "$tmp/p3.err" $winner
  stop_run $winner
  # The lock went with the process: two resumes at once again leave one running.
  race "$tmp/p4.err" "$tmp/p5.err" train --resume "$shared"
  [ -z "$winner" ] || stop_run $winner
fi

echo "cli_crash: $trials kill trials ($n_write at a write, $((3 * n_sig)) by a signal after a random delay, 1 with its resumes killed at their first writes, 1 during an evaluation): $landed_kill killed mid-run, $landed_stop stopped by the signal with a checkpoint, $landed_after finished before the signal came"
echo "cli_crash: $resumes resumes and $restarts restarts of runs killed before their first checkpoint ($killed_resumes of these killed too); $identical of $trials trials finished bit-identical to the uninterrupted run"
echo "cli_crash: $checks checks, $failures failures, in $(($(date +%s) - start_s)) s"
[ "$failures" = 0 ]
