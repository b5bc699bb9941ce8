// A MACE library that links `core`: it must not compile against mace-storage's headers, or every
// MACE object would recompile when the drop-in is switched on or off.
#if defined(__has_include)
#if __has_include("mace_storage.h")
#error "mace-storage's include directory leaked from core to a target that links it"
#endif
#endif

namespace mace {

int OpsMarker() { return 7; }

}  // namespace mace
