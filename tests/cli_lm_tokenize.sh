#!/usr/bin/env bash
# bwt lm tokenize through the real binary, with the synthetic tokenizer of tests/fixtures: good use
# round-trips; bad flags, files and ids each give one stderr line and a non-zero exit.
# Usage: cli_lm_tokenize.sh BWT_BINARY TMPDIR
set -u
source "$(dirname "$0")/lib/cli_checks.sh" "$@"
spm="$(cd "$(dirname "$0")" && pwd)/fixtures/tokenizers/spm"

# The ids depend on the synthetic vocabulary, so the checks are structural and round trips.
checks=$((checks + 1))
ids=$("$bwt" lm tokenize "$spm" --text "Hello world!" 2>"$tmp/err")
if ! [[ "$ids" =~ ^\{\"ids\":\ \[1,\ [0-9,\ ]+\],\ \"n\":\ [0-9]+\}$ ]]; then
  echo "FAIL: lm tokenize printed '$ids'"
  failures=$((failures + 1))
fi
bare=$("$bwt" lm tokenize "$spm/tokenizer.json" --text "Hello world!" --no-special --eos)
checks=$((checks + 1))
[[ "$bare" == *", 2], "* && "$bare" != *"[1, "* ]] || { echo "FAIL: --no-special --eos printed '$bare'"; failures=$((failures + 1)); }
same '{"text": "<s> Hello world!"}' -- lm tokenize "$spm" --decode --text "$ids"
printf 'Hello world!' >"$tmp/text"
same "$ids" -- lm tokenize "$spm" --file "$tmp/text"
printf '%s' "$bare" >"$tmp/ids"
same '{"text": "Hello world!</s>"}' -- lm tokenize "$spm" --decode --file "$tmp/ids"
"$bwt" lm tokenize --help >/dev/null || { echo "FAIL: lm tokenize --help"; failures=$((failures + 1)); }

expect 2 "unknown command 'detokenize'" -- lm detokenize
expect 2 "give exactly one of --text and --file" -- lm tokenize "$spm"
expect 2 "give exactly one of --text and --file" -- lm tokenize "$spm" --text a --file "$tmp/text"
expect 2 "missing argument" -- lm tokenize --text a
expect 2 "for encoding, not --decode" -- lm tokenize "$spm" --decode --eos --text '[1]'
expect 1 "No such file or directory" -- lm tokenize "$tmp/nope" --text a
expect 1 "no tokenizer.json" -- lm tokenize "$tmp" --text a
expect 1 "No such file or directory" -- lm tokenize "$spm" --file "$tmp/nope"
printf 'not json' >"$tmp/tokenizer.json"
expect 1 "not a JSON object" -- lm tokenize "$tmp/tokenizer.json" --text a
printf 'a\xffb' >"$tmp/bad_utf8"
expect 1 "not valid UTF-8" -- lm tokenize "$spm" --file "$tmp/bad_utf8"
expect 1 "needs a JSON list of token ids" -- lm tokenize "$spm" --decode --text 'hello'
expect 1 "is not a token id" -- lm tokenize "$spm" --decode --text '[1, "x"]'
expect 1 "not in the vocabulary" -- lm tokenize "$spm" --decode --text '[1, 999999]'

finish cli_lm_tokenize
