#!/usr/bin/env bash
# bwt lm init and bwt lm sula through the real binary: a random checkpoint of each architecture
# opened back, seeds, a random Pythia-like model paired with the real Pythia tokenizer; SULA on
# stories260K in id mode and on that model in text mode, the JSONL export's fields and the JSON
# metrics; bad flags as one-line errors with exit code 2. Parts that need shared/ skip without it.
# Usage: cli_lm_sula.sh BWT_BINARY TMPDIR
set -u
source "$(dirname "$0")/lib/cli_checks.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
shared=${BWT_SHARED_DIR:-$here/../../shared}
printf '{"tokens": [1, 5, 9]}\n' >"$tmp/p.jsonl"
not() { ! "$@"; }

ok lm init --help
has 'initializer_range'
ok lm sula --help
has 'prompts-per-k N'
for a in llama mistral gpt2 gpt_neox phi; do
  ok lm init --arch $a --out "$tmp/$a" --seed 1 --layers 1
  has '"parameters":'
  ok lm run "$tmp/$a" --prompts "$tmp/p.jsonl"
  has '"entropy_nats"'
done
ok lm init --arch gpt_neox --out "$tmp/again" --seed 1 --layers 1
check "the same seed writes the same file" cmp -s "$tmp/gpt_neox/model.safetensors" "$tmp/again/model.safetensors"
ok lm init --arch gpt_neox --out "$tmp/other" --seed 2 --layers 1
check "another seed writes other weights" not cmp -s "$tmp/gpt_neox/model.safetensors" "$tmp/other/model.safetensors"
ok lm init --like "$here/fixtures/lm/phi" --out "$tmp/phi_like" --seed 4
ok lm info "$tmp/phi_like"
has '"rotary_dim":	4'

expect 2 "needs one of --like DIR and --arch NAME, and --out" -- lm init --arch gpt2
expect 2 "needs one of --like DIR and --arch NAME" -- lm init --arch gpt2 --like "$tmp/gpt2" --out "$tmp/x"
expect 2 "unknown architecture 'BertModel'" -- lm init --arch BertModel --out "$tmp/x"
expect 2 "num_key_value_heads (2) must equal the heads (4)" -- lm init --arch gpt2 --kv-heads 2 --out "$tmp/x"
expect 2 "--layers must be 0 (keep) or a positive size" -- lm init --arch gpt2 --layers -1 --out "$tmp/x"
expect 2 "--seed needs a non-negative integer" -- lm init --arch gpt2 --seed x --out "$tmp/x"
expect 1 "no such model directory" -- lm init --like "$tmp/none" --out "$tmp/x"
expect 1 "none.json: No such file or directory" -- lm init --arch gpt2 --tokenizer "$tmp/none.json" --out "$tmp/x"

# SULA on stories260K, id mode (it has no tokenizer): 3 k × 4 controls × 8 prompts.
stories=$shared/models/stories260K
if [ -e "$stories/config.json" ]; then
  ok lm sula "$stories" --k 0,2,4 --prompts-per-k 8 --seed 3 --export "$tmp/s.jsonl" --json "$tmp/s.json"
  has 'id mode: labels ids 5, 6, remap ids 7, 8'
  has '^    4 ablated '
  check "96 export lines" [ "$(wc -l <"$tmp/s.jsonl")" = 96 ]
  n=$(grep -c '^{"id":[0-9]*,"k":[024],"control":"\(none\|remap\|shuffled\|ablated\)","tokens":\[1,[0-9,]*\],"labels":\[[0-9]*,[0-9]*\],"y":[01],"posterior":\[[0-9.e-]*,[0-9.e-]*\]}$' "$tmp/s.jsonl")
  check "every export line has the record's fields, ids only ($n of 96)" [ "$n" = 96 ]
  check "shuffled posteriors are exactly 1/2" [ "$(grep '"shuffled"' "$tmp/s.jsonl" | grep -c '"posterior":\[0.5,0.5\]')" = 24 ]
  # k = 4 prompt: [bos] 4 × (w 3 L 4) then wq 3 — 19 tokens.
  check "k=4 prompts have 19 tokens" [ "$(grep '"k":4,' "$tmp/s.jsonl" | head -1 | sed 's/.*"tokens":\[\([^]]*\)\].*/\1/' | tr ',' '\n' | wc -l)" = 19 ]
  check "12 metric rows" [ "$(grep -c '"control":' "$tmp/s.json")" = 12 ]
  check "metrics have their fields" grep -q '"entropy_mae_bits".*' "$tmp/s.json"
  check "the metrics say what they compare with" grep -q '"compared_with":	"predictive' "$tmp/s.json"
  check "ECE and calibration bins" grep -q '"calibration":' "$tmp/s.json"
  ok lm sula "$stories" --k 0,2,4 --prompts-per-k 8 --seed 3 --export "$tmp/s2.jsonl" --json "$tmp/s2.json" --threads 1
  check "the same seed exports the same prompts" cmp -s "$tmp/s.jsonl" "$tmp/s2.jsonl"
  expect 2 "the labels and remap labels must be four different tokens" -- lm sula "$stories" --label-ids 5,5
  expect 2 "id 600 .* is outside the vocabulary 0..511" -- lm sula "$stories" --label-ids 600,601
  expect 2 "--labels and --remap-labels need the model's tokenizer" -- lm sula "$stories" --labels foo,bar
  expect 2 "--carrier-ids needs LO-HI" -- lm sula "$stories" --carrier-ids 10
  expect 2 "--label-ids needs two ids" -- lm sula "$stories" --label-ids 5
  expect 2 "carrier ids 5-8 hold only label" -- lm sula "$stories" --carrier-ids 5-8
