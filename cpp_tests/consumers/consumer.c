/* A C program as an integrator writes it: every consumer project (add_subdirectory, FetchContent,
 * find_package on the installed tree, pkg-config) builds this file and runs it. It writes an entry,
 * reopens the file and reads the entry back, and checks what opening found. Exit 0: all held. */
#include "mace_storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, MaceStorage *s) {
  fprintf(stderr, "consumer: %s: %s\n", what, mace_storage_last_error(s));
  return 1;
}

int main(int argc, char **argv) {
  static const char key[] = "program-key";
  static const char value[] = "compiled binary bytes";
  char path[4096];
  MaceStorage *s = NULL;
  MaceStorageValue *v = NULL;
  MaceStorageOpenReport report;
  const uint8_t *data;
  size_t len = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  snprintf(path, sizeof path, "%s/mace_cl_compiled_program.bin", argv[1]);
  if (strcmp(mace_storage_version(), MACE_STORAGE_VERSION) != 0) {
    fprintf(stderr, "consumer: library %s, header %s\n", mace_storage_version(),
            MACE_STORAGE_VERSION);
    return 1;
  }
  if (mace_storage_open(path, NULL, &s) != MACE_STORAGE_OK) return fail("open", NULL);
  if (mace_storage_open_findings(s, &report) != MACE_STORAGE_OK || !report.missing)
    return fail("a first open should find no file", s);
  if (mace_storage_put(s, (const uint8_t *)key, strlen(key), (const uint8_t *)value,
                       strlen(value)) != MACE_STORAGE_OK)
    return fail("put", s);
  if (mace_storage_flush(s) != MACE_STORAGE_OK) return fail("flush", s);
  mace_storage_close(s);

  s = NULL;
  if (mace_storage_open(path, NULL, &s) != MACE_STORAGE_OK) return fail("reopen", NULL);
  if (mace_storage_open_findings(s, &report) != MACE_STORAGE_OK || report.missing ||
      !report.intact || report.entries != 1)
    return fail("the reopened file should be intact with one entry", s);
  if (mace_storage_get(s, (const uint8_t *)key, strlen(key), &v) != MACE_STORAGE_OK)
    return fail("get", s);
  data = mace_storage_value_data(v, &len);
  if (len != strlen(value) || memcmp(data, value, len) != 0) {
    fprintf(stderr, "consumer: read back %zu bytes that differ from what was written\n", len);
    return 1;
  }
  mace_storage_value_free(v);
  mace_storage_close(s);
  printf("consumer: mace-storage %s: wrote, reopened and read back %s\n", mace_storage_version(),
         path);
  return 0;
}
