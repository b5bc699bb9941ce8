// An app linked against the merged libmace_static.a alone (CMake), or against the Bazel stand-in
// core (scripts/bazel-test.sh): MACE's FileStorage (the drop-in), the rest of `core`, and the C
// API all resolve from it. Argument: a directory for the cache file.
#include <stdio.h>
#include <string.h>

#include <memory>
#include <string>
#include <vector>

#include "mace/core/fake_runtime.h"
#include "mace/core/kv_storage.h"
#include "mace_storage.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  if (mace::FakeCoreMarker() != 42) return 1;
  const std::vector<unsigned char> binary = {'b', 'i', 'n'};
  {
    mace::FileStorageFactory factory(argv[1]);
    std::shared_ptr<mace::KVStorage> cache = factory.CreateStorage("mace_cl_compiled_program.bin");
    if (cache->Load() != 0 || !cache->Insert("program", binary) || cache->Flush() != 0) {
      fprintf(stderr, "app: the drop-in failed to write the cache\n");
      return 1;
    }
  }
  std::string path = std::string(argv[1]) + "/mace_cl_compiled_program.bin";
  MaceStorage *s = NULL;
  MaceStorageValue *v = NULL;
  if (mace_storage_open(path.c_str(), NULL, &s) != MACE_STORAGE_OK ||
      mace_storage_get(s, reinterpret_cast<const uint8_t *>("program"), 7, &v) != MACE_STORAGE_OK) {
    fprintf(stderr, "app: the C API did not read what the drop-in wrote: %s\n",
            mace_storage_last_error(s));
    return 1;
  }
  size_t len = 0;
  const uint8_t *data = mace_storage_value_data(v, &len);
  bool same = len == binary.size() && memcmp(data, binary.data(), len) == 0;
  mace_storage_value_free(v);
  mace_storage_close(s);
  if (!same) return 1;
  printf("app: the drop-in wrote the cache, the C API read it back\n");
  return 0;
}
