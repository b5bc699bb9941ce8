"""Helpers for MACE's BUILD files: swap mace-storage's drop-in into `//mace/core:core`.

In mace/core/BUILD.bazel (docs/INTEGRATION.md, "Bazel"):

    load("//third_party/mace-storage/bazel:mace_storage.bzl",
         "mace_storage_copts", "mace_storage_replace_kv_storage")

    cc_library(
        name = "core",
        srcs = mace_storage_replace_kv_storage(glob(["*.cc", "runtime/cpu/*.cc"],
                                                    exclude = ["*_test.cc"])) + ...,
        copts = [...] + mace_storage_copts(guard_window_ms = 2000),
        deps = [...] + ["@mace_storage//:mace_storage"],
    )
"""

MACE_STORAGE_DROPIN = "@mace_storage//:dropin"
MACE_STORAGE_LIBRARY = "@mace_storage//:mace_storage"

def mace_storage_replace_kv_storage(srcs):
    """Returns `srcs` (a list, such as a glob) without kv_storage.cc and with the drop-in.

    Fails when `srcs` has no kv_storage.cc: the drop-in would then clash with MACE's own.
    """
    kept = [s for s in srcs if s != "kv_storage.cc" and not s.endswith("/kv_storage.cc")]
    if len(kept) == len(srcs):
        fail("mace_storage_replace_kv_storage: no kv_storage.cc in srcs (is this MACE's core?)")
    return kept + [MACE_STORAGE_DROPIN]

def mace_storage_copts(mace_1_0 = False, strict_flush = False, guard_window_ms = None, budget_mib = None):
    """The drop-in's definitions, for core's copts: the same switches as the CMake function.

    Args:
      mace_1_0: the MACE beside it is v0.12-v1.0: write the format it reads.
      strict_flush: a failed flush returns -1 (MACE aborts) instead of 0.
      guard_window_ms: the crash-loop guard's window in milliseconds (default 2000).
      budget_mib: the largest file in MiB, least recently used binaries evicted past it
        (default 64; 0: no bound).
    """
    copts = []
    if mace_1_0:
        copts.append("-DMACE_STORAGE_MACE_1_0")
    if strict_flush:
        copts.append("-DMACE_STORAGE_STRICT_FLUSH")
    if guard_window_ms != None:
        copts.append("-DMACE_STORAGE_GUARD_WINDOW_MS=%d" % guard_window_ms)
    if budget_mib != None:
        copts.append("-DMACE_STORAGE_BUDGET_MIB=%d" % budget_mib)
    return copts
