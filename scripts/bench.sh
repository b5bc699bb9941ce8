#!/usr/bin/env bash
# Regenerates the table of docs/PERFORMANCE.md: the Rust benchmark (benches/storage.rs), the
# MACE drop-in's (cpp_tests/bench_dropin.cc, built in Release by CMake) and SQLite and LMDB beside
# ours through the C API (benches/baselines.c), on the same files, printed as one table with the
# machine it ran on.
#
#   scripts/bench.sh [--reps N] [--warm-only]
#
# Every figure is the median of N repetitions (default 7); each ratio is the median of the
# per-repetition ratios, ours and the baseline measured back to back. Cold-cache rows drop the page
# cache before every read (needs root); --warm-only (or a kernel that refuses) skips them.
# SQLite and LMDB come from Debian's libsqlite3-dev and liblmdb-dev, installed with apt-get when
# missing and this runs as root; otherwise their rows are skipped with a line saying how to install
# them. (Not in scripts/install-deps.sh: the tests do not need them.)
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

echo "== baselines (benches/baselines.c): SQLite and LMDB" >&2
# Linked against the archive the drop-in's build just made (cargo's release profile, without the
# LLVM bitcode sections), with the native libraries rustc listed for it.
archive_dir="$out/cpp/mace_storage"
baseline_pkgs=(libsqlite3-dev liblmdb-dev)
missing_pkgs() {
  local p
  for p in "${baseline_pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || echo "$p"
  done
}
missing=$(missing_pkgs)
if [ -n "$missing" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing: $missing" >&2
  { apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; } \
    >"$out/apt.log" 2>&1 || echo "apt-get failed, see $out/apt.log" >&2
  missing=$(missing_pkgs)
fi
if [ -n "$missing" ]; then
  echo "baselines: SQLite and LMDB skipped, missing $(echo $missing) (as root: apt-get install \
${baseline_pkgs[*]})" | tee "$out/baselines.txt" >&2
else
  # Once MaceStorageOptions has a `verify` field, every row of ours is measured eager and lazy.
  verify=()
  if sed -n '/^typedef struct MaceStorageOptions {/,/^} MaceStorageOptions;/p' include/mace_storage.h \
      | grep -qE '[[:space:]]verify;'; then
    verify=(-DBASELINES_HAVE_VERIFY)
  fi
  # shellcheck disable=SC2046 # the list of native libraries is split into words on purpose
  "${CC:-cc}" -std=c99 -O2 -Wall -Wextra -Werror ${verify[@]+"${verify[@]}"} -Iinclude \
    benches/baselines.c "$archive_dir/libmace_storage.a" $(cat "$archive_dir/native-static-libs.txt") \
    -lsqlite3 -llmdb -o "$out/baselines"
  "$out/baselines" --reps "$reps" ${warm[@]+"${warm[@]}"} "$data/checked-1.1.bin" \
    | tee "$out/baselines.txt" >&2
fi

dev=$(df --output=source "$data" | tail -1)
fs=$(df --output=fstype "$data" | tail -1)
blk=$(basename "$dev")
rot=$(cat "/sys/class/block/$blk/queue/rotational" 2>/dev/null || echo "?")
echo
echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r), \
files on $fs ($dev, rotational=$rot), load average $(cut -d' ' -f1-3 /proc/loadavg)"
grep -hE '^(mace-storage benchmark|page cache|baselines):' "$out/rust.txt" "$out/baselines.txt"
echo
echo "| measurement | ours | baseline | ratio | target | met |"
echo "|---|---|---|---|---|---|"
grep -hE '^\| ' "$out/rust.txt" "$out/dropin.txt" "$out/baselines.txt" | grep -vE '^\| (measurement|---)'
rm -rf "$data"
