// mace_storage.hpp with MACE_STORAGE_WITH_MACE_INTERFACE compiles alone (given MACE's headers).
#define MACE_STORAGE_WITH_MACE_INTERFACE
#include "mace_storage.hpp"

mace::KVStorageFactory *HppWithMaceInterfaceCheck() {
  static mace_storage::KVStorageAdapterFactory factory(".");
  return &factory;
}
