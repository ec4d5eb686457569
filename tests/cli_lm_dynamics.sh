#!/usr/bin/env bash
# bwt dynamics verify and detect on Hugging Face language models through the real binary: the
# identities on a random GQA fixture (and stories260K when shared/ has it), the detector end to end
# with a small SULA-like prompt file, and one-line errors with exit code 2 for bad use.
# Usage: cli_lm_dynamics.sh BWT_BINARY TMPDIR
set -u
source "$(dirname "$0")/lib/cli_checks.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
model=$here/fixtures/lm/llama_gqa
stories=${BWT_SHARED_DIR:-$here/../../shared}/models/stories260K

# SULA-like records: BOS, 4 (cue, answer) pairs, the cue; answers agree with y 3 times in 4.
# labels A, B given as arguments; posterior from the counts (likelihood 0.75 / 0.25).
sula() {
  local a=$1 b=$2 n=$3 seed=7 i j y toks na la post
  for ((i = 0; i < n; i++)); do
    seed=$(((seed * 1103515245 + 12345) % 2147483648)); y=$(((seed >> 16) % 2))
    toks="1" na=0
    for ((j = 0; j < 4; j++)); do
      seed=$(((seed * 1103515245 + 12345) % 2147483648))
      if (((seed >> 16) % 4 != 0)); then la=$y; else la=$((1 - y)); fi
      [ "$la" = 0 ] && na=$((na + 1))
      toks="$toks, 3, $([ "$la" = 0 ] && echo "$a" || echo "$b")"
    done
    # P(A | na of 4 answers A) = 3^na / (3^na + 3^(4-na))
    post=$(awk -v na="$na" 'BEGIN { pa = 3 ^ na / (3 ^ na + 3 ^ (4 - na)); printf "%.6f, %.6f", pa, 1 - pa }')
    printf '{"id": %d, "k": 4, "control": "none", "tokens": [%s, 3], "labels": [%d, %d], "y": %d, "posterior": [%s]}\n' \
      "$i" "$toks" "$a" "$b" "$y" "$post"
  done
}
sula 10 20 24 >"$tmp/sula.jsonl"
printf '{"tokens": [1, 5, 9, 2, 7]}\n{"tokens": [3, 4]}\n' >"$tmp/p.jsonl"
printf '{"tokens": [1]}\n' >"$tmp/short.jsonl"
printf '{"tokens": [1, 64]}\n' >"$tmp/oov.jsonl"
printf '{"tokens": [1, 2, 3]}\n' >"$tmp/nolabels.jsonl"
printf 'not json\n' >"$tmp/bad.jsonl"

ok dynamics verify --help
has 'MODEL_DIR'
ok dynamics verify "$model" --json "$tmp/v.json"
has 'LlamaForCausalLM, 2 layers, 4 query heads on 2 key/value heads'
has 'both identities hold to rounding'
check "verify json has both layers" grep -q '"block":	1' "$tmp/v.json"
ok dynamics verify "$model" --prompts "$tmp/p.jsonl" --tol 1e-5
has '2 file prompts'
ok dynamics verify "$here/fixtures/lm/neox_parallel" --batches 2 --length 16
has 'both identities hold to rounding'
ok dynamics detect "$model" --prompts "$tmp/sula.jsonl" --no-figures --out "$tmp/det" --subsamples 20 --subsample-rows 10
has 'false-positive rate on the controls'
has '|gQ|/|gV| real'
check "detect json has the Q/V ratios" grep -q '"qv_ratio"' "$tmp/det/detect.json"
check "detect json has the controls" grep -q '"shuffled_labels"' "$tmp/det/detect.json"

if [ -f "$stories/config.json" ]; then
  ok dynamics verify "$stories" --batches 2 --length 48 --tol 1e-5
  has '8 query heads on 4 key/value heads'
  has 'both identities hold to rounding'
  sula 100 200 30 >"$tmp/sula_stories.jsonl"
  ok dynamics detect "$stories" --prompts "$tmp/sula_stories.jsonl" --out "$tmp/det_stories" --subsamples 20 --subsample-rows 12
  has 'layer 4, 30 prompts'
  check "detect figure written" test -s "$tmp/det_stories/detector.png"
fi

expect 2 "cannot read .*none.jsonl" -- dynamics verify "$model" --prompts "$tmp/none.jsonl"
expect 2 "oov.jsonl:1: token 1 is not an id in 0..63" -- dynamics verify "$model" --prompts "$tmp/oov.jsonl"
expect 2 "bad.jsonl:1: not valid JSON" -- dynamics verify "$model" --prompts "$tmp/bad.jsonl"
expect 2 "needs at least 2" -- dynamics verify "$model" --prompts "$tmp/short.jsonl"
expect 2 "length must be >= 2" -- dynamics verify "$model" --length 1
expect 2 "length 100 exceeds the model's 64 positions" -- dynamics verify "$model" --length 100
expect 2 "needs --prompts FILE.jsonl" -- dynamics detect "$model"
expect 2 "nolabels.jsonl:1: needs \"labels\"" -- dynamics detect "$model" --prompts "$tmp/nolabels.jsonl"
expect 2 "layer 5 is not one of the model's layers 0..1" -- dynamics detect "$model" --prompts "$tmp/sula.jsonl" --layer 5
expect 2 "buckets >= 0" -- dynamics detect "$model" --prompts "$tmp/sula.jsonl" --buckets -1

finish cli_lm_dynamics
