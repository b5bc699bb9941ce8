"""Offline stand-in: forwards to the native rules, as this rule set did for Bazel 4."""

def proto_library(**kwargs):
    native.proto_library(**kwargs)
def proto_lang_toolchain(**kwargs):
    native.proto_lang_toolchain(**kwargs)
