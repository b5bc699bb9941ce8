// Another source of the stand-in `core` library, which the replacement must keep.
#ifndef MACE_CORE_FAKE_RUNTIME_H_
#define MACE_CORE_FAKE_RUNTIME_H_

namespace mace {

// Always 42: proves the rest of `core` is still linked in.
int FakeCoreMarker();

}  // namespace mace

#endif  // MACE_CORE_FAKE_RUNTIME_H_
