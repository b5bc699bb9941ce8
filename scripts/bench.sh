#!/usr/bin/env bash
# Regenerates the table of docs/PERFORMANCE.md: the Rust benchmark (benches/storage.rs) and the
# MACE drop-in's (cpp_tests/bench_dropin.cc, built in Release by CMake) on the same files, printed
# as one table with the machine it ran on.
#
#   scripts/bench.sh [--reps N] [--warm-only]
#
# Every figure is the median of N repetitions (default 7); each ratio is the median of the
# per-repetition ratios, ours and the baseline measured back to back. Cold-cache rows drop the page
# cache before every read (needs root); --warm-only (or a kernel that refuses) skips them.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=7
warm=()
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --warm-only) warm=(--warm-only); shift ;;
    *) echo "usage: $0 [--reps N] [--warm-only]" >&2; exit 2 ;;
  esac
done
out=build/bench
data="$out/data"
mkdir -p "$out"
scripts/install-deps.sh # cmake and GoogleTest: cpp_tests/CMakeLists.txt needs them to configure

echo "== cargo bench --bench storage" >&2
cargo bench --locked --bench storage -- --reps "$reps" --dir "$data" --keep ${warm[@]+"${warm[@]}"} \
  | tee "$out/rust.txt" >&2

echo "== bench_dropin (cpp_tests, Release)" >&2
cmake -S cpp_tests -B "$out/cpp" -DCMAKE_BUILD_TYPE=Release \
  -DMACE_STORAGE_CARGO_TARGET_DIR="$PWD/build/cargo" >"$out/cmake.log"
cmake --build "$out/cpp" --target bench_dropin -j 2 >>"$out/cmake.log"
"$out/cpp/bench_dropin" --reps "$reps" ${warm[@]+"${warm[@]}"} \
  "$data/checked-1.1.bin" "$data/mace-1.1.bin" | tee "$out/dropin.txt" >&2

dev=$(df --output=source "$data" | tail -1)
fs=$(df --output=fstype "$data" | tail -1)
blk=$(basename "$dev")
rot=$(cat "/sys/class/block/$blk/queue/rotational" 2>/dev/null || echo "?")
echo
echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r), \
files on $fs ($dev, rotational=$rot), load average $(cut -d' ' -f1-3 /proc/loadavg)"
grep -E '^(mace-storage benchmark|page cache):' "$out/rust.txt"
echo
echo "| measurement | ours | baseline | ratio | target | met |"
echo "|---|---|---|---|---|---|"
grep -hE '^\| ' "$out/rust.txt" "$out/dropin.txt" | grep -vE '^\| (measurement|---)'
rm -rf "$data"
