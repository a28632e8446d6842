// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel Random Numbers:
// As Easy as 1, 2, 3" (SC'11), and the counter layout that mirrors cuRAND's Philox state.
#pragma once

#include <cstdint>

#include "ember/kernels/hd.h"

namespace ember::kernels {

// Multipliers and Weyl key increments from the paper (W0 is the golden ratio, W1 is
// sqrt(3) - 1, both scaled by 2^32).
inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
inline constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

struct PhiloxBlock {
  uint32_t v[4];
};

struct PhiloxKey {
  uint32_t k[2];
};

EMBER_HD inline PhiloxBlock philox_round(PhiloxBlock c, PhiloxKey key) {
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c.v[0];
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c.v[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  return PhiloxBlock{{hi1 ^ c.v[1] ^ key.k[0], lo1, hi0 ^ c.v[3] ^ key.k[1], lo0}};
}

// Ten rounds, the key bumped by (W0, W1) between consecutive rounds.
EMBER_HD inline PhiloxBlock philox4x32_10(PhiloxBlock ctr, PhiloxKey key) {
  ctr = philox_round(ctr, key);
  for (int r = 1; r < 10; ++r) {
    key.k[0] += kPhiloxW0;
    key.k[1] += kPhiloxW1;
    ctr = philox_round(ctr, key);
  }
  return ctr;
}

// Note [Dropout random stream]
// A dropout call with (seed, offset) gives element i the word i % 4 of the Philox block
//   ctr = {lo(offset), hi(offset), lo(i / 4), hi(i / 4)}, key = {lo(seed), hi(seed)}.
// This is exactly the block cuRAND returns from curand4() after
//   curand_init(seed, /*subsequence=*/i / 4, /*offset=*/4 * offset, &state)
// (the subsequence fills the counter's high half, the offset skips whole blocks in the
// low half), so the CUDA kernel, which uses cuRAND, and the CPU loop, which uses
// philox4x32_10, draw the very same words: one seed gives one mask on both devices, and
// the mask does not depend on the launch size. Distinct offsets address distinct
// counters, so a caller only needs a fresh offset per call (offset < 2^62).
EMBER_HD inline PhiloxBlock dropout_philox_block(uint64_t seed, uint64_t offset, uint64_t group) {
  const PhiloxBlock ctr{{static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32),
                         static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32)}};
  const PhiloxKey key{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
  return philox4x32_10(ctr, key);
}

}  // namespace ember::kernels
