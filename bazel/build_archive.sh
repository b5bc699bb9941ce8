#!/usr/bin/env bash
# Run by the @mace_storage//:archive genrule (bazel/mace_storage.BUILD):
#   build_archive.sh CARGO_TOML TRIPLE|host OUT
# builds libmace_storage.a with cargo for TRIPLE (host: this machine) and writes it to OUT without
# its LLVM bitcode sections, which binutils cannot read (docs/INTEGRATION.md, libmace_static.a).
set -euo pipefail
manifest=$1
triple=$2
out=$3
root=$(cd "$(dirname "$(readlink -f "$manifest")")" && pwd)
# Bazel runs actions with a minimal environment: find cargo (and rustup's home) as a login would.
if [ -z "${HOME:-}" ]; then
  HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
  export HOME
fi
PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
target_dir=${MACE_STORAGE_CARGO_TARGET_DIR:-$root/build/cargo}
# The same command as the CMake package runs, so both can share one target dir.
args=(rustc -p mace-storage --lib --release --locked --manifest-path "$root/Cargo.toml")
sub=""
if [ "$triple" != host ]; then
  args+=(--target "$triple")
  sub="$triple/"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
CARGO_TARGET_DIR="$target_dir" cargo "${args[@]}" -- --print native-static-libs 2> >(tee "$log" >&2)
wait
# Recorded as the CMake package records it, so a CMake build sharing the target dir knows the list.
libs=$(sed -n 's/.*native-static-libs: //p' "$log")
if [ -n "$libs" ]; then
  echo "$libs" > "$target_dir/${sub}release/mace-storage-native-libs.txt"
fi
objcopy=${OBJCOPY:-$(command -v llvm-objcopy || command -v objcopy)}
"$objcopy" --remove-section=.llvmbc --remove-section=.llvmcmd \
  "$target_dir/${sub}release/libmace_storage.a" "$out"
