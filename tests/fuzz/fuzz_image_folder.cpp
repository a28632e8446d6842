// libFuzzer target "image_folder": one input a run through check_image_folder (fuzz_checks.h
// says what it checks); a FuzzFailure escaping is a finding.
#include <cstddef>
#include <cstdint>

#include "fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ember::fuzz::check_image_folder(data, size);
  return 0;
}
