# cmake -P script run at build time by MaceStorageConfig.cmake: builds libmace_storage.a with cargo,
# records the native libraries it needs, and writes the archive that is shipped and linked.
#
# Inputs (-D): CARGO (empty: use the prebuilt ARCHIVE_IN as is), MANIFEST, TARGET_DIR, TRIPLE,
# ARCHIVE_IN (what cargo writes), ARCHIVE_OUT (what consumers link), LIBS_RECORD (next to
# ARCHIVE_IN), LIBS_OUT (a copy in the consumer's build dir, for `cmake --install`), OBJCOPY.
#
# Why the copy: the Rust standard library ships compiler_builtins objects that carry LLVM bitcode
# (.llvmbc/.llvmcmd sections). binutils' `ar` and `nm` hand such objects to the LLVM plugin in
# /usr/lib/bfd-plugins, and a plugin older than the Rust compiler's LLVM fails on them; `ar -M`
# (MACE's libmace_static.a) then writes a symbol index without any mace_storage_* symbol. The
# linker never needs those sections: ARCHIVE_OUT is ARCHIVE_IN without them.
#
# Why the record: rustc prints `native-static-libs` when it compiles the crate, and cargo replays
# that output for an up-to-date crate only if the command that compiled it asked for the print. The
# list is kept in the cargo target dir (which several build dirs may share) for `cmake --install`.

function(_run_cargo out_err)
  set(args rustc -p mace-storage --lib --release --locked --manifest-path "${MANIFEST}")
  if(TRIPLE)
    list(APPEND args --target "${TRIPLE}")
  endif()
  execute_process(
    COMMAND "${CMAKE_COMMAND}" -E env "CARGO_TARGET_DIR=${TARGET_DIR}"
            "${CARGO}" ${args} -- --print native-static-libs
    RESULT_VARIABLE rc ERROR_VARIABLE err)
  # cargo's progress went to the captured stderr: show it, so a build log says what was compiled.
  message("${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "MaceStorage: cargo failed (${rc})")
  endif()
  set(${out_err} "${err}" PARENT_SCOPE)
endfunction()

# Writes `content` to `path` through a temporary file and a rename, so a reader never sees half.
function(_write_atomic path content)
  string(RANDOM LENGTH 8 tag)
  file(WRITE "${path}.${tag}.tmp" "${content}")
  file(RENAME "${path}.${tag}.tmp" "${path}")
endfunction()

if(CARGO)
  _run_cargo(err)
  if(err MATCHES "native-static-libs: ([^\r\n]*)")
    string(STRIP "${CMAKE_MATCH_1}" libs)
    _write_atomic("${LIBS_RECORD}" "${libs}\n")
  elseif(NOT EXISTS "${LIBS_RECORD}")
    # Up to date but built by another command (plain `cargo build`): rebuild this crate once, which
    # prints the list; its dependencies stay built.
    set(args clean -p mace-storage --release --manifest-path "${MANIFEST}")
    if(TRIPLE)
      list(APPEND args --target "${TRIPLE}")
    endif()
    execute_process(COMMAND "${CMAKE_COMMAND}" -E env "CARGO_TARGET_DIR=${TARGET_DIR}"
                            "${CARGO}" ${args} RESULT_VARIABLE rc)
    _run_cargo(err)
    if(NOT err MATCHES "native-static-libs: ([^\r\n]*)")
      message(FATAL_ERROR "MaceStorage: cargo printed no native-static-libs line")
    endif()
    string(STRIP "${CMAKE_MATCH_1}" libs)
    _write_atomic("${LIBS_RECORD}" "${libs}\n")
  endif()
endif()

if(NOT EXISTS "${ARCHIVE_OUT}" OR "${ARCHIVE_IN}" IS_NEWER_THAN "${ARCHIVE_OUT}")
  get_filename_component(dir "${ARCHIVE_OUT}" DIRECTORY)
  file(MAKE_DIRECTORY "${dir}")
  execute_process(
    COMMAND "${OBJCOPY}" --remove-section=.llvmbc --remove-section=.llvmcmd
            "${ARCHIVE_IN}" "${ARCHIVE_OUT}.tmp"
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "MaceStorage: ${OBJCOPY} could not copy ${ARCHIVE_IN}")
  endif()
  file(RENAME "${ARCHIVE_OUT}.tmp" "${ARCHIVE_OUT}")
endif()

if(LIBS_OUT AND EXISTS "${LIBS_RECORD}")
  execute_process(COMMAND "${CMAKE_COMMAND}" -E copy_if_different "${LIBS_RECORD}" "${LIBS_OUT}")
endif()
