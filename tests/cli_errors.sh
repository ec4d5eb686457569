#!/usr/bin/env bash
# The command line through the real binary: bad flags, impossible sizes, bad files and unwritable
# outputs each give one line on stderr naming the problem and a non-zero exit; good use works.
# Usage: cli_errors.sh BWT_BINARY TMPDIR
set -u
source "$(dirname "$0")/lib/cli_checks.sh" "$@"

expect 2 "unknown command 'nope'" -- nope
expect 2 "unknown option '--nope'" -- train --nope
expect 2 "unknown option '--bogus'" -- eval x --bogus=1
expect 2 "needs an integer, got 'abc'" -- train --steps abc
expect 2 "needs a finite number, got '1e'" -- train --lr 1e
expect 2 "needs a non-negative integer" -- train --seed -3
expect 2 "needs a value" -- train --steps
expect 2 "unexpected argument 'extra'" -- train extra
expect 2 "missing argument" -- eval
expect 2 "L=25 > V=20" -- train --L 25 --out "$tmp/never"
expect 2 "layers must be" -- train --layers 0 --out "$tmp/never"
expect 2 "heads (5) must divide" -- train --heads 5 --out "$tmp/never"
expect 2 "steps must be in \\[1, 1e+09\\] (got 0)" -- train --steps 0 --out "$tmp/never"
expect 2 "unknown architecture 'cnn'" -- train --arch cnn
expect 2 "unknown norm 'batch'" -- train --norm batch
expect 2 "unknown preset 'huge'" -- train --preset huge
expect 2 "preset cpu has no recipe for --task sticky" -- train --preset cpu --task sticky
expect 2 "unknown task 'maze'" -- train --task maze --out "$tmp/never"
expect 2 "S (states) must be in 2..20" -- train --task hmm --S 1 --out "$tmp/never"
expect 2 "K (observations) must be in" -- sample --task hmm --K 0
expect 2 "modular: p must be in 2..257" -- sample --task modular --p 1
expect 2 "continuous inputs need --arch transformer or lstm or mamba" -- train --task sticky --arch mlp --out "$tmp/never"
[ ! -e "$tmp/never" ] || { echo "FAIL: a rejected run created its directory"; failures=$((failures + 1)); }

# Unwritable output: below a regular file.
touch "$tmp/afile"
expect 1 "afile" -- train --steps 2 --batch 2 --out "$tmp/afile/run"

# A tiny good run, then the same directory again, then bad resumes.
ok train --V 4 --L 3 --steps 4 --batch 4 --d-model 8 --heads 2 --layers 1 --eval-seqs 8 --out "$tmp/run"
for f in config.json metrics.jsonl checkpoint.safetensors eval.json positions.csv; do
  checks=$((checks + 1))
  [ -s "$tmp/run/$f" ] || { echo "FAIL: run directory lacks $f"; failures=$((failures + 1)); }
done
expect 1 "already holds a run" -- train --V 4 --L 3 --steps 4 --out "$tmp/run"
expect 2 "cannot be changed" -- train --resume "$tmp/run" --batch 3
expect 1 "holds no checkpoint" -- train --resume "$tmp/nothing"
ok eval "$tmp/run" --eval-seqs 16 --json "$tmp/eval.json" --csv "$tmp/eval.csv"
# bwt reproduce: a tiny grid (the cpu preset: each modular cell is two runs), then a rerun that skips every
# finished run and rewrites the tables.
ok reproduce boundary --steps 12 --seeds 2 --out "$tmp/rep"
for f in results.md results.csv modular_opaque/seed2/eval.json modular_opaque/seed2/done; do
  checks=$((checks + 1))
  [ -s "$tmp/rep/$f" ] || { echo "FAIL: reproduce wrote no $f"; failures=$((failures + 1)); }
