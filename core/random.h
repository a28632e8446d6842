// Seeded random number generation: one CPU generator for parameter initialisation and
// rand/randn, and a (seed, offset) Philox stream per device for dropout.
#pragma once

#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "ember/core/device.h"
#include "ember/core/base/export.h"

namespace ember {

// Seeds every device's generator (like torch::manual_seed).
EMBER_API void manual_seed(uint64_t seed);
EMBER_API uint64_t initial_seed();

// The process's CPU generator. Hold cpu_generator_mutex() while drawing from it.
EMBER_API std::mt19937_64& cpu_generator();
EMBER_API std::mutex& cpu_generator_mutex();

// Reserves `n` Philox counters on `device`'s stream and returns (seed, offset) to use.
struct PhiloxState {
  uint64_t seed;
  uint64_t offset;
};
EMBER_API PhiloxState philox_reserve(Device device, uint64_t n);

// The complete generator state, for checkpoints that must resume exactly.
struct RngState {
  uint64_t seed = 0;
  std::string cpu_engine;  // std::mt19937_64 streamed to text
  uint64_t philox_offset_cpu = 0;
  std::vector<uint64_t> philox_offset_cuda;
};
EMBER_API RngState get_rng_state();
EMBER_API void set_rng_state(const RngState& state);

}  // namespace ember
