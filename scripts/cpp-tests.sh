#!/usr/bin/env bash
# Builds and runs the C/C++ tests (cpp_tests/) with CMake and ctest: the drop-in for MACE, the C and
# C++ headers, the CMake package. --sanitize builds them with AddressSanitizer + UBSan instead;
# --valgrind runs the plain build's tests under valgrind's memcheck (all but the PoCL tests, whose
# LLVM compiler is too slow there). All configurations share one cargo build, in build/cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/cpp
flags=()
mode="${1:-}"
case "$mode" in
  "" | --valgrind) ;;
  --sanitize) build=build/cpp-asan; flags=(-DMACE_STORAGE_SANITIZE=ON) ;;
  *) echo "usage: $0 [--sanitize | --valgrind]" >&2; exit 2 ;;
esac
cmake -S cpp_tests -B "$build" -DCMAKE_BUILD_TYPE=Debug \
  -DMACE_STORAGE_CARGO_TARGET_DIR="$PWD/build/cargo" ${flags[@]+"${flags[@]}"}
cmake --build "$build" -j 2
cd "$build"
if [ "$mode" = --valgrind ]; then
  command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
  # Any memory error or definite leak fails; the process-wide guard registry and timer live as
  # long as the process by design (reachable, or "possibly lost" inside a hash map).
  for t in test_c_api test_cpp_wrappers test_dropin_1_1 test_dropin_1_0 test_dropin_strict \
           test_replace test_c_header; do
    echo "== valgrind $t"
    valgrind -q --error-exitcode=42 --leak-check=full --errors-for-leak-kinds=definite \
      --child-silent-after-fork=yes "./$t" > "valgrind-$t.log" 2>&1 ||
      { tail -40 "valgrind-$t.log"; echo "valgrind: $t failed" >&2; exit 1; }
    grep -E '^\[  (PASSED|FAILED) ' "valgrind-$t.log" || true
  done
else
  ctest --output-on-failure -j 2
fi
