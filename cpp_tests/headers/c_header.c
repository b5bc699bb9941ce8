/* mace_storage.h compiles alone as C99 (-Wall -Wextra -Werror -pedantic) and matches the library. */
#include "mace_storage.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  MaceStorageOptions options;
  MaceStorage *s = NULL;
  memset(&options, 0, sizeof options); /* zeroed: the defaults */
  if (strcmp(mace_storage_version(), MACE_STORAGE_VERSION) != 0) {
    fprintf(stderr, "library %s, header %s\n", mace_storage_version(), MACE_STORAGE_VERSION);
    return 1;
  }
  options.format = MACE_STORAGE_FORMAT_CHECKED_1_1;
  if (mace_storage_open(NULL, &options, &s) != MACE_STORAGE_INVALID_ARGUMENT || s != NULL) {
    fprintf(stderr, "open(NULL) did not fail as INVALID_ARGUMENT\n");
    return 1;
  }
  return 0;
}
