#!/usr/bin/env bash
# Builds and runs the C/C++ tests (cpp_tests/) with CMake and ctest: the drop-in for MACE, the C and
# C++ headers, the CMake package. --sanitize builds them with AddressSanitizer + UBSan instead.
# Both configurations share one cargo build of libmace_storage.a, in build/cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/cpp
flags=()
case "${1:-}" in
  "") ;;
  --sanitize) build=build/cpp-asan; flags=(-DMACE_STORAGE_SANITIZE=ON) ;;
  *) echo "usage: $0 [--sanitize]" >&2; exit 2 ;;
esac
cmake -S cpp_tests -B "$build" -DCMAKE_BUILD_TYPE=Debug \
  -DMACE_STORAGE_CARGO_TARGET_DIR="$PWD/build/cargo" ${flags[@]+"${flags[@]}"}
cmake --build "$build" -j 2
cd "$build"
ctest --output-on-failure -j 2
