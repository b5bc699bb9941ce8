/* mace-storage: what the MACE drop-in (src/cpp/mace_kv_storage.cc) exposes besides MACE's classes. */
#ifndef MACE_STORAGE_DROPIN_H
#define MACE_STORAGE_DROPIN_H

#include <stdint.h>

#include "mace_storage.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Flushes of MACE's FileStorage that failed since the process started; each was logged at WARNING
   and, unless MACE_STORAGE_STRICT_FLUSH was defined, reported to MACE as a success. */
uint64_t mace_storage_dropin_flush_failures(void);

/* Fills *out with the counters of the store the drop-in keeps open for the cache file at path (the
   path exactly as MACE's FileStorage got it): every FileStorage of the process on that path loads
   from it and flushes to it, so its gets (hits, misses) count the values Find copied and its
   flushes those of every Flush. MACE_STORAGE_NOT_FOUND when no store is open for path (none was
   loaded, or every storage that used it is gone); MACE_STORAGE_INVALID_ARGUMENT for NULL. */
MaceStorageStatus mace_storage_dropin_stats(const char *path, MaceStorageStats *out);

#ifdef __cplusplus
}
#endif

#endif /* MACE_STORAGE_DROPIN_H */
