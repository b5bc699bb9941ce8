// mace_storage.hpp compiles alone with the C++11 flags, needing no MACE header.
#include "mace_storage.hpp"

bool HppAloneCheck(const mace_storage::Storage &s) { return s.is_open(); }
