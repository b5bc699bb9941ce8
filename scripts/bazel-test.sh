#!/usr/bin/env bash
# The bazel/ folder on a stand-in for MACE's Bazel workspace (cpp_tests/consumers/bazel), with
# Debian's bazel-bootstrap (Bazel 4.2) and no network: @mace_storage is declared as docs/INTEGRATION.md
# says, //mace/core:core swaps its stock kv_storage.cc (which aborts) for the drop-in through
# bazel/mace_storage.bzl, and an app linked against core writes a cache through MACE's FileStorage
# and reads it back through the C API. Installs bazel-bootstrap with apt-get when missing. The
# archive is built by cargo in build/cargo, shared with the CMake tests.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
if ! command -v bazel >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing bazel-bootstrap"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends bazel-bootstrap
fi
tmp=$(mktemp -d)
ws="$tmp/ws"
cleanup() {
  (cd "$ws" 2>/dev/null && bazel --batch --output_user_root="$tmp/root" clean --expunge >/dev/null 2>&1) || true
  chmod -R u+w "$tmp" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

cp -r cpp_tests/consumers/bazel "$ws"
mkdir -p "$ws/third_party" "$ws/mace/utils"
ln -s "$root" "$ws/third_party/mace-storage"
cp cpp_tests/fake_mace/mace/core/kv_storage.cc cpp_tests/fake_mace/mace/core/fake_runtime.cc \
   cpp_tests/fake_mace/mace/core/fake_runtime.h cpp_tests/mace_interface/mace/core/kv_storage.h \
   "$ws/mace/core/"
cp cpp_tests/mace_interface/mace/utils/rwlock.h "$ws/mace/utils/"
cp cpp_tests/consumers/mace_like/app.cc "$ws/"

echo "== bazel build //:app (stand-in MACE workspace, no network)"
cd "$ws"
bazel --batch --output_user_root="$tmp/root" build --noshow_progress \
  --action_env=MACE_STORAGE_CARGO_TARGET_DIR="$root/build/cargo" //:app //mace/core \
  > "$tmp/bazel.log" 2>&1 || { tail -40 "$tmp/bazel.log"; echo "FAIL: bazel build" >&2; exit 1; }
grep -E "^(INFO: (Elapsed|Build)|Target)" "$tmp/bazel.log" || true
# The drop-in is compiled into core with the guard window, and the stock kv_storage.cc is not.
objs=$(find -L bazel-bin/mace/core -name '*.o' -printf '%f\n' | sort | tr '\n' ' ')
echo "   core's objects: $objs"
case "$objs" in
  *mace_kv_storage.*o*) ;;
  *) echo "FAIL: the drop-in is not compiled into core" >&2; exit 1 ;;
esac
case " $objs" in
  *" kv_storage."*) echo "FAIL: core still compiles the stock kv_storage.cc" >&2; exit 1 ;;
esac
bazel --batch --output_user_root="$tmp/root" aquery --noshow_progress \
  'mnemonic("CppCompile", //mace/core)' 2>/dev/null > "$tmp/aquery.txt"
grep -q -- "-DMACE_STORAGE_GUARD_WINDOW_MS=250" "$tmp/aquery.txt" ||
  { echo "FAIL: core is compiled without the guard window" >&2; exit 1; }
mkdir -p "$tmp/cache"
bazel-bin/app "$tmp/cache"
echo "== bazel-test.sh: passed in $((SECONDS - start)) s"
