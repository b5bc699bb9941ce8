#!/usr/bin/env bash
# Runs the format layer's unit tests (src/format/unit_tests.rs, src/format/wire.rs, and any other
# tests under `format::`) under Miri, which checks every memory access and every arithmetic overflow
# for undefined behaviour. Pure in-memory code: no file I/O.
# Needs the nightly toolchain with the miri and rust-src components:
#   rustup +nightly component add miri rust-src
# Not part of CI (it takes minutes). Extra arguments go to the test harness (e.g. --exact NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "miri is not installed: rustup +nightly component add miri rust-src" >&2
  exit 2
fi
# WriteParams::next (used by some tests) reads the clock, which Miri's isolation forbids; nothing here
# touches files, so isolation is not what these tests rely on.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
start=$(date +%s)
cargo +nightly miri setup >/dev/null
# Tests too heavy for Miri (fast natively, far too slow interpreted) are skipped here; better, mark
# them #[cfg_attr(miri, ignore)] in the source and drop them from this list.
skip=(format::crc::tests::indexed_decode_decides_exactly_what_the_plain_decode_does)
cargo +nightly miri test --lib format:: -- "${skip[@]/#/--skip=}" "$@"
echo "miri: format tests passed in $(( $(date +%s) - start ))s" >&2
