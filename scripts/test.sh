#!/usr/bin/env bash
# The whole test suite: formatting, lints, the Rust tests, the C/C++ tests (plain and under
# AddressSanitizer + UBSan), the Android cross builds and the aarch64 tests under qemu-user.
# Installs missing system packages first. Ends with one line, `N passed, N failed`: the test cases
# that cargo test and ctest ran, plus one for each stage that runs no test cases of its own (fmt,
# clippy, the cross builds). A failing stage stops the run, and the line still closes it.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
passed=0
failed=0
current=""
trap 'rm -f "$log"' EXIT

summary() {
  local rc=$?
  if [ -n "$current" ]; then
    echo "== FAILED: $current" >&2
    tally failed
  fi
  echo "$passed passed, $failed failed"
  rm -f "$log"
  exit "$rc"
}
trap summary EXIT

# Adds the cases counted in the stage's output to the totals. A stage that printed no count of its
# own counts as one check, passed unless $1 is "failed"; a failed stage counts at least one failure.
tally() {
  local p f
  p=$(sed -n -e 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' \
    -e 's/^[0-9]*% tests passed, [0-9]* tests failed out of \([0-9]*\)$/\1/p' "$log" |
    awk '{s += $1} END {print s + 0}')
  f=$(sed -n -e 's/^test result: [a-zA-Z]*\. [0-9]* passed; \([0-9]*\) failed.*/\1/p' \
    -e 's/^[0-9]*% tests passed, \([0-9]*\) tests failed out of [0-9]*$/\1/p' "$log" |
    awk '{s += $1} END {print s + 0}')
  # ctest's line counts every case; the passed ones are the total less the failed.
  local ct
  ct=$(sed -n 's/^[0-9]*% tests passed, \([0-9]*\) tests failed out of [0-9]*$/\1/p' "$log" |
    awk '{s += $1} END {print s + 0}')
  p=$((p - ct))
  if [ "${1:-}" = failed ]; then
    [ "$f" -gt 0 ] || f=1
  elif [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
    p=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}

# stage NAME COMMAND...: runs one stage, its output shown and counted.
stage() {
  current=$1
  shift
  echo "== $current"
  "$@" 2>&1 | tee "$log"
  tally
  current=""
}

scripts/install-deps.sh
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
stage "cargo test" cargo test --locked
stage "C/C++ tests (cpp_tests, ctest)" scripts/cpp-tests.sh
# Consumer builds (add_subdirectory, install + find_package, pkg-config, ar -M, version script, Bazel).
stage "consumer builds (scripts/consumer-tests.sh)" scripts/consumer-tests.sh
stage "C/C++ tests under AddressSanitizer + UBSan" scripts/cpp-tests.sh --sanitize
stage "Android cross builds and the Rust tests on aarch64 under qemu-user (scripts/cross.sh)" \
  scripts/cross.sh
