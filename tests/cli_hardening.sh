#!/usr/bin/env bash
# Regressions of issue 11 through the real binary: each numbered finding, as it was reproduced, now
# gives the right result or one clear line on stderr — never a hang, a crash or a plausible number.
# (Items 1-3 and the final-evaluation stop are in test_run_dir.c; the checkpoint reader's
# strictness in test_safetensors.c and test_checkpoint.c.)
# Usage: cli_hardening.sh BWT_BINARY TMPDIR
set -u
EXPECT_TIMEOUT=20 OK_TIMEOUT=60
source "$(dirname "$0")/lib/cli_checks.sh" "$@"
export OMP_NUM_THREADS=1

small=(--V 5 --L 4 --d-model 8 --heads 2 --layers 1 --batch 8 --eval-seqs 40 --threads 1)
ok train "${small[@]}" --steps 12 --ckpt-every 4 --out "$tmp/run"
ck=$tmp/run/checkpoint.safetensors

# rewrite CHECKPOINT OUT PYTHON: OUT is CHECKPOINT with its header (head: the JSON, meta its
# __metadata__, cfg the run config) or its tensor bytes (data, a bytearray) changed by PYTHON, and
# the checksum left out, as a file from another tool would be.
rewrite() {
  /usr/bin/python3 - "$1" "$2" "$3" <<'EOF'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
meta = head["__metadata__"]
cfg = json.loads(meta["config"])
data = bytearray(raw[8 + n:])
exec(sys.argv[3])
meta["config"] = json.dumps(cfg)
del meta["bwt_crc32"]
text = json.dumps(head).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + bytes(data))
EOF
}

# Item 4: NaN or infinite weights are refused by every reading command (they used to print a
# plausible entropy MAE beside "KL nan", +0.0000 ablations, "both identities hold").
rewrite "$ck" "$tmp/nan.safetensors" 'b = head["tok_emb"]["data_offsets"][0]; data[b:b + 4] = struct.pack("<f", float("nan"))'
rewrite "$ck" "$tmp/inf.safetensors" 'b = head["blocks.0.attn.wq.weight"]["data_offsets"][0]; data[b:b + 4] = struct.pack("<f", float("inf"))'
for cmd in eval ablate geometry "dynamics verify" "dynamics detect"; do
  # shellcheck disable=SC2086
  expect 1 "tok_emb' holds nan at index 0 (must be finite)" -- $cmd "$tmp/nan.safetensors"
done
expect 1 "holds inf" -- eval "$tmp/inf.safetensors"
# Item 5: a config edited to describe another model (fewer layers, a tied head) is refused, not
# silently loaded as that other model.
rewrite "$ck" "$tmp/tied.safetensors" 'cfg["model"]["tied_head"] = True'
expect 1 "config describes" -- eval "$tmp/tied.safetensors"
ok train "${small[@]}" --layers 2 --steps 2 --out "$tmp/two"
rewrite "$tmp/two/checkpoint.safetensors" "$tmp/one.safetensors" 'cfg["model"]["n_layers"] = 1'
expect 1 "config describes" -- eval "$tmp/one.safetensors"

# Item 6: bwt eval RUN reproduces RUN/eval.json; --batch changes no sequence; the streams match
# bwt sample --held-out.
ok eval "$tmp/run" --json "$tmp/eval_again.json"
check "bwt eval RUN reproduces RUN/eval.json" cmp -s "$tmp/run/eval.json" "$tmp/eval_again.json"
ok eval "$tmp/run" --batch 3 --json "$tmp/eval_b3.json"
same_sequences() { # the Bayes entropy and row count depend on the sequences alone
  /usr/bin/python3 - "$1" "$2" <<'EOF'
import json, sys
a, b = (json.load(open(p))["overall"] for p in sys.argv[1:3])
assert a["n"] == b["n"] and a["bayes_entropy"] == b["bayes_entropy"], (a, b)
assert abs(a["entropy_mae"] - b["entropy_mae"]) <= 1e-9 * max(1.0, a["entropy_mae"]), (a, b)
EOF
}
check "--batch 3 scores the same held-out sequences" same_sequences "$tmp/run/eval.json" "$tmp/eval_b3.json"
ok sample --V 5 --L 4 --held-out --seed 12345 --n 40 --batch 1 --out "$tmp/held1.jsonl"
ok sample --V 5 --L 4 --held-out --seed 12345 --n 40 --batch 256 --out "$tmp/held256.jsonl"
check "bwt sample's sequences do not depend on --batch" cmp -s "$tmp/held1.jsonl" "$tmp/held256.jsonl"
ok sample --V 5 --L 4 --train-step 3 --seed 1 --n 8 --out "$tmp/step3.jsonl"
check "bwt sample --train-step writes the batch's 8 sequences" test "$(wc -l <"$tmp/step3.jsonl")" = 8

