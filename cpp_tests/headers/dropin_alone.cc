// mace_storage_dropin.h compiles alone as C++.
#include "mace_storage_dropin.h"

uint64_t (*DropinAloneCheck())(void) { return &mace_storage_dropin_flush_failures; }
