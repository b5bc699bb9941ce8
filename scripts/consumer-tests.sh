#!/usr/bin/env bash
# The package as integrators consume it, each way building and running a C (or C++) program:
#   1. add_subdirectory(mace-storage), and FetchContent from a local directory;
#   2. `cmake --install` of the top-level project, the installed tree moved elsewhere, then
#      find_package(MaceStorage CONFIG) from CMAKE_PREFIX_PATH;
#   3. `pkg-config --cflags --libs mace-storage` on that moved tree;
#   4. a stand-in MACE build (cpp_tests/consumers/mace_like): the drop-in in `core` only, the
#      guard window as a definition on the drop-in alone, libmace_static.a merged with `ar -M` from
#      an MRI script and an app linked against it, libmace.so linked with MACE's kind of version
#      script exporting no mace_storage_* name;
#   5. no global symbol of the archive matches a pattern of MACE's version script, and the shipped
#      archive carries no LLVM bitcode;
#   6. a consumer build compiles no cbindgen (nor syn): the header is generated only on request;
#      and bazel/ swaps the drop-in into a stand-in MACE Bazel workspace (scripts/bazel-test.sh);
#   7. the committed header is what cbindgen generates (cargo test --features regenerate-header).
# Every CMake build shares one cargo target dir, build/cargo (as scripts/cpp-tests.sh does), so the
# release archive is built once. Output: build/consumers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="$root/build/consumers"
cargo_dir="$root/build/cargo"
start=$SECONDS
rm -rf "$out"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# What the checkout holds before: the builds and installs must write nothing into it.
tree_before=$(git status --porcelain --untracked-files=all 2>/dev/null || true)
# configure_and_build NAME SOURCE [CMAKE ARGS...]: logs to $out/NAME.log.
configure_and_build() {
  local name=$1 src=$2
  shift 2
  echo "== $name: configure and build ($src)"
  { cmake -S "$src" -B "$out/$name" -DCMAKE_BUILD_TYPE=Release \
      -DMACE_STORAGE_CARGO_TARGET_DIR="$cargo_dir" "$@" &&
    cmake --build "$out/$name" -j 2; } > "$out/$name.log" 2>&1 ||
    { tail -40 "$out/$name.log"; fail "$name did not build"; }
}
# no_cbindgen LOG: the build whose output is LOG compiled no header generator.
no_cbindgen() {
  if grep -E "Compiling (cbindgen|syn) " "$1"; then
    fail "a consumer build compiled the header generator ($1)"
  fi
}

echo "== the header generator is not in a consumer's dependency graph"
# The graph a consumer's cargo build compiles (the library, default features, any target).
cargo tree --locked -p mace-storage --edges normal,build --target all --prefix none --format '{p}' > "$out/cargo-tree.txt"
if grep -E "^(cbindgen|syn) " "$out/cargo-tree.txt"; then
  fail "cbindgen or syn is a default (build-)dependency"
fi

# 1. add_subdirectory and FetchContent.
configure_and_build subdirectory cpp_tests/consumers/subdirectory
no_cbindgen "$out/subdirectory.log"
"$out/subdirectory/consumer" "$(mktemp -d "$tmp/XXXX")"
configure_and_build fetchcontent cpp_tests/consumers/subdirectory -DCONSUMER_FETCHCONTENT=ON
"$out/fetchcontent/consumer" "$(mktemp -d "$tmp/XXXX")"

# 2. Install, move the tree, find_package.
configure_and_build top "$root"
no_cbindgen "$out/top.log"
cmake --install "$out/top" --prefix "$out/prefix" > "$out/install.log"
mv "$out/prefix" "$out/moved"
for f in lib/libmace_storage.a include/mace_storage.h include/mace_storage.hpp \
         include/mace_storage_dropin.h share/mace-storage/mace_kv_storage.cc \
         lib/cmake/MaceStorage/MaceStorageConfig.cmake \
         lib/cmake/MaceStorage/MaceStorageConfigVersion.cmake \
         lib/cmake/MaceStorage/MaceStorageReplaceKVStorage.cmake lib/pkgconfig/mace-storage.pc; do
  [ -f "$out/moved/$f" ] || fail "cmake --install did not install $f"
done
if grep -rl "$out/prefix" "$out/moved" >/dev/null; then
  fail "the installed tree names its install prefix: it cannot be moved"
fi
record="$cargo_dir/release/mace-storage-native-libs.txt"
[ -s "$record" ] || fail "no native-static-libs record at $record"
native=$(cat "$record")
echo "   rustc's native-static-libs: $native"
grep -qF -- "$native" "$out/moved/lib/pkgconfig/mace-storage.pc" ||
  fail "mace-storage.pc does not carry rustc's native-static-libs"
configure_and_build installed cpp_tests/consumers/installed -DCMAKE_PREFIX_PATH="$out/moved"
if grep -E "cargo|Compiling " "$out/installed.log"; then
  fail "building against the installed tree ran cargo"
fi
"$out/installed/consumer" "$(mktemp -d "$tmp/XXXX")"

