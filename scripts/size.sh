#!/usr/bin/env bash
# What mace-storage adds to a program on aarch64 Linux: size/min.c (open, get, put, flush, close)
# linked statically against libmace_storage.a, minus the same program with the library's calls
# stubbed out (-DMACE_STORAGE_STUB); both with -ffunction-sections -Wl,--gc-sections, stripped.
# The program is also run once under qemu-user when it is there, to show it works.
#
#   scripts/size.sh [--build-std] [PROFILE ...]   cargo profiles to measure (default: release)
#
# --build-std: build the standard library too, without its `backtrace` feature (the symbolizer
# the default panic hook carries, about 150 KiB), optimized like the profile; needs a nightly
# toolchain with rust-src (`cargo +nightly ... -Zbuild-std`). Panics still unwind.
#
# Installs gcc-aarch64-linux-gnu and libc6-dev-arm64-cross when missing (apt-get update first).
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
export CARGO_TARGET_DIR="$PWD/build/cross"
out=build/size
mkdir -p "$out"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
need=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.a ] || need+=(libc6-dev-arm64-cross)
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
cc=aarch64-linux-gnu-gcc
flags=(-Os -static -ffunction-sections -fdata-sections -Wl,--gc-sections -s -Iinclude)
# Bytes the program occupies: its loaded sections (text, read-only data, unwind tables, data), not
# the file size, which the 64 KiB segment alignment of aarch64 rounds.
loaded() { aarch64-linux-gnu-size "$1" | awk 'NR == 2 { print $1 + $2 }'; }
$cc "${flags[@]}" -DMACE_STORAGE_STUB size/min.c -o "$out/min-stub"
stub=$(loaded "$out/min-stub")
qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
build_std=()
if [ "${1:-}" = --build-std ]; then
  shift
  build_std=(-Zbuild-std=std,panic_unwind -Zbuild-std-features=panic-unwind)
  rustup component list --toolchain nightly --installed 2>/dev/null | grep -q rust-src ||
    rustup component add rust-src --toolchain nightly
  export CARGO_TARGET_DIR="$PWD/build/cross-build-std"
fi
profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(release)
for profile in "${profiles[@]}"; do
  if [ ${#build_std[@]} -gt 0 ]; then
    cargo +nightly build --locked --quiet --profile "$profile" --lib --target "$target" "${build_std[@]}"
  else
    cargo build --locked --quiet --profile "$profile" --lib --target "$target"
  fi
  dir=$profile
  [ "$profile" = dev ] && dir=debug
  lib="$CARGO_TARGET_DIR/$target/$dir/libmace_storage.a"
  $cc "${flags[@]}" size/min.c "$lib" -lpthread -ldl -lm -o "$out/min-$profile"
  with=$(loaded "$out/min-$profile")
  echo "profile $profile${build_std:+ (std built without backtrace)}: program $with bytes (text + data), stubbed $stub bytes:" \
    "the library adds $((with - stub)) bytes ($(((with - stub + 512) / 1024)) KiB) on $target" \
    "(file sizes: $(stat -c %s "$out/min-$profile") and $(stat -c %s "$out/min-stub") bytes)"
  if [ -n "$qemu" ]; then
    rm -f "$out/cache.bin"
    "$qemu" "$out/min-$profile" "$out/cache.bin" >/dev/null
    "$qemu" "$out/min-$profile" "$out/cache.bin" | sed 's/^/  run under qemu: /'
  fi
done