else
  echo "stories260K not found at $stories: its checks skipped"
fi

# A random Pythia-like model with the real Pythia tokenizer: vocabulary padded to 50304; SULA in
# text mode picks the first built-in pair of single tokens.
if [ -e "$shared/tokenizers/pythia/tokenizer.json" ]; then
  ok lm init --arch gpt_neox --tokenizer "$shared/tokenizers/pythia" --out "$tmp/pythia" --seed 5 --layers 2 --hidden 32 --heads 2 --mlp 64
  has '"vocab_size":50304,"tokenizer_vocab_size":50278'
  ok lm info "$tmp/pythia"
  has '"tokenizer_vocab_size":	50278'
  ok lm sula "$tmp/pythia" --k 0,4 --prompts-per-k 4 --export "$tmp/p.jsonl" --json "$tmp/p.json"
  has 'text mode: labels " nib"/" gob" (ids 44768, 43458), remap " dex"/" mog"'
  check "32 export lines" [ "$(wc -l <"$tmp/p.jsonl")" = 32 ]
  n=$(grep -c '"labels":\[\(44768,43458\|27625,36032\)\],"y":[01],"posterior":\[[0-9.e-]*,[0-9.e-]*\],"text":"[^"]*:"}$' "$tmp/p.jsonl")
  check "text-mode lines end with their text ($n of 32)" [ "$n" = 32 ]
  check "ablated carriers are the mask" grep -q '"control":"ablated".*"text":"_: \(nib\|gob\)\\n_: ' "$tmp/p.jsonl"
  check "remap uses the other pair" grep -q '"control":"remap".*"text":"[a-z]*: \(dex\|mog\)\\n' "$tmp/p.jsonl"
  check "random model: label mass of order 2/50304 = 4e-5" grep -q '"label_mass":	[1-9]\.[0-9]*e-05' "$tmp/p.json"
  ok lm sula "$tmp/pythia" --k 1 --prompts-per-k 2 --labels vex,lux
  has 'labels " vex"/" lux"'
  expect 2 "label word 'blicket' is not one token after \": \"" -- lm sula "$tmp/pythia" --labels blicket,toma
  expect 2 "--label-ids is for id mode" -- lm sula "$tmp/pythia" --label-ids 5,6
  expect 2 "--labels needs two words" -- lm sula "$tmp/pythia" --labels foo
  ok lm sula "$tmp/pythia" --ids --k 1 --prompts-per-k 2 --export "$tmp/pid.jsonl"
  has 'id mode: labels ids 5, 6'
  check "id mode exports no text" not grep -q '"text"' "$tmp/pid.jsonl"
else
  echo "$shared/tokenizers/pythia not found: its checks skipped"
fi

model=$here/fixtures/lm/llama_gqa
expect 2 "--k needs a comma-separated list" -- lm sula "$model" --k 1,x
expect 2 "--k needs a comma-separated list" -- lm sula "$model" --k 5000
expect 2 "--alpha must be in (0, 1)" -- lm sula "$model" --alpha 1.5
expect 2 "--prompts-per-k must be in 1..100000" -- lm sula "$model" --prompts-per-k 0
expect 2 "unknown option '--nope'" -- lm sula "$model" --nope
expect 2 "missing argument" -- lm sula
expect 1 "no such model directory" -- lm sula "$tmp/none"
expect 2 "a k=16 prompt has 67 tokens, more than the model's 64 positions" -- lm sula "$model" --k 2,16
# The fixture's 64 ids: the default carrier range 10-last fits it.
ok lm sula "$model" --k 0,1 --prompts-per-k 2
has '^    1 shuffled '

finish cli_lm_sula
