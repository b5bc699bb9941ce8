#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, with apt-get, when it is missing:
# cmake, pkg-config, GoogleTest, and an OpenCL runtime (PoCL) with the ICD loader.
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/gtest/gtest.h ] || need+=(googletest libgtest-dev)
[ -e /etc/OpenCL/vendors/pocl.icd ] || need+=(pocl-opencl-icd)
[ -e /usr/include/CL/cl.h ] && ls /usr/lib/*/libOpenCL.so* >/dev/null 2>&1 || need+=(ocl-icd-opencl-dev)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${need[*]}" >&2
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
