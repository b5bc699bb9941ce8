# Run by `cmake --install` (install(SCRIPT) in the top-level CMakeLists.txt): writes the installed
# tree's MaceStorageConfig.cmake and mace-storage.pc with the native libraries cargo printed for the
# archive, and installs them. Paths inside are relative to the files, so the tree can be moved.
if(NOT EXISTS "${MACE_STORAGE_LIBS_FILE}")
  message(FATAL_ERROR "MaceStorage: ${MACE_STORAGE_LIBS_FILE} is missing: build before installing")
endif()
file(STRINGS "${MACE_STORAGE_LIBS_FILE}" MACE_STORAGE_NATIVE_LIBS LIMIT_COUNT 1)
string(STRIP "${MACE_STORAGE_NATIVE_LIBS}" MACE_STORAGE_NATIVE_LIBS)
separate_arguments(MACE_STORAGE_NATIVE_LIBS_LIST UNIX_COMMAND "${MACE_STORAGE_NATIVE_LIBS}")

# Written in the build dir (cmake --install runs from anywhere), then installed.
set(stage "${MACE_STORAGE_STAGE}")
configure_file("${MACE_STORAGE_TEMPLATES}/MaceStorageInstalledConfig.cmake.in"
               "${stage}/MaceStorageConfig.cmake" @ONLY)
configure_file("${MACE_STORAGE_TEMPLATES}/mace-storage.pc.in" "${stage}/mace-storage.pc" @ONLY)
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/${MACE_STORAGE_CMAKE_DIR}" TYPE FILE
     FILES "${stage}/MaceStorageConfig.cmake")
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/${MACE_STORAGE_PC_DIR}" TYPE FILE
     FILES "${stage}/mace-storage.pc")
