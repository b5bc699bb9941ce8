#!/usr/bin/env bash
# Cross builds and the Rust tests on 64-bit ARM, as scripts/test.sh runs them last.
#
# 1. The library for Android: `cargo build --release --lib` for aarch64-linux-android and
#    armv7-linux-androideabi (the static library needs no NDK linker). A target that rustup cannot
#    add is skipped with a message; it does not fail the run.
# 2. The Rust tests for aarch64-unknown-linux-gnu, linked by Debian's gcc-aarch64-linux-gnu and run
#    under qemu-user. A failing test fails the run. Built with the `qemu` profile (Cargo.toml: `dev`
#    without debug info, dependencies at opt-level 1), which halves the build, and without the
#    `cpu-detect` feature but with the `crc` target feature: crc32fast then uses the ARMv8 `crc32`
#    instructions, not PMULL, which qemu-user emulates one bit at a time (with it, PMULL took half
#    of the tests' time). The library built for Android keeps run-time detection.
#    Run: the library's unit tests (format, io incl. the simulated filesystem, store, program cache
#    without a driver), tests/format.rs, tests/crash.rs (crash-state enumeration and I/O-error loop),
#    tests/read_path.rs, tests/header.rs.
#    Not run under qemu (scripts/test.sh runs every one of them natively):
#    - tests/program_cache.rs: needs an OpenCL driver (PoCL); there is none for aarch64 under qemu.
#    - the mace-cache package (cli/): its tests run the binary (and a C++ compiler);
#    - tests/multiprocess.rs, tests/stress.rs, tests/guard_ffi.rs: run the test binary again as
#      child processes. An aarch64 process under qemu-user cannot start another aarch64 program
#      without a binfmt_misc registration, which a container does not have.
#
# tests/crash.rs's crash-state enumeration, the longest test under qemu (each state is opened three
# ways and compared), crashes at every second point of each flush here
# (MACE_STORAGE_CRASH_STRIDE=2, another half in each round); scripts/test.sh's native run crashes at
# every one. Installs its apt packages when missing (apt-get update first). Set
# MACE_STORAGE_CROSS_QUICK=1 to leave the enumeration out.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
export CARGO_TARGET_DIR="$PWD/build/cross"
elapsed() { echo "($((SECONDS - start)) s so far)"; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
qemu=""
find_qemu() {
  qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
}
find_qemu
need=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.so ] || need+=(libc6-dev-arm64-cross)
[ -n "$qemu" ] || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
  find_qemu
fi

# Whether the Rust standard library for target $1 is installed or can be added.
have_target() {
  if ! command -v rustup >/dev/null 2>&1; then
    rustc --print target-libdir --target "$1" >/dev/null 2>&1 &&
      [ -d "$(rustc --print target-libdir --target "$1")" ]
    return
  fi
  rustup target list --installed 2>/dev/null | grep -qx "$1" || rustup target add "$1"
}

echo "== Android: cargo build --release --lib"
android=()
for t in aarch64-linux-android armv7-linux-androideabi; do
  if have_target "$t"; then
    android+=(--target "$t")
  else
    echo "SKIPPED: the Rust target $t cannot be added here (rustup target add $t failed);" \
      "the Android build for it is not checked"
  fi
done
if [ ${#android[@]} -gt 0 ]; then
  cargo build --locked -p mace-storage --release --lib "${android[@]}"
  for t in aarch64-linux-android armv7-linux-androideabi; do
    lib="$CARGO_TARGET_DIR/$t/release/libmace_storage.a"
    [ -f "$lib" ] && echo "built $t: libmace_storage.a, $(stat -c %s "$lib") bytes"
  done
fi
elapsed

echo "== aarch64-unknown-linux-gnu: cargo test under $qemu"
if ! have_target aarch64-unknown-linux-gnu; then
  echo "SKIPPED: the Rust target aarch64-unknown-linux-gnu cannot be added here; the tests were" \
    "not run on aarch64"
  exit 0
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$qemu -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crc"
tests=(--lib --test format --test crash --test read_path --test header)
export MACE_STORAGE_CRASH_STRIDE="${MACE_STORAGE_CRASH_STRIDE:-2}"
skip=()
if [ "${MACE_STORAGE_CROSS_QUICK:-0}" = 1 ]; then
  skip=(--skip every_crash_state_of_every_flush_is_old_or_new)
fi
cargo test --locked -p mace-storage --no-default-features --profile qemu \
  --target aarch64-unknown-linux-gnu "${tests[@]}" \
  -- ${skip[@]+"${skip[@]}"}
echo "== cross.sh done in $((SECONDS - start)) s"
