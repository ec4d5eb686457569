#!/usr/bin/env bash
# bwt lm through the real binary: info, run, ppl and capture on a tiny fixture (and on stories260K
# when shared/ has it), and one-line errors with the right exit codes for bad use.
# Usage: cli_lm.sh BWT_BINARY TMPDIR
set -u
source "$(dirname "$0")/lib/cli_checks.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
model=$here/fixtures/lm/llama_gqa

printf '{"tokens": [1, 5, 9]}\n\n{"tokens": [3]}\n' >"$tmp/p.jsonl"
printf '{"text": "Once upon a time"}\n' >"$tmp/text.jsonl"
printf '{"tokens": [1, -2]}\n' >"$tmp/neg.jsonl"
printf '{"tokens": [1, 64]}\n' >"$tmp/oov.jsonl"
printf 'not json\n' >"$tmp/bad.jsonl"

ok lm --help
ok lm info --help
ok lm info "$model"
has '"architecture":	"LlamaForCausalLM"'
has '"kv_heads":	2'
ok lm run "$model" --prompts "$tmp/p.jsonl" --top-k 2 --generate 3
[ "$(wc -l <"$tmp/out")" = 2 ] || { echo "FAIL: lm run: want 2 lines"; failures=$((failures + 1)); }
has '"entropy_nats"'
has '"continuation":\[[0-9]*,[0-9]*,[0-9]*\]'
ok lm ppl "$model" --prompts "$tmp/p.jsonl"
has '"scored_tokens":	2'
ok lm capture "$model" --prompts "$tmp/p.jsonl" --points 'blocks.*.attn.hook_pattern,hook_embed' --out "$tmp/cap.safetensors"
has '"tensors":10'
[ -s "$tmp/cap.safetensors" ] || { echo "FAIL: no capture file"; failures=$((failures + 1)); }

expect 2 "bwt lm: unknown command 'nope'" -- lm nope
expect 2 "missing argument" -- lm info
expect 1 "no such model directory" -- lm info "$tmp/none"
expect 1 "no config.json" -- lm info "$tmp"
expect 1 "needs the model's tokenizer: .*no tokenizer.json" -- lm run "$model" --prompts "$tmp/text.jsonl"
expect 1 "needs the model's tokenizer" -- lm run "$model" --prompt "Once"
expect 1 "needs the model's tokenizer" -- lm ppl "$model" --text "$tmp/p.jsonl"
expect 2 "one of --prompts FILE and --prompt TEXT" -- lm run "$model" --prompts "$tmp/p.jsonl" --prompt "Once"
# With a tokenizer beside the weights, text is encoded with its template: the synthetic SentencePiece
# tokenizer starts "the cat" with BOS 1 and "▁the" 439, outside this tiny model's 64 ids.
mkdir -p "$tmp/withtok" && cp "$model"/* "$tmp/withtok/" && cp "$here/fixtures/tokenizers/spm/tokenizer.json" "$tmp/withtok/"
expect 1 "prompt 0: token 439 at position 1 is outside the vocabulary 0..63" -- lm run "$tmp/withtok" --prompt "the cat"
printf 'the cat' >"$tmp/cat.txt"
expect 1 "sequence 0: token 439 at position 1 is outside the vocabulary" -- lm ppl "$tmp/withtok" --text "$tmp/cat.txt"
expect 1 "line 1: not a JSON object" -- lm run "$model" --prompts "$tmp/bad.jsonl"
expect 1 "token 1 is not a non-negative integer" -- lm run "$model" --prompts "$tmp/neg.jsonl"
expect 1 "token 64 at position 1 is outside the vocabulary 0..63" -- lm run "$model" --prompts "$tmp/oov.jsonl"
expect 1 "'blocks.7.hook_resid_pre' matches nothing" -- lm capture "$model" --prompts "$tmp/p.jsonl" --points blocks.7.hook_resid_pre --out "$tmp/never.safetensors"
[ ! -e "$tmp/never.safetensors" ] || { echo "FAIL: a failed capture wrote its file"; failures=$((failures + 1)); }

# The other architectures, and the real GPT-2 and Pythia tokenizers (when shared/ has them) reported
# beside a model: Pythia's vocabulary is smaller than a padded embedding, the logits cover every row.
for fx in gpt2:GPT2LMHeadModel:learned neox_parallel:GPTNeoXForCausalLM:rotary phi:PhiForCausalLM:rotary; do
  ok lm info "$here/fixtures/lm/${fx%%:*}"
  rest=${fx#*:}
  has "\"architecture\":	\"${rest%%:*}\""
  has "\"positions\":	\"${rest#*:}\""
done
ok lm capture "$here/fixtures/lm/neox_parallel" --prompts "$tmp/p.jsonl" --points 'blocks.*.hook_resid_*' --out "$tmp/neox.safetensors"
has '"tensors":12' # 2 prompts × (pre and post of 2 blocks, tokens, logits): no resid_mid in a parallel block
shared_tok=${BWT_SHARED_DIR:-$here/../../shared}/tokenizers
for pair in gpt2:gpt2 neox_parallel:pythia; do
  fx=${pair%%:*} tk=${pair#*:}
  if [ -e "$shared_tok/$tk/tokenizer.json" ]; then
    mkdir -p "$tmp/tok_$fx" && cp "$here/fixtures/lm/$fx"/* "$tmp/tok_$fx/" && cp "$shared_tok/$tk/tokenizer.json" "$tmp/tok_$fx/"
    ok lm info "$tmp/tok_$fx"
    has '"tokenizer":	"tokenizer.json"'
    has '"tokenizer_vocab_size":	50'
  else
    echo "$shared_tok/$tk not found: its check skipped"
  fi
done

# stories260K's greedy continuation from BOS begins "Once upon a time, there was a" (its README).
stories=${BWT_SHARED_DIR:-$here/../../shared}/models/stories260K
if [ -e "$stories/config.json" ]; then
  printf '{"tokens": [1]}\n' >"$tmp/bos.jsonl"
  ok lm run "$stories" --prompts "$tmp/bos.jsonl" --generate 8
  has '"continuation":\[403,407,261,378,432,383,286,261\]'
else
  echo "stories260K not found at $stories: its check skipped"
fi

finish cli_lm
