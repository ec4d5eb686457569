#!/usr/bin/env bash
# bwt lm geometry and bwt lm intervene through the real binary: end to end on stories260K (token
# ids: it has no tokenizer; skipped when shared/ lacks it) and on tiny fixtures of three
# architectures; a fixture paired with the real GPT-2 tokenizer is refused (64 ids cannot hold its
# tokens); bad flags and files give one-line errors with the right exit codes.
# Usage: cli_lm_geometry.sh BWT_BINARY TMPDIR
set -u
source "$(dirname "$0")/lib/cli_checks.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
shared=${BWT_SHARED_DIR:-$here/../../shared}
fx=$here/fixtures/lm
small="--candidates 60 --per-quintile 4 --threads 1"
boot="--bootstrap 50"

json_ok() { # FILE: parses as JSON (where python3 is at hand)
  if command -v python3 >/dev/null; then python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1"; else true; fi
}

ok lm geometry --help
has -- '--per-quintile'
ok lm intervene --help
has -- '--sula'

# Three architectures on token ids: GQA Llama (rotary), NeoX (fused per-head q/k/v), GPT-2 (learned positions).
for m in llama_gqa neox_parallel gpt2; do
  ok lm geometry "$fx/$m" $small $boot --out "$tmp/g_$m"
  has 'value manifold'
  has 'thresholds'
  for f in geometry.json value_manifold.png value_manifold.svg key_orthogonality.png attention_entropy.png; do
    check "$m: $f written" test -s "$tmp/g_$m/$f"
  done
  check "$m: geometry.json parses" json_ok "$tmp/g_$m/geometry.json"
  check "$m: 20 prompts" grep -q '"prompts":	20' "$tmp/g_$m/geometry.json"
done
check "gpt2 has no rotary keys: (b) after RoPE is null" grep -q '"mean_abs_cos_after_rope":	\[null, null\]' "$tmp/g_gpt2/geometry.json"
ok lm geometry "$fx/llama_gqa" $small $boot --layers all --no-figures --init-dir "$fx/llama_gqa" --out "$tmp/g_all"
check "--layers all: two manifolds" test "$(grep -c '"layer":' "$tmp/g_all/geometry.json")" = 2
check "--no-figures: none" test ! -e "$tmp/g_all/value_manifold.png"
check "--init-dir: weights baseline read from it" grep -q '"init_source":	"init-dir ' "$tmp/g_all/geometry.json"
check "default: re-initialised in memory" grep -q '"init_source":	"re-initialised in memory' "$tmp/g_llama_gqa/geometry.json"
check "default: (b) has an init baseline" grep -q '"mean_abs_cos_before_rope_init":	\[0\.' "$tmp/g_llama_gqa/geometry.json"
ok lm geometry "$fx/llama_gqa" $small $boot --init-dir none --no-figures --out "$tmp/g_none"
check "--init-dir none: W_K alone" grep -q '"init_source":	"W_K alone' "$tmp/g_none/geometry.json"
# The same seed gives the same report.
ok lm geometry "$fx/llama_gqa" $small $boot --no-figures --out "$tmp/g_again"
check "deterministic with a seed" cmp -s <(grep -v '"model"' "$tmp/g_llama_gqa/geometry.json") <(grep -v '"model"' "$tmp/g_again/geometry.json")

printf '{"tokens": [1, 5, 9], "domain": "a"}\n{"tokens": [1, 7, 2, 3]}\n{"tokens": [4, 4]}\n{"tokens": [1, 9, 9, 9, 2]}\n{"tokens": [3, 1]}\n{"tokens": [2, 8, 6]}\n' >"$tmp/pool.jsonl"
ok lm geometry "$fx/llama_gqa" --pool "$tmp/pool.jsonl" --per-quintile 2 --bootstrap 20 --threads 1 --no-figures --out "$tmp/g_file"
check "a JSONL pool keeps its domains" grep -q '"domain":	"a"' "$tmp/g_file/geometry.json"
ok lm intervene "$fx/llama_gqa" $small --layers 0,1 --out "$tmp/i_gqa"
has 'keep_only'
check "intervene.json parses" json_ok "$tmp/i_gqa/intervene.json"
check "intervene figure written" test -s "$tmp/i_gqa/intervene_spearman.png"

# A fixture paired with a real tokenizer: its 64 ids cannot hold GPT-2's.
if [ -e "$shared/tokenizers/gpt2/tokenizer.json" ]; then
  expect 1 "outside the model's vocabulary 0..63" -- lm geometry "$fx/llama_gqa" --tokenizer "$shared/tokenizers/gpt2" --pool prose --out "$tmp/never"
