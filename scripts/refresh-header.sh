#!/usr/bin/env bash
# Regenerates include/mace_storage.h from src/ffi (cbindgen runs in build.rs, with the
# regenerate-header feature only); commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(cargo build --features regenerate-header --message-format=json 2>/dev/null |
  sed -n 's/.*"package_id":"[^"]*mace-storage[^"]*".*"out_dir":"\([^"]*\)".*/\1/p' | tail -1)
[ -n "$out" ] && [ -f "$out/mace_storage.h" ] || { echo "refresh-header: no generated header found" >&2; exit 1; }
cp "$out/mace_storage.h" include/mace_storage.h
echo "include/mace_storage.h refreshed"