# Item 7: settings range-checked on every path; options of another task or architecture refused.
expect 2 "needs a non-negative integer, got ' -1'" -- train --seed " -1"
expect 2 "needs a non-empty string" -- train --resume ""
expect 2 "needs a non-empty string" -- train --out ""
expect 2 "needs a finite number" -- train --lr " 1e-3"
expect 2 "V is a setting of task bijection, not of hmm" -- train --task hmm --V 30
expect 2 "heads applies to --arch transformer only, not mlp" -- train --arch mlp --heads 3
expect 2 "window applies to --arch window_mlp only" -- train --window 3
expect 2 "lr-v-mult applies to --arch transformer only" -- train --arch lstm --lr-v-mult 10
expect 2 "eps must be in (0, 1\]" -- train --eps 1e300
expect 2 "lr x weight-decay must be below 1" -- train --lr 1 --weight-decay 2
expect 2 "K is a setting of task hmm, not of bijection" -- sample --K 3
# A config file (inside a checkpoint) with a value beyond its range or an int beyond int's: a clear
# refusal naming the file and the field (eps = 1e999 once trained nothing and wrote a checkpoint bwt
# then refused; n_layers 1e10 was a float-to-int overflow). The edit keeps the header's length and
# renames the checksum away, as another tool would leave it.
edit_config() { # edit_config KEY FROM TO OUT: in the config, KEY's value FROM -> TO (the same length)
  perl -pe "s/(\Q$1\E\\\\\":\\\\t)\Q$2\E/\${1}$3/; s/\"bwt_crc32\"/\"no_crc_32\"/" "$ck" >"$4"
}
edit_config eps 1e-08 1e999 "$tmp/eps.safetensors"
expect 1 "eps must be in" -- eval "$tmp/eps.safetensors"
perl -pe 's/(n_layers\\":)\\t1,/${1}9e9,/; s/"bwt_crc32"/"no_crc_32"/' "$ck" >"$tmp/layers.safetensors"
expect 1 "n_layers is not an integer in the range of int" -- eval "$tmp/layers.safetensors"
# A resumed run takes a new learning rate, recorded in config.json and the log.
ok train "${small[@]}" --steps 12 --ckpt-every 4 --out "$tmp/lr" --stop-after 4
ok train --resume "$tmp/lr" --lr 5e-4 --stop-after 4
check "--resume --lr is in the checkpoint at once (a stop before the next one keeps it)" \
  grep -aq 'lr\\":\\t0.0005' "$tmp/lr/checkpoint.safetensors"
ok train --resume "$tmp/lr"
check "--resume --lr is recorded in config.json" grep -q '"lr":	0.0005' "$tmp/lr/config.json"
check "--resume --lr is recorded in metrics.jsonl" grep -q '"lr_changed_from":0.001,"lr_changed_to":0.0005' "$tmp/lr/metrics.jsonl"

# Item 8: no hang, no runaway memory on files that are not what they claim.
mkfifo "$tmp/fifo.safetensors"
expect 1 "is not a regular file" -- eval "$tmp/fifo.safetensors"
ln -s /dev/zero "$tmp/zero.safetensors"
expect 1 "is not a regular file" -- eval "$tmp/zero.safetensors"
ok train "${small[@]}" --steps 12 --ckpt-every 4 --out "$tmp/fifo_log" --stop-after 4
rm "$tmp/fifo_log/metrics.jsonl" && mkfifo "$tmp/fifo_log/metrics.jsonl"
expect 1 "metrics.jsonl is not a regular file" -- train --resume "$tmp/fifo_log"
# A checkpoint whose config claims d_model 2048 fails at once, within a small address space.
rewrite "$ck" "$tmp/claims.safetensors" 'cfg["model"]["d_model"] = 2048'
# ASan reserves terabytes of address space for its shadow, so the two address-space checks run on
# the plain build only.
if ldd "$bwt" | grep -q libasan; then
  echo "cli hardening: the ulimit -v checks are skipped under AddressSanitizer"
else
checks=$((checks + 1))
(ulimit -v 400000; timeout 10 "$bwt" eval "$tmp/claims.safetensors" --threads 1 >"$tmp/out" 2>"$tmp/err")
rc=$?
[ "$rc" = 1 ] && grep -q "parameters" "$tmp/err" || { fail "a checkpoint claiming d_model 2048 -> exit $rc:"; sed 's/^/    /' "$tmp/err"; }
# Under an address-space limit, many threads are refused with a message (OpenBLAS used to hang).
checks=$((checks + 1))
(ulimit -v 1000000; timeout 20 "$bwt" train "${small[@]}" --threads 64 --steps 2 --out "$tmp/ulimit" >"$tmp/out" 2>"$tmp/err")
rc=$?
[ "$rc" = 1 ] && grep -q "address space for OpenBLAS's buffers" "$tmp/err" || { fail "--threads 64 under ulimit -v -> exit $rc:"; sed 's/^/    /' "$tmp/err"; }
fi

# Item 9: a file-size limit is an error naming the file, not a silent kill (SIGXFSZ); no temporary
# file stays; bwt sample on a failing disk leaves no file; messages carry the system's reason.
checks=$((checks + 1))
(ulimit -f 8; timeout 20 "$bwt" train "${small[@]}" --d-model 32 --steps 4 --out "$tmp/fsize" >"$tmp/out" 2>"$tmp/err")
rc=$?
[ "$rc" = 1 ] && grep -q "File too large" "$tmp/err" || { fail "ulimit -f -> exit $rc:"; sed 's/^/    /' "$tmp/err"; }
check "no temporary file after a refused write" test -z "$(ls "$tmp/fsize" | grep '\.tmp\.')"
checks=$((checks + 1))
BWT_FAULT=write:1 timeout 20 "$bwt" sample --n 5 --out "$tmp/sample.jsonl" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] && grep -q "No space left on device" "$tmp/err" && [ ! -e "$tmp/sample.jsonl" ] ||
  { fail "bwt sample on a full disk -> exit $rc, file $(ls "$tmp" | grep -c '^sample.jsonl')"; sed 's/^/    /' "$tmp/err"; }

finish cli_hardening
