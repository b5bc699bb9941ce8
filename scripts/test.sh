#!/usr/bin/env bash
# The whole test suite: formatting, lints, the Rust tests, the C/C++ tests (plain and under
# AddressSanitizer + UBSan). Installs missing system packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
echo "== C/C++ tests (cpp_tests, ctest)"
scripts/cpp-tests.sh
# Consumer builds (add_subdirectory, install + find_package, pkg-config, ar -M, version script).
scripts/consumer-tests.sh
echo "== C/C++ tests under AddressSanitizer + UBSan"
scripts/cpp-tests.sh --sanitize
echo "== Android cross builds and the Rust tests on aarch64 under qemu-user (scripts/cross.sh)"
scripts/cross.sh
