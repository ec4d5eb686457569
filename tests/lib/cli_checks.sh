# The checks shared by the tests/cli_*.sh scripts, which source this after setting nothing:
#   source "$(dirname "$0")/lib/cli_checks.sh" "$@"     (arguments: BWT_BINARY TMPDIR)
# sets bwt and a fresh $tmp, counts checks and failures, and defines the check functions below.
# EXPECT_TIMEOUT and OK_TIMEOUT (seconds, default 120 and 1200) bound each command of expect and of ok and
# same: a hang is a failure, not a stuck test.
bwt=$1
tmp=$2
rm -rf "$tmp" && mkdir -p "$tmp"
failures=0 checks=0
: "${EXPECT_TIMEOUT:=120}" "${OK_TIMEOUT:=1200}"

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# expect CODE PATTERN -- ARGS...: exit code CODE, exactly one stderr line, matching PATTERN.
expect() {
  local code=$1 pattern=$2
  shift 3
  checks=$((checks + 1))
  timeout "$EXPECT_TIMEOUT" "$bwt" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" != "$code" ] || [ "$lines" != 1 ] || ! grep -q -- "$pattern" "$tmp/err"; then
    fail "bwt $* -> exit $rc (want $code), $lines stderr lines (want 1), want /$pattern/:"
    sed 's/^/    /' "$tmp/err"
  fi
}

# ok ARGS...: succeeds (its output in $tmp/out for has).
ok() {
  checks=$((checks + 1))
  if ! timeout "$OK_TIMEOUT" "$bwt" "$@" >"$tmp/out" 2>"$tmp/err"; then
    fail "bwt $* should succeed:"
    sed 's/^/    /' "$tmp/err"
  fi
}

# has PATTERN: the last ok's standard output matches.
has() {
  checks=$((checks + 1))
  grep -q -- "$1" "$tmp/out" || { fail "output lacks /$1/:"; sed 's/^/    /' "$tmp/out"; }
}

# same OUTPUT -- ARGS...: succeeds and prints exactly OUTPUT.
same() {
  local want=$1 got
  shift 2
  checks=$((checks + 1))
  got=$(timeout "$OK_TIMEOUT" "$bwt" "$@" 2>"$tmp/err")
  if [ $? != 0 ] || [ "$got" != "$want" ]; then
    fail "bwt $* printed '$got', want '$want':"
    sed 's/^/    /' "$tmp/err"
  fi
}

# check DESCRIPTION COMMAND...: a shell condition that must hold.
check() {
  local what=$1
  shift
  checks=$((checks + 1))
  "$@" || fail "$what"
}

# finish NAME: the summary line, and the script's exit status.
finish() {
  echo "$1: $((checks - failures)) of $checks checks passed"
  [ "$failures" = 0 ]
}
