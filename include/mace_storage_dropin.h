/* mace-storage: what the MACE drop-in (src/cpp/mace_kv_storage.cc) exposes besides MACE's classes. */
#ifndef MACE_STORAGE_DROPIN_H
#define MACE_STORAGE_DROPIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flushes of MACE's FileStorage that failed since the process started; each was logged at WARNING
   and, unless MACE_STORAGE_STRICT_FLUSH was defined, reported to MACE as a success. */
uint64_t mace_storage_dropin_flush_failures(void);

#ifdef __cplusplus
}
#endif

#endif /* MACE_STORAGE_DROPIN_H */
