#include "mace/core/fake_runtime.h"

namespace mace {

int FakeCoreMarker() { return 42; }

}  // namespace mace