done
checks=$((checks + 1))
[ "$(grep -c '^"modular' "$tmp/rep/results.csv")" = 6 ] || { echo "FAIL: results.csv rows"; cat "$tmp/rep/results.csv"; failures=$((failures + 1)); }
ok reproduce boundary --steps 12 --seeds 2 --out "$tmp/rep"
checks=$((checks + 1))
[ "$(grep -c 'done, skipped' "$tmp/err")" = 12 ] || { echo "FAIL: rerun did not skip"; cat "$tmp/err"; failures=$((failures + 1)); }
# Every cell of every grid and preset is a valid configuration.
for grid in paper1 primitives boundary; do
  for preset in cpu quick paper; do
    ok reproduce $grid --preset $preset --dry-run
  done
done
checks=$((checks + 1))
"$bwt" reproduce paper1 --preset paper --dry-run | grep -q "hmm_transformer .*d 256 .*layers 9 .*50000 steps" ||
  { echo "FAIL: paper preset of hmm_transformer"; failures=$((failures + 1)); }
# The cpu preset's recall curriculum: stage cells of the cpu preset only, each started from the last.
checks=$((checks + 2))
"$bwt" reproduce paper1 --dry-run --out R | grep -q "^recall_transformer .*pairs=64 .* from R/recall_transformer_p32/seed1/checkpoint.safetensors$" ||
  { echo "FAIL: the recall cell does not start from its last stage"; failures=$((failures + 1)); }
"$bwt" reproduce paper1 --preset quick --dry-run | grep -q "recall_transformer_p" &&
  { echo "FAIL: the quick preset lists the cpu curriculum's stages"; failures=$((failures + 1)); }
expect 2 "through a curriculum of runs: bwt reproduce runs it (cell recall_transformer)" -- train --preset cpu --task recall
expect 2 "cell recall_transformer_p16 starts from another cell's run, so --out must not contain white space" -- reproduce paper1 --dry-run --out "a b"
expect 2 "unknown grid 'nope'" -- reproduce nope
expect 2 "unknown preset 'huge'" -- reproduce paper1 --preset huge
# Ctrl-C stops with a checkpoint and exit 130; the same command resumes that run.
checks=$((checks + 1))
timeout --preserve-status -s INT 2 "$bwt" reproduce boundary --steps 1000000 --seeds 1 --out "$tmp/rep_int" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" = 130 ] && [ -s "$tmp/rep_int/modular_integer_stage1/seed1/checkpoint.safetensors" ] ||
  { echo "FAIL: interrupted reproduce: exit $rc"; cat "$tmp/err"; failures=$((failures + 1)); }
checks=$((checks + 1))
timeout --preserve-status -s INT 2 "$bwt" reproduce boundary --steps 1000000 --seeds 1 --out "$tmp/rep_int" >/dev/null 2>"$tmp/err"
grep -q "resuming .*modular_integer_stage1/seed1 at step [1-9]" "$tmp/err" || { echo "FAIL: reproduce did not resume"; cat "$tmp/err"; failures=$((failures + 1)); }

# The HMM task end to end through the command line: a run, its eval, a resume.
ok train --task hmm --K 4 --steps 4 --batch 4 --d-model 8 --heads 2 --layers 1 --eval-seqs 8 --stop-after 2 --out "$tmp/hmm"
ok train --resume "$tmp/hmm"
ok eval "$tmp/hmm" --eval-seqs 8
checks=$((checks + 1))
grep -q "on hmm S=5 O=5 K=4, step 4" "$tmp/out" || { echo "FAIL: hmm eval header"; cat "$tmp/out"; failures=$((failures + 1)); }
# Length generalisation: learned positions stop at the training length, sinusoids do not.
expect 1 "learned positions for 61" -- eval "$tmp/hmm" --K 5 --eval-seqs 8
expect 2 "V is a setting of task bijection" -- eval "$tmp/hmm" --V 5
expect 2 "cannot change it" -- eval "$tmp/hmm" --task bijection
expect 2 "max-T 10 is shorter" -- train --task hmm --K 4 --max-T 10 --out "$tmp/never"
ok train --task hmm --K 4 --steps 2 --batch 4 --d-model 8 --heads 2 --layers 1 --eval-seqs 8 --positions sinusoidal --out "$tmp/hmm_sin"
ok eval "$tmp/hmm_sin" --K 9 --eval-seqs 8 --per-position
checks=$((checks + 1))
grep -q "on hmm S=5 O=5 K=9" "$tmp/out" && [ "$(grep -c '^ *8 ' "$tmp/out")" = 1 ] ||
  { echo "FAIL: sinusoidal eval at K=9"; cat "$tmp/out"; failures=$((failures + 1)); }
expect 1 "needs --max-T >= 81" -- train --task hmm --K 4 --position-jitter 20 --max-T 80 --out "$tmp/never"
expect 2 "the model has none" -- train --task hmm --K 4 --position-jitter 20 --positions none --out "$tmp/never"
expect 2 "position-jitter must be in" -- train --task hmm --K 4 --position-jitter -1 --out "$tmp/never"
ok train --task hmm --K 4 --steps 2 --batch 4 --d-model 8 --heads 2 --layers 1 --eval-seqs 8 --max-T 80 --position-jitter 19 --position-jitter-from 53 --out "$tmp/hmm_jitter"
checks=$((checks + 1))
grep -q '"position_jitter":.*19' "$tmp/hmm_jitter/config.json" && grep -q '"position_jitter_from":.*53' "$tmp/hmm_jitter/config.json" ||
  { echo "FAIL: position_jitter in config.json"; failures=$((failures + 1)); }
ok train --task hmm --K 4 --steps 2 --batch 4 --d-model 8 --heads 2 --layers 1 --eval-seqs 8 --max-T 80 --out "$tmp/hmm_long"
ok eval "$tmp/hmm_long" --K 8 --eval-seqs 8
checks=$((checks + 1))
grep -q "entropy MAE" "$tmp/out" && [ -s "$tmp/eval.json" ] && [ "$(wc -l <"$tmp/eval.csv")" = 4 ] ||
  { echo "FAIL: eval output"; failures=$((failures + 1)); }

# Bad checkpoint files.
ck="$tmp/run/checkpoint.safetensors"
expect 1 "cannot read" -- eval "$tmp/missing.safetensors"
: >"$tmp/empty.safetensors"
expect 1 "truncated" -- eval "$tmp/empty.safetensors"
head -c $(($(stat -c %s "$ck") - 10)) "$ck" >"$tmp/cut.safetensors"
expect 1 "truncated" -- eval "$tmp/cut.safetensors"
head -c 100 /dev/urandom >"$tmp/noise.safetensors"
expect 1 "noise.safetensors" -- eval "$tmp/noise.safetensors"
# Edited files from "another tool": the edit is the same length and the checksum key is renamed away
# (files without one load), so the version and format checks themselves are what refuse them.
perl -pe 's/"format_version":\s*"1"/"format_version":"7"/; s/"bwt_crc32"/"no_crc_32"/' "$ck" >"$tmp/v7.safetensors"
expect 1 "format version 7; this bwt reads version 1" -- eval "$tmp/v7.safetensors"
perl -pe 's/"format":\s*"bwt-checkpoint"/"format":"xyz-checkpoint"/; s/"bwt_crc32"/"no_crc_32"/' "$ck" >"$tmp/other.safetensors"
expect 1 "is not a bwt checkpoint" -- eval "$tmp/other.safetensors"
expect 1 "cannot write" -- eval "$tmp/run" --eval-seqs 4 --json "$tmp/afile/x.json"

# geometry and ablate: reports, figures, clear errors.
ok train --V 4 --L 3 --steps 6 --batch 4 --d-model 8 --heads 2 --layers 2 --eval-seqs 8 --snapshots 3 --out "$tmp/geo"
ok geometry "$tmp/geo" --seqs 8 --batch 4
for f in geometry.json key_cosines.png attention_maps.svg value_manifold.png entropy_by_position.png; do
  checks=$((checks + 1))
  [ -s "$tmp/geo/geometry/$f" ] || { echo "FAIL: geometry did not write $f"; failures=$((failures + 1)); }
done
ok geometry "$tmp/geo" --series --seqs 8 --batch 4 --out "$tmp/geo/series"
checks=$((checks + 1))
grep -q '"step_at_90pct"' "$tmp/geo/series/series.json" && [ -s "$tmp/geo/series/dissociation.png" ] ||
  { echo "FAIL: geometry --series outputs"; failures=$((failures + 1)); }
ok ablate "$tmp/geo/checkpoint.safetensors" --seqs 8 --batch 4 --no-figures
checks=$((checks + 1))
[ "$(wc -l <"$tmp/geo/ablate/ablation.csv")" = 11 ] || { echo "FAIL: ablation.csv rows"; failures=$((failures + 1)); }
expect 1 "has no snapshots/" -- geometry "$tmp/run" --series
expect 1 "cannot read" -- geometry "$tmp/missing"
expect 2 "--seqs must be >= 2" -- geometry "$tmp/geo" --seqs 1
expect 2 "--seqs and --batch must be >= 1" -- ablate "$tmp/geo" --seqs 0
expect 2 "snapshots must be in \\[0, 1000\\]" -- train --snapshots -1 --out "$tmp/never"
ok train --arch mlp --V 4 --L 3 --steps 2 --batch 4 --d-model 8 --layers 1 --eval-seqs 8 --out "$tmp/mlp"
expect 1 "geometry needs a transformer or Mamba (this model is mlp)" -- geometry "$tmp/mlp" --seqs 4
expect 1 "ablations need a transformer" -- ablate "$tmp/mlp" --seqs 4
expect 1 "afile" -- geometry "$tmp/geo" --seqs 4 --out "$tmp/afile/g"

# dynamics: the routing law on the real backward pass.
ok dynamics verify "$tmp/geo" --batches 1 --batch 4 --json "$tmp/verify.json"
checks=$((checks + 1))
grep -q "both identities hold" "$tmp/out" && grep -q '"routing_max_abs_diff"' "$tmp/verify.json" ||
  { echo "FAIL: dynamics verify output"; failures=$((failures + 1)); }
expect 2 "unknown experiment 'nope'" -- dynamics nope
expect 2 "--batches and --batch must be >= 1" -- dynamics verify "$tmp/geo" --batches 0
expect 1 "attention traces need a transformer" -- dynamics verify "$tmp/mlp" --batches 1
ok dynamics em --T 20 --steps 5 --seeds 1,2 --out "$tmp/em"
checks=$((checks + 1))
grep -q '"speedup"' "$tmp/em/em.json" && [ -s "$tmp/em/em_vs_sgd.png" ] || { echo "FAIL: dynamics em outputs"; failures=$((failures + 1)); }
ok dynamics falsify --T 20 --steps 3 --seeds 5 --out "$tmp/falsify" --no-figures
checks=$((checks + 1))
for mode in gradient frozen no-baseline uniform; do
  grep -q "\"routing\":.*\"$mode\"" "$tmp/falsify/falsify.json" || { echo "FAIL: dynamics falsify mode $mode"; failures=$((failures + 1)); }
done
expect 2 "--seeds needs up to 20 comma-separated" -- dynamics em --seeds 1,x
expect 2 "unknown routing mode 'sideways'" -- dynamics em --routing sideways
expect 2 "--T must be >= 2" -- dynamics falsify --T 1
expect 2 "unknown option '--routing'" -- dynamics falsify --routing frozen
ok dynamics timescales "$tmp/geo" --no-figures
checks=$((checks + 1))
grep -q "from 3 snapshots" "$tmp/out" && [ -s "$tmp/geo/dynamics/timescales.json" ] ||
  { echo "FAIL: dynamics timescales"; failures=$((failures + 1)); }
expect 1 "has no attention log" -- dynamics timescales "$tmp/mlp"
ok dynamics detect "$tmp/geo" --seqs 8 --batch 4 --subsamples 5 --subsample-rows 10
checks=$((checks + 1))
grep -q "false-positive rate on the controls" "$tmp/out" && [ -s "$tmp/geo/dynamics/detector.png" ] &&
  grep -q '"random_tokens"' "$tmp/geo/dynamics/detect.json" || { echo "FAIL: dynamics detect"; failures=$((failures + 1)); }
expect 1 "the detector needs a transformer" -- dynamics detect "$tmp/mlp"
ok dynamics --help
checks=$((checks + 1))
grep -q "routing law" "$tmp/out" || { echo "FAIL: dynamics --help"; failures=$((failures + 1)); }

# sample: JSON lines with posteriors.
ok sample --V 5 --L 4 --n 3 --seed 9
checks=$((checks + 1))
[ "$(wc -l <"$tmp/out")" = 3 ] && grep -q '"posterior"' "$tmp/out" || { echo "FAIL: sample output"; failures=$((failures + 1)); }
expect 2 "L=9 > V=5" -- sample --V 5 --L 9

# --help on every subcommand lists its options with defaults.
for cmd in demo train eval sample geometry ablate; do
  ok "$cmd" --help
  checks=$((checks + 1))
  grep -q -- "--threads" "$tmp/out" || [ "$cmd" = sample ] || { echo "FAIL: $cmd --help"; failures=$((failures + 1)); }
  grep -q "\[" "$tmp/out" || { echo "FAIL: $cmd --help shows no defaults"; failures=$((failures + 1)); }
done

finish cli_errors
