#!/usr/bin/env bash
# Regenerates the fuzzers' seed corpora (tests/fuzz/corpus/{safetensors,checkpoint,config}) from
# tiny real runs of build/bwt (every architecture, every task, a snapshot, the config options that
# change the tensor set or the JSON), plus a few hand-made safetensors edge cases. Each seed is a few
# KB, so that libFuzzer's mutations stay cheap. Usage: tests/fuzz/make_corpus.sh [path/to/bwt]
#
# Checkpoints carry a CRC-32 of their contents, which random mutations almost never keep right, so
# each checkpoint is also seeded with its checksum key renamed ("bwt_crc32" to "bwt_nocrc", the same
# length, so the header stays valid): the reader then loads it as a file from another tool, and
# mutations reach the metadata, config and tensor checks behind the checksum.
set -euo pipefail
cd "$(dirname "$0")/../.."
bwt=${1:-build/bwt}
[ -x "$bwt" ] || { echo "make_corpus: $bwt not found (run scripts/setup.sh first)" >&2; exit 1; }
out=tests/fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
mkdir -p "$out/safetensors" "$out/checkpoint" "$out/config"

tiny=(--steps 3 --batch 4 --eval-seqs 8 --threads 1 --ckpt-every 0 --log-every 1)
bij=(--task bijection --V 4 --L 3)
# name, then the options of one run
runs=(
  "transformer|${bij[*]} --d-model 8 --heads 2 --layers 1 --snapshots 3"
  "transformer_tied_layer|${bij[*]} --d-model 8 --heads 2 --layers 1 --tied-head --norm layer --no-attn-bias --init torch"
  "transformer_sinusoidal|--task bijection --V 3 --L 2 --query --with-replacement --d-model 4 --heads 1 --layers 2 --positions sinusoidal --soft-targets --decay all --lr-v-mult 10 --loss-horizon 1 --position-jitter 2 --position-jitter-from 1"
  "transformer_hmm|--task hmm --S 2 --O 2 --K 3 --d-model 8 --heads 2 --layers 1"
  "lstm|${bij[*]} --arch lstm --d-model 4 --layers 1"
  "lstm_sticky|--task sticky --chain-len 4 --arch lstm --d-model 4 --layers 1"
  "mlp_modular|--task modular --p 3 --length 4 --arch mlp --d-model 8 --layers 1"
  "window_mlp_recall|--task recall --pairs 2 --queries 1 --fillers 1 --key-vocab 4 --value-vocab 4 --arch window_mlp --window 2 --d-model 4 --layers 1 --max-T 12"
)
nocrc() { perl -0777 -pe 's/"bwt_crc32"/"bwt_nocrc"/' "$1" >"$2"; }
for r in "${runs[@]}"; do
  name=${r%%|*}
  # shellcheck disable=SC2086 # the options are split on purpose
  "$bwt" train ${r#*|} "${tiny[@]}" --out "$work/$name" >/dev/null 2>&1 ||
    { echo "make_corpus: bwt train failed for $name: ${r#*|}" >&2; exit 1; }
  cp "$work/$name/config.json" "$out/config/$name.json"
  cp "$work/$name/checkpoint.safetensors" "$out/checkpoint/$name.safetensors"
  nocrc "$work/$name/checkpoint.safetensors" "$out/checkpoint/${name}_nocrc.safetensors"
done
snap=$(printf '%s\n' "$work"/transformer/snapshots/*.safetensors | tail -n 1)
cp "$snap" "$out/checkpoint/snapshot.safetensors"
nocrc "$snap" "$out/checkpoint/snapshot_nocrc.safetensors"
# The reader's seeds: a checkpoint with and without its checksum, a snapshot, and the edge cases.
cp "$out/checkpoint/lstm.safetensors" "$out/checkpoint/lstm_nocrc.safetensors" "$snap" "$out/safetensors/"

# Old configs: runs written before the optional fields existed (the reader's defaults). Only lines
# that are not last in their object go, so the JSON stays valid.
grep -Ev '"(input_dim|positions|init|attn_bias|decay|loss_horizon|position_jitter|position_jitter_from|snapshots|lr_v_mult)":' \
  "$out/config/transformer.json" >"$out/config/old_fields.json"

# Hand-made safetensors: st NAME HEADER DATA writes the 8-byte little-endian length, the header
# padded with spaces to a multiple of 8, then DATA (printf escapes).
# shellcheck disable=SC2059 # the length bytes and DATA are printf escapes on purpose
st() {
  local header=$2 n
  while (( ${#header} % 8 )); do header+=" "; done
  n=${#header}
  { for i in 0 1 2 3 4 5 6 7; do printf "\\x$(printf %02x $(( (n >> (8 * i)) & 255 )))"; done
    printf %s "$header"; printf "$3"; } >"$out/safetensors/$1.safetensors"
}
st empty '{}' ''
st metadata_only '{"__metadata__":{"format":"x","note":""}}' ''
st every_dtype '{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[],"data_offsets":[8,16]},"c":{"dtype":"F32","shape":[2,1],"data_offsets":[16,24]},"d":{"dtype":"I32","shape":[0,3],"data_offsets":[24,24]},"e":{"dtype":"I32","shape":[1,1,1,1,1,1,1,1],"data_offsets":[24,28]}}' \
  '\0\0\0\0\0\0\360\77\1\0\0\0\0\0\0\0\0\0\200\77\0\0\0\300\7\0\0\0'
st misaligned '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F64","shape":[1],"data_offsets":[4,12]}}' \
  '\0\0\200\77\0\0\0\0\0\0\360\177'
# The checksum of this one is right: the CRC-32 of its 4 data bytes, then nothing (no other metadata).
st checksummed '{"__metadata__":{"bwt_crc32":"aca16a6a"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' '\0\0\200\77'
find "$out" -type f | wc -l | xargs echo "make_corpus: seeds written:" >&2
du -b "$out"/*/* | sort -n | tail -n 1 | xargs echo "make_corpus: largest:" >&2
