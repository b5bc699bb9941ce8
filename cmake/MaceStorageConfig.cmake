# find_package(MaceStorage CONFIG PATHS <mace-storage>/cmake), or add_subdirectory(<mace-storage>)
# or FetchContent (the top-level CMakeLists.txt includes this file), gives:
#   MaceStorage::mace_storage           the static library (libmace_storage.a) with include/ and its
#                                       link dependencies; cargo builds it when needed
#   mace_storage_replace_kv_storage()   swaps the drop-in into MACE (MaceStorageReplaceKVStorage.cmake)
#   MACE_STORAGE_DROPIN_SOURCE          src/cpp/mace_kv_storage.cc
#   MACE_STORAGE_ARCHIVE                the path of the archive consumers link (in this build dir,
#                                       written at build time), for MACE's `ar -M` script
#
# Cache variables:
#   MACE_STORAGE_LIBRARY           a prebuilt libmace_storage.a to import; empty (default): cargo
#                                  builds it as part of the build
#   MACE_STORAGE_NATIVE_LIBS       with MACE_STORAGE_LIBRARY: the libraries it needs, as rustc's
#                                  `--print native-static-libs` listed them (default: Linux's list)
#   MACE_STORAGE_RUST_TARGET       the Rust target triple; empty: from ANDROID_ABI, else from the
#                                  toolchain when cross-compiling, else the host
#   MACE_STORAGE_CARGO_TARGET_DIR  CARGO_TARGET_DIR of that build (default: in the binary dir); build
#                                  dirs may share one, cargo then builds once for all of them