# 3. pkg-config.
echo "== pkg-config --cflags --libs mace-storage"
flags=$(PKG_CONFIG_PATH="$out/moved/lib/pkgconfig" pkg-config --cflags --libs mace-storage)
echo "   $flags"
# shellcheck disable=SC2086 # the flags are words
cc -std=c99 -Wall -Wextra -Werror cpp_tests/consumers/consumer.c $flags -o "$out/pkgconfig-consumer"
"$out/pkgconfig-consumer" "$(mktemp -d "$tmp/XXXX")"

# 4. The stand-in MACE build.
configure_and_build mace_like cpp_tests/consumers/mace_like
mace="$out/mace_like"
archive=$(sed -n 's/^addlib \(.*libmace_storage\.a\)$/\1/p' "$mace/mace.mri")
[ -f "$archive" ] || fail "mace.mri names no Rust archive (MACE_STORAGE_ARCHIVE)"
python3 - "$mace/compile_commands.json" "$root/include" <<'EOF' || fail "compile commands"
import json, sys
cmds = json.load(open(sys.argv[1]))
inc = "-I" + sys.argv[2]
seen = 0
for c in cmds:
    cmd, f = c["command"], c["file"]
    guard = "-DMACE_STORAGE_GUARD_WINDOW_MS=250" in cmd
    if f.endswith("src/cpp/mace_kv_storage.cc"):
        seen += 1
        assert guard, "the drop-in is compiled without GUARD_WINDOW_MS: " + cmd
    else:
        assert not guard, "GUARD_WINDOW_MS reaches another source than the drop-in: " + f
    if f.endswith("/ops.cc"):
        assert inc not in cmd.split(), "ops.cc compiles against mace-storage's headers: " + cmd
assert seen == 1, "the drop-in is compiled %d times" % seen
print("   compile commands: GUARD_WINDOW_MS on the drop-in alone; ops.cc without mace-storage's headers")
EOF
nm --print-armap "$mace/libmace_static.a" > "$out/libmace_static-armap.txt" 2>/dev/null
grep -q "^mace_storage_open in " "$out/libmace_static-armap.txt" ||
  fail "the symbol index of the ar -M merged libmace_static.a has no mace_storage_open"
"$mace/app" "$(mktemp -d "$tmp/XXXX")"
nm -D --defined-only "$mace/libmace.so" > "$out/libmace-exports.txt"
grep -q MaceVersionStandIn "$out/libmace-exports.txt" || fail "libmace.so exports not even its API"
if grep mace_storage "$out/libmace-exports.txt"; then
  fail "libmace.so exports mace-storage's C names through MACE's version script"
fi
echo "   libmace.so exports $(grep -c ' T ' "$out/libmace-exports.txt") functions, no mace_storage_*"

# 5. Archive: no bitcode, no name that MACE's version script exports.
echo "== the shipped archive: $archive"
if readelf -S -W "$archive" | grep -E '\.llvm(bc|cmd)'; then
  fail "the shipped archive carries LLVM bitcode sections"
fi
mapfile -t patterns < <(sed -n '/global:/,/local:/s/^ *\([^ #][^;]*\);$/\1/p' \
  cpp_tests/consumers/mace_like/mace_version_script.lds)
[ ${#patterns[@]} -ge 20 ] || fail "read only ${#patterns[@]} patterns from the version script"
# matches NAME: the name matches a pattern (the linker's glob, case-sensitive).
matches() {
  local p
  for p in "${patterns[@]}"; do
    # shellcheck disable=SC2053 # a glob match is meant
    [[ $1 == $p ]] && { echo "$p"; return 0; }
  done
  return 1
}
matches mace_storage_open_report >/dev/null ||
  fail "the pattern matcher misses the name libmace.so used to export"
mapfile -t symbols < <({ nm -g --defined-only "$archive"; nm -g --defined-only -C "$archive"; } \
  2>/dev/null | sed -n 's/^[0-9a-f]* [A-Z] //p' | sort -u)
[ ${#symbols[@]} -gt 20 ] || fail "read only ${#symbols[@]} symbols from the archive"
bad=0
for s in "${symbols[@]}"; do
  if p=$(matches "$s"); then
    echo "   $s matches the version-script pattern $p" >&2
    bad=1
  fi
done
[ $bad = 0 ] || fail "exported names of the archive would be exported by libmace.so"
echo "   ${#symbols[@]} global names, none matches the ${#patterns[@]} patterns; no bitcode"

# 6. Bazel: bazel/ on a stand-in MACE workspace, offline.
scripts/bazel-test.sh

# 7. Header freshness (cbindgen compiled here, on request).
echo "== cargo test --features regenerate-header --test header"
cargo test --locked --features regenerate-header --test header
if [ "$(git status --porcelain --untracked-files=all 2>/dev/null || true)" != "$tree_before" ]; then
  git status --short >&2
  fail "the consumer builds wrote files into the source tree"
fi
echo "== consumer-tests.sh: all passed in $((SECONDS - start)) s"
