"""Offline stand-in: forwards to the native rules, as this rule set did for Bazel 4."""

def java_binary(**kwargs):
    native.java_binary(**kwargs)
def java_import(**kwargs):
    native.java_import(**kwargs)
def java_library(**kwargs):
    native.java_library(**kwargs)
def java_runtime(**kwargs):
    native.java_runtime(**kwargs)
def java_toolchain(**kwargs):
    native.java_toolchain(**kwargs)
