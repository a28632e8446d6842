// Seeded random test data: the same values on every run, so a failure can be replayed.
// One engine for the whole suite, a 64-bit Mersenne twister: either seeded per call, or
// passed in by tests that draw one tensor after another from a single stream.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "ember/core/tensor.h"

namespace ember::testing {

// n values uniform in [lo, hi), drawn as doubles and converted to T.
template <typename T = double>
std::vector<T> uniform_values(int64_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<T>(dist(gen));
  return v;
}

// A CPU tensor of `shape` with values uniform in [lo, hi), drawn in float64 and converted
// to `dtype`.
inline Tensor uniform(const Shape& shape, double lo, double hi, uint64_t seed,
                      DType dtype = kFloat64) {
  return Tensor::from_vector(uniform_values(shape_numel(shape), lo, hi, seed), shape).to(dtype);
}

// n float values uniform in [lo, hi), drawn from `gen`.
inline std::vector<float> uniform_floats(int64_t n, std::mt19937_64& gen, float lo = -1.0f,
                                         float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(gen);
  return v;
}

// A float32 CPU tensor of `shape`, uniform in [lo, hi), drawn from `gen`.
inline Tensor uniform_f32(const Shape& shape, std::mt19937_64& gen, float lo = -1.0f,
                          float hi = 1.0f) {
  return Tensor::from_vector(uniform_floats(shape_numel(shape), gen, lo, hi), shape);
}

}  // namespace ember::testing
