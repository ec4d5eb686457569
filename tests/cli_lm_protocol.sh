#!/usr/bin/env bash
# bwt lm protocol through the real binary: two tiny fixtures end to end (ids), each figure equal to
# the instrument run alone with the same settings (SULA by k, the value manifold, the cut's baseline);
# a stage that cannot run on a model (gradients of one converted layer by layer) skipped with its
# reason, its cells n/a; a bad directory among good ones named, the others tabulated, exit 1; a
# random GPT-2 with the real tokenizer in text mode with both pools (skipped without shared/); bad
# flags.
# Usage: cli_lm_protocol.sh BWT_BINARY TMPDIR
set -u
source "$(dirname "$0")/lib/cli_checks.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
shared=${BWT_SHARED_DIR:-$here/../../shared}
fx=$here/fixtures/lm
small="--k 0,1,2 --prompts-per-k 8 --candidates 60 --per-quintile 4 --bootstrap 20 --threads 1"

# py SCRIPT ARGS...: a check written in Python's standard library (json), where python3 is at hand.
py() {
  if command -v python3 >/dev/null; then python3 -c "$@"; else echo "python3 not found: check skipped" >&2; fi
}

ok lm protocol --help
has -- '--prompts-per-k'
ok lm --help
has 'protocol'

ok lm protocol "$fx/llama_gqa" "$fx/neox_parallel" $small --out "$tmp/p"
has '| paper |'
has '| llama_gqa (LlamaForCausalLM, ids)'
has '| neox_parallel (GPTNeoXForCausalLM, ids)'
check "protocol.md written" test -s "$tmp/p/protocol.md"
check "protocol.md is what was printed" cmp -s "$tmp/out" "$tmp/p/protocol.md"
check "two models in protocol.json" py 'import json,sys; j=json.load(open(sys.argv[1])); assert len(j["models"]) == 2' "$tmp/p/protocol.json"

# Each figure is the instrument's own: the same settings through bwt lm sula and bwt lm geometry.
ok lm sula "$fx/llama_gqa" --k 0,1,2 --prompts-per-k 8 --threads 1 --json "$tmp/sula.json"
check "SULA entropy MAE by k equals bwt lm sula's" py '
import json, sys
p = json.load(open(sys.argv[1]))["models"][0]
s = [r for r in json.load(open(sys.argv[2]))["rows"] if r["control"] == "none"]
assert p["sula_k"] == [r["k"] for r in s], (p["sula_k"], s)
for a, r in zip(p["sula_entropy_mae_bits_by_k"], s): assert a == r["entropy_mae_bits"], (a, r["entropy_mae_bits"])
shuf = [r["entropy_mae_bits"] for r in json.load(open(sys.argv[2]))["rows"] if r["control"] == "shuffled" and r["k"] >= 1]
assert abs(p["sula_shuffled_mae_bits"] - sum(shuf) / len(shuf)) < 1e-15' "$tmp/p/protocol.json" "$tmp/sula.json"
ok lm geometry "$fx/llama_gqa" --candidates 60 --per-quintile 4 --bootstrap 20 --threads 1 --no-figures --out "$tmp/g"
check "value manifold and attention equal bwt lm geometry's" py '
import json, sys
p = json.load(open(sys.argv[1]))["models"][0]
g = json.load(open(sys.argv[2]))
m, q = g["value_manifold"]["per_layer"][-1], p["geometry"][0]
assert q["pool"] == "ids" and q["prompts"] == g["prompts"] == 20
for a, b in (("pc1", "pc1"), ("pc1_pc2", "pc1_pc2"), ("participation_ratio", "participation_ratio"), ("spearman_pc1_entropy", "spearman_pc1_entropy")):
    assert q[a] == m[b]["estimate"], (a, q[a], m[b])
assert q["attention_reduction"] == g["attention"]["reduction_first_to_last"]["estimate"]
assert p["cut_spearman_before"] == q["spearman_pc1_entropy"]
assert p["verify_score_max_rel"] < 1e-5 and p["verify_value_max_rel"] < 1e-5
assert p["skipped"] == {}' "$tmp/p/protocol.json" "$tmp/g/geometry.json"

# Gradients need the weights in fp32: converted layer by layer, verify and detect are skipped.
BWT_LM_CONVERT=layer ok lm protocol "$fx/gpt2_noprefix" $small --out "$tmp/layer"
has 'verify skipped: gradients need the weights converted to fp32 at open'
has 'detect skipped'
check "skipped stages are n/a, never numbers" py '
import json, sys
p = json.load(open(sys.argv[1]))["models"][0]
assert set(p["skipped"]) == {"verify", "detect"}, p["skipped"]
assert p["verify_score_max_rel"] is None and p["detect_confidence_r"] is None and p["detect_silhouette"] == [None] * 3
assert p["sula_entropy_mae_bits"] > 0 and p["geometry"][0]["pc1"] > 0' "$tmp/layer/protocol.json"
check "skipped cells read n/a" grep -q '| n/a | n/a | n/a | n/a | n/a |$' "$tmp/layer/protocol.md"

# A directory that is no model: named, the other model kept, exit 1.
mkdir -p "$tmp/empty"
timeout "$OK_TIMEOUT" "$bwt" lm protocol "$tmp/empty" "$fx/llama_gqa" $small --out "$tmp/bad" >"$tmp/out" 2>"$tmp/err"
check "a bad model directory: exit 1" test $? = 1
check "a bad model directory: named on stderr" grep -q "lm protocol: $tmp/empty: " "$tmp/err"
check "a bad model directory: the good one tabulated" grep -q '| llama_gqa (' "$tmp/bad/protocol.md"

# Text mode with a real tokenizer: a random GPT-2 of GPT-2's vocabulary, mixed and math pools.
if [ -e "$shared/tokenizers/gpt2/tokenizer.json" ]; then
  ok lm init --arch gpt2 --tokenizer "$shared/tokenizers/gpt2" --layers 2 --hidden 32 --heads 2 --out "$tmp/gpt2_text"
  ok lm protocol "$tmp/gpt2_text" $small --out "$tmp/text"
  has '| gpt2_text (GPT2LMHeadModel, text)'
  has '" nib"/" gob"'
  check "text mode: mixed and math pools" py '
import json, sys
p = json.load(open(sys.argv[1]))["models"][0]
assert [g["pool"] for g in p["geometry"]] == ["mixed", "math"] and p["sula_mode"] == "text"' "$tmp/text/protocol.json"
else
  echo "$shared/tokenizers/gpt2 not found: its checks skipped"
fi

expect 2 "needs 1 to 8" -- lm protocol "$fx/llama_gqa" --k 1,x
expect 2 "needs 1 to 8" -- lm protocol "$fx/llama_gqa" --k 0,1,2,3,4,5,6,7,8
expect 2 "prompts-per-k must be" -- lm protocol "$fx/llama_gqa" --prompts-per-k 1
expect 2 "bootstrap must be" -- lm protocol "$fx/llama_gqa" --bootstrap -1
expect 2 "unknown option" -- lm protocol "$fx/llama_gqa" --nope
expect 2 "" -- lm protocol

finish cli_lm_protocol
