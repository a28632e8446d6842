// Linked into every fuzz target: the process set-up libFuzzer runs before the first input.
#include <cstdlib>

#include "fuzz_checks.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // ASan must see each tensor's own allocation, not a slice of a pooled segment, and the
  // meter must see every allocation (Note [Allocation bound] in fuzz_checks.h).
  setenv("EMBER_CPU_ALLOC", "system", 1);
  ember::fuzz::AllocationMeter::available();  // installs the hooks before the first input
  ember::fuzz::scratch_dir();
  return 0;
}
