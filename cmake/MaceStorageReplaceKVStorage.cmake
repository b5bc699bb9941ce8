# mace_storage_replace_kv_storage(<target> [MACE_1_0] [STRICT_FLUSH] [GUARD_WINDOW_MS <ms>]
#                                 [BUDGET_MIB <MiB>])
#
# Swaps MACE's storage layer in <target> (MACE's `core` library) for mace-storage: removes every
# source whose path ends in mace/core/kv_storage.cc, adds the drop-in src/cpp/mace_kv_storage.cc,
# and links MaceStorage::mace_storage into <target> only: targets that link <target> get the
# archive on their link line but not its include directory, so they do not recompile when the
# drop-in is switched on or off.
#   MACE_1_0         the MACE beside it is v0.12-v1.0: write the format it reads (MACE_STORAGE_MACE_1_0)
#   STRICT_FLUSH     a failed flush returns -1 (MACE aborts) instead of 0 (MACE_STORAGE_STRICT_FLUSH)
#   GUARD_WINDOW_MS  the crash-loop guard's window in milliseconds, a definition on the drop-in
#                    source alone (MACE_STORAGE_GUARD_WINDOW_MS; default 2000; needs CMake 3.18)
#   BUDGET_MIB       the largest file in MiB, least recently used binaries evicted past it
#                    (MACE_STORAGE_BUDGET_MIB; default 64; 0: no bound; needs CMake 3.18)
# Fails when <target> has no kv_storage.cc, since the drop-in would then clash with MACE's own.
function(mace_storage_replace_kv_storage target)
  cmake_parse_arguments(arg "MACE_1_0;STRICT_FLUSH" "GUARD_WINDOW_MS;BUDGET_MIB" "" ${ARGN})
  if(NOT TARGET ${target})
    message(FATAL_ERROR "mace_storage_replace_kv_storage: no target named ${target}")
  endif()
  get_property(dropin GLOBAL PROPERTY MACE_STORAGE_DROPIN_SOURCE)
  get_target_property(sources ${target} SOURCES)
  get_target_property(source_dir ${target} SOURCE_DIR)
  set(kept "")
  set(removed "")
  foreach(src IN LISTS sources)
    set(path "${src}")
    if(NOT src MATCHES "^\\$<")
      get_filename_component(path "${src}" ABSOLUTE BASE_DIR "${source_dir}")
    endif()
    if(path MATCHES "(^|/)mace/core/kv_storage\\.cc$")
      list(APPEND removed "${src}")
    else()
      list(APPEND kept "${src}")
    endif()
  endforeach()
  if(NOT removed)
    message(FATAL_ERROR "mace_storage_replace_kv_storage: ${target} has no mace/core/kv_storage.cc "
                        "(is it MACE's core library?)")
  endif()
  list(APPEND kept "${dropin}")
  set_property(TARGET ${target} PROPERTY SOURCES "${kept}")
  # Property appends instead of target_link_libraries, which must not mix its keyword and plain
  # forms on one target and so cannot know which form MACE's own CMakeLists used.
  set_property(TARGET ${target} APPEND PROPERTY LINK_LIBRARIES MaceStorage::mace_storage)
  set_property(TARGET ${target} APPEND PROPERTY INTERFACE_LINK_LIBRARIES
               "$<LINK_ONLY:MaceStorage::mace_storage>")
  if(arg_MACE_1_0)
    set_property(TARGET ${target} APPEND PROPERTY COMPILE_DEFINITIONS MACE_STORAGE_MACE_1_0)
  endif()
  if(arg_STRICT_FLUSH)
    set_property(TARGET ${target} APPEND PROPERTY COMPILE_DEFINITIONS MACE_STORAGE_STRICT_FLUSH)
  endif()
  _mace_storage_define_on_dropin(${target} "${dropin}" GUARD_WINDOW_MS "${arg_GUARD_WINDOW_MS}"
    "^[1-9][0-9]*$" "a positive number of milliseconds")
  _mace_storage_define_on_dropin(${target} "${dropin}" BUDGET_MIB "${arg_BUDGET_MIB}"
    "^[0-9]+$" "a number of MiB")
  message(STATUS "MaceStorage: ${target}: replaced ${removed} with ${dropin}")
endfunction()

# Sets MACE_STORAGE_<name>=<value> on the drop-in source of <target> alone (a source property of
# the target's directory: only the drop-in recompiles when it changes), when <value> was given;
# stops when it does not match <pattern>, saying it must be <what>.
function(_mace_storage_define_on_dropin target dropin name value pattern what)
  if(value STREQUAL "")
    return()
  endif()
  if(NOT value MATCHES "${pattern}")
    message(FATAL_ERROR "mace_storage_replace_kv_storage: ${name} must be ${what}, not '${value}'")
  endif()
  if(CMAKE_VERSION VERSION_LESS 3.18)
    message(FATAL_ERROR "mace_storage_replace_kv_storage: ${name} needs CMake 3.18")
  endif()
  set_property(SOURCE "${dropin}" TARGET_DIRECTORY ${target} APPEND PROPERTY
               COMPILE_DEFINITIONS "MACE_STORAGE_${name}=${value}")
endfunction()
