// Float copies of float16/bfloat16 arrays for the CPU kernels that compute a 16-bit dtype
// by widening: the inputs are converted to float, the float kernel runs, and each output
// is rounded once on store (conv, pooling, norms, losses; Note [Dispatch] in core/dispatch.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ember/core/base/half.h"

namespace ember::kernels::cpu {

// A float array standing in for a 16-bit one; absent (get() is null) when the 16-bit
// pointer was null, so optional arguments (weight, bias, ...) stay optional.
struct FloatCopy {
  std::vector<float> values;
  bool present = false;
  float* get() { return present ? values.data() : nullptr; }
};

// A float copy of p[0..n) (absent when p is null).
template <typename T>
FloatCopy widen(const T* p, int64_t n) {
  FloatCopy f;
  if (p == nullptr) return f;
  f.present = true;
  // At least one element, so that a present array never reads as null.
  f.values.resize(static_cast<size_t>(std::max<int64_t>(n, 1)));
  for (int64_t i = 0; i < n; ++i) f.values[i] = static_cast<float>(p[i]);
  return f;
}

// An uninitialised float buffer for the output p[0..n) (absent when p is null).
template <typename T>
FloatCopy float_output(const T* p, int64_t n) {
  FloatCopy f;
  if (p == nullptr) return f;
  f.present = true;
  f.values.resize(static_cast<size_t>(std::max<int64_t>(n, 1)));
  return f;
}

// Rounds f into p[0..n) (nothing when p is null).
template <typename T>
void narrow(const FloatCopy& f, T* p, int64_t n) {
  if (p == nullptr) return;
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(f.values[i]);
}

}  // namespace ember::kernels::cpu
