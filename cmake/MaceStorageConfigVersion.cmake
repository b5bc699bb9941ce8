# The package version is the library's, read from its C header; 0.x releases are compatible within
# one minor version, later ones within one major version.
# The header is in ../include in the source tree, in <prefix>/include when installed in
# <prefix>/lib/cmake/MaceStorage or <prefix>/lib/<multiarch>/cmake/MaceStorage.
foreach(_mace_storage_up ".." "../../.." "../../../..")
  set(_mace_storage_header "${CMAKE_CURRENT_LIST_DIR}/${_mace_storage_up}/include/mace_storage.h")
  if(EXISTS "${_mace_storage_header}")
    break()
  endif()
endforeach()
file(STRINGS "${_mace_storage_header}" _mace_storage_version_line
     REGEX "^#define MACE_STORAGE_VERSION \"[0-9]+\\.[0-9]+\\.[0-9]+\"")
string(REGEX REPLACE ".*\"([0-9.]+)\".*" "\\1" PACKAGE_VERSION "${_mace_storage_version_line}")
string(REGEX MATCH "^[0-9]+\\.[0-9]+" _mace_storage_minor "${PACKAGE_VERSION}")
string(REGEX MATCH "^[0-9]+" _mace_storage_major "${PACKAGE_VERSION}")

set(PACKAGE_VERSION_COMPATIBLE FALSE)
set(PACKAGE_VERSION_EXACT FALSE)
if(NOT PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
elseif(NOT PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  if(_mace_storage_major STREQUAL "0")
    set(_mace_storage_want "${PACKAGE_FIND_VERSION_MAJOR}.${PACKAGE_FIND_VERSION_MINOR}")
    if(_mace_storage_want STREQUAL _mace_storage_minor)
      set(PACKAGE_VERSION_COMPATIBLE TRUE)
    endif()
  elseif(PACKAGE_FIND_VERSION_MAJOR STREQUAL _mace_storage_major)
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
endif()
if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
  set(PACKAGE_VERSION_EXACT TRUE)
endif()