else
  echo "$shared/tokenizers/gpt2 not found: its check skipped"
fi

# Bad flags and files.
expect 2 "--layers must be last or all" -- lm geometry "$fx/llama_gqa" --layers 3
expect 2 "--per-quintile >= 1" -- lm geometry "$fx/llama_gqa" --per-quintile 0
expect 2 "unknown option" -- lm geometry "$fx/llama_gqa" --nope
expect 1 "unknown pool 'poetry'" -- lm geometry "$fx/llama_gqa" --pool poetry
expect 1 "pool 'math' is text and the model has no tokenizer" -- lm geometry "$fx/llama_gqa" --pool math
printf '{"tokens": [1, 2]}\n{"tokens": [3]}\n' >"$tmp/two.jsonl"
expect 1 "holds 2 prompts; the geometry needs at least 3" -- lm geometry "$fx/llama_gqa" --pool "$tmp/two.jsonl"
printf 'nope\n' >"$tmp/bad.jsonl"
expect 1 "bad.jsonl line 1: not a JSON object" -- lm geometry "$fx/llama_gqa" --pool "$tmp/bad.jsonl"
expect 1 "not the same configuration" -- lm geometry "$fx/llama_gqa" --init-dir "$fx/llama_mha" $small
expect 1 "no such model directory" -- lm geometry "$tmp/none"
expect 2 "layers must be in 0..1" -- lm intervene "$fx/llama_gqa" --layers 0,5
expect 2 "layers must be in 0..1" -- lm intervene "$fx/llama_gqa" --layers 0,,x
expect 2 "give one of --layer and --layers" -- lm intervene "$fx/llama_gqa" --layer 0 --layers 1
printf '{"tokens": [1, 2], "posterior": [0.5, 0.5]}\n' >"$tmp/badsula.jsonl"
expect 1 "badsula.jsonl:1: \"labels\" must be two different token ids" -- lm intervene "$fx/llama_gqa" --sula "$tmp/badsula.jsonl"

# stories260K (a real Llama-architecture model, 8 query on 4 key/value heads, no tokenizer).
stories=$shared/models/stories260K
if [ -e "$stories/config.json" ]; then
  ok lm geometry "$stories" --candidates 200 --per-quintile 8 --bootstrap 100 --threads 1 --out "$tmp/g_stories"
  has 'prompts 40 (entropy quintiles), layers 5, heads 8 on 4 key/value heads of 8'
  for f in geometry.json value_manifold.png key_orthogonality.png attention_entropy.png; do
    check "stories260K: $f written" test -s "$tmp/g_stories/$f"
  done
  for field in pc1_pc2 participation_ratio spearman_pc1_entropy mean_abs_cos_init mean_abs_cos_before_rope \
               mean_abs_cos_after_rope embeddings_degenerate entropy_of_head_mean_pattern reduction_first_to_last thresholds; do
    check "stories260K: geometry.json has $field" grep -q "\"$field\"" "$tmp/g_stories/geometry.json"
  done
  check "stories260K: geometry.json parses" json_ok "$tmp/g_stories/geometry.json"
  # Three SULA records in the export format (labels 261 and 403, posteriors of k = 0, 2, 4 examples).
  printf '%s\n' '{"id": 0, "k": 0, "control": "none", "tokens": [1, 403, 407], "labels": [261, 403], "y": 0, "posterior": [0.5, 0.5]}' \
    '{"id": 1, "k": 2, "control": "none", "tokens": [1, 403, 407, 261, 378], "labels": [261, 403], "y": 1, "posterior": [0.012195121951219513, 0.9878048780487805]}' \
    '{"id": 2, "k": 4, "control": "none", "tokens": [1, 432, 383, 286, 261, 378], "labels": [261, 403], "y": 0, "posterior": [0.9, 0.1]}' >"$tmp/sula.jsonl"
  ok lm intervene "$stories" --layers 3,4 --candidates 200 --per-quintile 6 --threads 1 --sula "$tmp/sula.jsonl" --out "$tmp/i_stories"
  has 'layer 3: 30 prompts'
  has 'layer 4: 30 prompts'
  check "stories260K: intervene.json has the SULA records" grep -q '"sula_records":	3' "$tmp/i_stories/intervene.json"
  check "stories260K: intervene.json parses" json_ok "$tmp/i_stories/intervene.json"
else
  echo "stories260K not found at $stories: its checks skipped"
fi

finish cli_lm_geometry
