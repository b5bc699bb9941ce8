/* The smallest realistic user of mace-storage's C ABI, as an app uses the program cache: open the
 * cache file, get a binary, put one, flush, close. scripts/size.sh links it statically against
 * libmace_storage.a, and again with -DMACE_STORAGE_STUB (the same calls answered by the stubs
 * below), and reports the difference: what the library adds to a program. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mace_storage.h"

#ifdef MACE_STORAGE_STUB
static char stub_store;
static const uint8_t stub_value[] = "binary";

enum MaceStorageStatus mace_storage_open(const char *path, const struct MaceStorageOptions *options,
                                         struct MaceStorage **out) {
  (void)options;
  *out = path != NULL ? (struct MaceStorage *)&stub_store : NULL;
  return *out != NULL ? MACE_STORAGE_OK : MACE_STORAGE_INVALID_ARGUMENT;
}
enum MaceStorageStatus mace_storage_get(const struct MaceStorage *s, const uint8_t *key,
                                        size_t key_len, struct MaceStorageValue **out) {
  *out = (s != NULL && key != NULL && key_len > 0) ? (struct MaceStorageValue *)stub_value : NULL;
  return *out != NULL ? MACE_STORAGE_OK : MACE_STORAGE_NOT_FOUND;
}
const uint8_t *mace_storage_value_data(const struct MaceStorageValue *v, size_t *len) {
  if (len != NULL) *len = v != NULL ? sizeof stub_value : 0;
  return (const uint8_t *)v;
}
void mace_storage_value_free(struct MaceStorageValue *v) { (void)v; }
enum MaceStorageStatus mace_storage_put(struct MaceStorage *s, const uint8_t *key, size_t key_len,
                                        const uint8_t *value, size_t value_len) {
  return s != NULL && key != NULL && key_len > 0 && (value != NULL || value_len == 0)
             ? MACE_STORAGE_OK
             : MACE_STORAGE_INVALID_ARGUMENT;
}
enum MaceStorageStatus mace_storage_flush(struct MaceStorage *s) {
  return s != NULL ? MACE_STORAGE_OK : MACE_STORAGE_INVALID_ARGUMENT;
}
const char *mace_storage_last_error(const struct MaceStorage *s) {
  (void)s;
  return "";
}
void mace_storage_close(struct MaceStorage *s) { (void)s; }
#endif

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "mace_cl_compiled_program.bin";
  static const char key[] = "conv_2d_1x1 -DBIAS -DCMD_DATA_TYPE=f -DDATA_TYPE=float";
  static const uint8_t binary[] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0};
  struct MaceStorage *s = NULL;
  if (mace_storage_open(path, NULL, &s) != MACE_STORAGE_OK) {
    fprintf(stderr, "cannot open %s: %s\n", path, mace_storage_last_error(NULL));
    return 1;
  }
  struct MaceStorageValue *v = NULL;
  if (mace_storage_get(s, (const uint8_t *)key, strlen(key), &v) == MACE_STORAGE_OK) {
    size_t n = 0;
    mace_storage_value_data(v, &n);
    printf("cached binary: %zu bytes\n", n);
    mace_storage_value_free(v);
  } else {
    printf("not cached: building and caching it\n");
    if (mace_storage_put(s, (const uint8_t *)key, strlen(key), binary, sizeof binary) !=
            MACE_STORAGE_OK ||
        mace_storage_flush(s) != MACE_STORAGE_OK) {
      fprintf(stderr, "cannot save %s: %s\n", path, mace_storage_last_error(s));
    }
  }
  mace_storage_close(s);
  return 0;
}