get_filename_component(MACE_STORAGE_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(MACE_STORAGE_DROPIN_SOURCE "${MACE_STORAGE_ROOT}/src/cpp/mace_kv_storage.cc")
set(MaceStorage_INCLUDE_DIRS "${MACE_STORAGE_ROOT}/include")
set(MaceStorage_LIBRARIES MaceStorage::mace_storage)
if(TARGET MaceStorage::mace_storage)
  get_target_property(MACE_STORAGE_ARCHIVE MaceStorage::mace_storage IMPORTED_LOCATION)
  return()
endif()

set(MACE_STORAGE_LIBRARY "" CACHE FILEPATH
    "A prebuilt libmace_storage.a; empty: build it with cargo")
set(MACE_STORAGE_NATIVE_LIBS "-lgcc_s;-lutil;-lrt;-lpthread;-lm;-ldl;-lc" CACHE STRING
    "With MACE_STORAGE_LIBRARY: the native libraries it needs (rustc --print native-static-libs)")
set(MACE_STORAGE_RUST_TARGET "" CACHE STRING
    "Rust target triple for cargo; empty: derived from ANDROID_ABI or the toolchain")
set(MACE_STORAGE_CARGO_TARGET_DIR "${CMAKE_BINARY_DIR}/mace_storage_cargo" CACHE PATH
    "CARGO_TARGET_DIR for building libmace_storage.a")

# The Rust target triple for this build, or "" for the host.
function(_mace_storage_rust_target out)
  set(abi "${ANDROID_ABI}")
  if(NOT abi AND CMAKE_SYSTEM_NAME STREQUAL "Android")
    set(abi "${CMAKE_ANDROID_ARCH_ABI}")
  endif()
  set(triple "")
  if(MACE_STORAGE_RUST_TARGET)
    set(triple "${MACE_STORAGE_RUST_TARGET}")
  elseif(abi)
    set(android_arm64-v8a aarch64-linux-android)
    set(android_armeabi-v7a armv7-linux-androideabi)
    set(android_x86_64 x86_64-linux-android)
    set(android_x86 i686-linux-android)
    set(triple "${android_${abi}}")
    if(NOT triple)
      message(FATAL_ERROR "MaceStorage: no Rust target known for ANDROID_ABI=${abi}; "
                          "set MACE_STORAGE_RUST_TARGET")
    endif()
  elseif(CMAKE_CROSSCOMPILING)
    string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" cpu)
    if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
      if(cpu MATCHES "^(aarch64|arm64)$")
        set(triple aarch64-unknown-linux-gnu)
      elseif(cpu MATCHES "^armv7")
        set(triple armv7-unknown-linux-gnueabihf)
      elseif(cpu MATCHES "^(x86_64|amd64)$")
        set(triple x86_64-unknown-linux-gnu)
      elseif(cpu MATCHES "^(i[3-6]86|x86)$")
        set(triple i686-unknown-linux-gnu)
      endif()
    endif()
    if(NOT triple)
      message(FATAL_ERROR "MaceStorage: cannot tell the Rust target for ${CMAKE_SYSTEM_NAME}/"
                          "${CMAKE_SYSTEM_PROCESSOR}; set MACE_STORAGE_RUST_TARGET")
    endif()
  endif()
  set(${out} "${triple}" PARENT_SCOPE)
endfunction()

# What consumers link: the archive without LLVM bitcode sections (MaceStorageBuildArchive.cmake
# says why), in this build dir; its native libraries are recorded next to it for `cmake --install`.
set(_mace_storage_dir "${CMAKE_BINARY_DIR}/mace_storage")
set(MACE_STORAGE_ARCHIVE "${_mace_storage_dir}/libmace_storage.a")
set(_mace_storage_libs_out "${_mace_storage_dir}/native-static-libs.txt")
# The toolchain's objcopy (the NDK's llvm-objcopy on Android) knows the target's objects.
if(CMAKE_OBJCOPY)
  set(_mace_storage_objcopy "${CMAKE_OBJCOPY}")
else()
  find_program(MACE_STORAGE_OBJCOPY NAMES objcopy llvm-objcopy)
  if(NOT MACE_STORAGE_OBJCOPY)
    message(FATAL_ERROR "MaceStorage: no objcopy found (binutils or llvm-objcopy)")
  endif()
  set(_mace_storage_objcopy "${MACE_STORAGE_OBJCOPY}")
endif()
if(MACE_STORAGE_LIBRARY)
  if(NOT EXISTS "${MACE_STORAGE_LIBRARY}")
    message(FATAL_ERROR "MaceStorage: MACE_STORAGE_LIBRARY=${MACE_STORAGE_LIBRARY} does not exist")
  endif()
  set(_mace_storage_cargo "")
  set(_mace_storage_in "${MACE_STORAGE_LIBRARY}")
  set(_mace_storage_record "${_mace_storage_dir}/prebuilt-native-static-libs.txt")
  string(REPLACE ";" " " _mace_storage_given "${MACE_STORAGE_NATIVE_LIBS}")
  file(WRITE "${_mace_storage_record}" "${_mace_storage_given}\n")
  set(_mace_storage_triple "")
  set(_mace_storage_for "the prebuilt ${MACE_STORAGE_LIBRARY}")
else()
  find_program(MACE_STORAGE_CARGO cargo HINTS "$ENV{CARGO_HOME}/bin" "$ENV{HOME}/.cargo/bin"
               NO_CMAKE_FIND_ROOT_PATH)
  if(NOT MACE_STORAGE_CARGO)
    message(FATAL_ERROR "MaceStorage: cargo not found; install Rust or set MACE_STORAGE_LIBRARY "
                        "to a prebuilt libmace_storage.a")
  endif()
  set(_mace_storage_cargo "${MACE_STORAGE_CARGO}")
  _mace_storage_rust_target(_mace_storage_triple)
  set(_mace_storage_out "${MACE_STORAGE_CARGO_TARGET_DIR}")
  if(_mace_storage_triple)
    set(_mace_storage_out "${_mace_storage_out}/${_mace_storage_triple}")
  endif()
  set(_mace_storage_in "${_mace_storage_out}/release/libmace_storage.a")
  set(_mace_storage_record "${_mace_storage_out}/release/mace-storage-native-libs.txt")
  set(_mace_storage_for "${_mace_storage_triple}")
  if(NOT _mace_storage_for)
    set(_mace_storage_for "the host")
  endif()
endif()
# Always run: cargo knows what changed and returns at once when nothing did. The archive is always
# cargo's release profile, whatever CMAKE_BUILD_TYPE is (docs/INTEGRATION.md).
add_custom_target(mace_storage_cargo_build
  COMMAND "${CMAKE_COMMAND}" "-DCARGO=${_mace_storage_cargo}"
          "-DMANIFEST=${MACE_STORAGE_ROOT}/Cargo.toml"
          "-DTARGET_DIR=${MACE_STORAGE_CARGO_TARGET_DIR}" "-DTRIPLE=${_mace_storage_triple}"
          "-DARCHIVE_IN=${_mace_storage_in}" "-DARCHIVE_OUT=${MACE_STORAGE_ARCHIVE}"
          "-DLIBS_RECORD=${_mace_storage_record}" "-DLIBS_OUT=${_mace_storage_libs_out}"
          "-DOBJCOPY=${_mace_storage_objcopy}"
          -P "${CMAKE_CURRENT_LIST_DIR}/MaceStorageBuildArchive.cmake"
  WORKING_DIRECTORY "${MACE_STORAGE_ROOT}"
  BYPRODUCTS "${MACE_STORAGE_ARCHIVE}" "${_mace_storage_libs_out}"
  COMMENT "Building libmace_storage.a with cargo for ${_mace_storage_for}"
  USES_TERMINAL
  VERBATIM)

find_package(Threads REQUIRED)
set(_mace_storage_deps ${CMAKE_THREAD_LIBS_INIT} ${CMAKE_DL_LIBS} m)
if(ANDROID OR CMAKE_SYSTEM_NAME STREQUAL "Android")
  list(APPEND _mace_storage_deps log)
endif()

add_library(MaceStorage::mace_storage STATIC IMPORTED GLOBAL)
set_target_properties(MaceStorage::mace_storage PROPERTIES
  IMPORTED_LOCATION "${MACE_STORAGE_ARCHIVE}"
  IMPORTED_LINK_INTERFACE_LANGUAGES "C"
  INTERFACE_INCLUDE_DIRECTORIES "${MaceStorage_INCLUDE_DIRS}"
  INTERFACE_LINK_LIBRARIES "${_mace_storage_deps}")
add_dependencies(MaceStorage::mace_storage mace_storage_cargo_build)
set_property(GLOBAL PROPERTY MACE_STORAGE_DROPIN_SOURCE "${MACE_STORAGE_DROPIN_SOURCE}")

include("${CMAKE_CURRENT_LIST_DIR}/MaceStorageReplaceKVStorage.cmake")
