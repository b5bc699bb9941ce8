/* mace_storage_dropin.h compiles alone as C99. */
#include "mace_storage_dropin.h"

typedef uint64_t (*FlushFailuresFn)(void);
FlushFailuresFn c_dropin_header_check(void);
FlushFailuresFn c_dropin_header_check(void) { return mace_storage_dropin_flush_failures; }
