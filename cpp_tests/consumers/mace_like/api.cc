// The stand-in libmace.so's API: one exported function that goes through `core`'s FileStorage, so
// the drop-in and the Rust archive are linked into the shared library.
#include <string>

#include "mace/core/kv_storage.h"

namespace mace {

__attribute__((visibility("default"))) int MaceVersionStandIn(const char *dir) {
  FileStorageFactory factory(dir);
  return factory.CreateStorage("mace_cl_compiled_program.bin")->Load();
}

}  // namespace mace
