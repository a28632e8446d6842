// For the op specifications on the CPU (tests/core/test_<family>.cpp, one per
// core/ops/<family>.cpp): tensors from literal values, float64 leaves for the
// finite-difference checker, a forward result against a std:: reference with the dtype's
// reference tolerance (tests/support/allclose.h), and the gradient check as an assertion.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/grad_check.h"
#include "ember/core/tensor.h"
#include "support/allclose.h"
#include "support/check.h"
#include "support/random.h"

namespace ember::testing {

inline const std::vector<DType> kFloatDTypes = {kFloat32, kFloat64};

// A float64 leaf (uniform in [lo, hi)) that requires grad, for gradcheck.
inline Tensor leaf(const Shape& shape, double lo, double hi, uint64_t seed) {
  Tensor t = uniform(shape, lo, hi, seed);
  t.requires_grad_(true);
  return t;
}

inline Tensor from(const std::vector<double>& v, const Shape& shape, DType dt = kFloat64) {
  return Tensor::from_vector(v, shape).to(dt);
}

inline Tensor int64s(const std::vector<int64_t>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

inline Tensor bools(const std::vector<uint8_t>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape).to(kBool);
}

// Any tensor's elements as int64, in C order (cut from the graph).
inline std::vector<int64_t> int_values(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor d = t.detach().contiguous();
  if (d.dtype() != kInt64) d = d.to(kInt64);
  return d.to_vector<int64_t>();
}

// Values in [lo, hi) kept at least 0.05 from the kinks at 0, +-1 and 0.5 (relu, abs,
// clamp, l1), where a central difference would straddle two slopes.
inline std::vector<double> away_from_kinks(int64_t n, double lo, double hi, uint64_t seed) {
  auto v = uniform_values(n, lo, hi, seed);
  for (auto& x : v) {
    for (double k : {0.0, 1.0, -1.0, 0.5}) {
      if (std::fabs(x - k) < 0.05) x = k + (x < k ? -0.05 : 0.05);
    }
  }
  return v;
}

// A forward result of dtype `dt` and `shape` against the reference, within that dtype's
// reference tolerance.
inline ::testing::AssertionResult matches(const Tensor& got, const Shape& shape,
                                          const std::vector<double>& want, DType dt) {
  if (got.dtype() != dt) {
    return ::testing::AssertionFailure() << "dtype " << got.dtype() << ", want " << dt;
  }
  if (got.shape() != shape) {
    return ::testing::AssertionFailure()
           << "shape " << shape_str(got.shape()) << ", want " << shape_str(shape);
  }
  return allclose(got, want, reference_tolerance(dt));
}

// ember::gradcheck (float64 finite differences) as an assertion that prints its report.
inline ::testing::AssertionResult grad_ok(
    const std::function<Tensor(const std::vector<Tensor>&)>& fn,
    const std::vector<Tensor>& inputs) {
  const GradCheckResult r = gradcheck(fn, inputs);
  if (r.ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << r.report;
}

}  // namespace ember::testing
