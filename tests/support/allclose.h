// Comparing results in tests: allclose with rtol/atol, as numpy and torch.testing define it
// (|got - want| <= atol + rtol * |want|, NaN equal to NaN), reporting the worst element with
// its index and the number of elements out of tolerance. The tolerances are stated once,
// here, per dtype and per kind of comparison: two implementations of an op
// (default_tolerance), an op against a float64 reference loop (reference_tolerance), a CUDA
// kernel against its CPU twin (kFloat32KernelTol).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/tensor.h"

namespace ember::testing {

struct Tolerance {
  double rtol = 0.0;
  double atol = 0.0;
};

// float32: results that take a different summation order or a different libm (the GPU's
// expf, FMA contraction) differ by a few ulps times the reduction length.
inline constexpr Tolerance kFloat32Tol{1e-4, 1e-5};
// float64: reference loops against float64 kernels.
inline constexpr Tolerance kFloat64Tol{1e-10, 1e-12};
// Integers and bools: exact.
inline constexpr Tolerance kExact{0.0, 0.0};
// A CUDA kernel against its CPU twin on the same host data (tests/kernels): the same
// per-element math on both sides, but the GPU's expf/logf differ from glibc's by an ulp or
// two and its sums are float sums in another order (the CPU's are double). No chain of ops
// adds to the error, so the absolute floor is lower than kFloat32Tol's.
inline constexpr Tolerance kFloat32KernelTol{1e-4, 1e-6};

inline Tolerance default_tolerance(DType dtype) {
  if (dtype == kFloat32) return kFloat32Tol;
  if (dtype == kFloat64) return kFloat64Tol;
  return kExact;
}

// One op against a float64 reference loop on the same inputs (the op specifications in
// tests/core): nothing but the op's own rounding separates them, so these are tighter.
// float32 ops compute in float (about seven digits); float64 ones in double, where the
// reference may only round in another order.
inline constexpr Tolerance kFloat32RefTol{2e-5, 1e-6};
inline constexpr Tolerance kFloat64RefTol{1e-12, 1e-12};

inline Tolerance reference_tolerance(DType dtype) {
  if (dtype == kFloat32) return kFloat32RefTol;
  if (dtype == kFloat64) return kFloat64RefTol;
  return kExact;
}

// `tol` times the largest magnitude in `want` (at least 1), as an absolute bound on every
// element: for results summed from many terms (convolutions, normalizations, reductions),
// whose rounding error follows the size of the terms, so an element that cancels to near
// zero carries as much error as the largest one. NaNs and infinities in `want` are
// ignored.
template <typename T>
Tolerance relative_to_largest(const std::vector<T>& want, double tol) {
  double largest = 1.0;
  for (const T& w : want) {
    const double a = std::fabs(static_cast<double>(w));
    if (std::isfinite(a) && a > largest) largest = a;
  }
  return {0.0, tol * largest};
}

// The values of any tensor (any device, dtype, layout) as doubles in C order.
inline std::vector<double> values(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor d = t.detach().cpu().contiguous();
  if (d.dtype() != kFloat64) d = d.to(kFloat64);
  return d.to_vector<double>();
}

namespace detail {

// "[1, 2]" for flat index i of `shape` ("[i]" when the shape is unknown).
inline std::string index_str(int64_t i, const Shape& shape) {
  if (shape.empty()) return "[" + std::to_string(i) + "]";
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    const int64_t n = shape[d] > 0 ? shape[d] : 1;
    idx[d] = i % n;
    i /= n;
  }
  std::ostringstream os;
  os << "[";
  for (size_t d = 0; d < idx.size(); ++d) os << (d ? ", " : "") << idx[d];
  os << "]";
  return os.str();
}

inline ::testing::AssertionResult compare(const std::vector<double>& got,
                                          const std::vector<double>& want, Tolerance tol,
                                          const Shape& shape) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << "sizes differ: got " << got.size() << " elements, want " << want.size();
  }
  int64_t bad = 0, worst = -1;
  double worst_excess = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    if (std::isnan(g) && std::isnan(w)) continue;
    if (g == w) continue;  // equal infinities
    const double allowed = tol.atol + tol.rtol * std::fabs(w);
    const double diff = std::fabs(g - w);
    if (diff <= allowed) continue;
    ++bad;
    const double excess = std::isnan(diff) ? INFINITY : diff - allowed;
    if (worst < 0 || excess > worst_excess) {
      worst = static_cast<int64_t>(i);
      worst_excess = excess;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  const double g = got[static_cast<size_t>(worst)], w = want[static_cast<size_t>(worst)];
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " elements differ beyond rtol " << tol.rtol << ", atol "
         << tol.atol << "; worst at " << index_str(worst, shape) << ": got " << g << ", want " << w
         << " (|diff| " << std::fabs(g - w) << ")";
}

}  // namespace detail

// Host vectors, e.g. a kernel's output copied back against its CPU twin's. Integers and
// bools of one type compare exactly, element by element (as doubles, int64 values past
// 2^53 would round together); everything else as doubles within `tol`.
template <typename A, typename B>
::testing::AssertionResult allclose(const std::vector<A>& got, const std::vector<B>& want,
                                    Tolerance tol) {
  if constexpr (std::is_same_v<A, B> && !std::is_floating_point_v<A>) {
    if (got.size() != want.size()) {
      return ::testing::AssertionFailure()
             << "sizes differ: got " << got.size() << " elements, want " << want.size();
    }
    int64_t bad = 0, first = -1;
    for (size_t i = 0; i < got.size(); ++i) {
      if (got[i] == want[i]) continue;
      if (bad++ == 0) first = static_cast<int64_t>(i);
    }
    if (bad == 0) return ::testing::AssertionSuccess();
    const auto i = static_cast<size_t>(first);
    return ::testing::AssertionFailure()
           << bad << " of " << got.size() << " elements differ; first at [" << first << "]: got "
           << +got[i] << ", want " << +want[i];
  } else {
    return detail::compare(std::vector<double>(got.begin(), got.end()),
                           std::vector<double>(want.begin(), want.end()), tol, {});
  }
}

// Shapes and dtypes must match; floating values within `tol` (default: the dtype's),
// integers and bools exactly.
inline ::testing::AssertionResult allclose(const Tensor& got, const Tensor& want,
                                           std::optional<Tolerance> tol = std::nullopt) {
  if (got.defined() != want.defined()) {
    return ::testing::AssertionFailure() << "one tensor is undefined (got " << got.defined()
                                         << ", want " << want.defined() << ")";
  }
  if (!got.defined()) return ::testing::AssertionSuccess();
  if (got.shape() != want.shape() || got.dtype() != want.dtype()) {
    return ::testing::AssertionFailure()
           << "got " << shape_str(got.shape()) << " " << got.dtype() << ", want "
           << shape_str(want.shape()) << " " << want.dtype();
  }
  if (!is_floating(got.dtype())) {
    auto ints = [](const Tensor& t) {
      return t.detach().cpu().contiguous().to(kInt64).to_vector<int64_t>();
    };
    return allclose(ints(got), ints(want), kExact);
  }
  return detail::compare(values(got), values(want), tol.value_or(default_tolerance(got.dtype())),
                         got.shape());
}

inline ::testing::AssertionResult allclose(const Tensor& got, const std::vector<double>& want,
                                           std::optional<Tolerance> tol = std::nullopt) {
  if (!got.defined()) return ::testing::AssertionFailure() << "got an undefined tensor";
  return detail::compare(values(got), want, tol.value_or(default_tolerance(got.dtype())),
                         got.shape());
}

// Tensors against `tol` (default: the dtype's rtol) times the largest magnitude of `want`;
// see relative_to_largest.
inline ::testing::AssertionResult allclose_to_largest(const Tensor& got, const Tensor& want,
                                                      std::optional<double> tol = std::nullopt) {
  if (!got.defined() || !want.defined()) return allclose(got, want);
  return allclose(
      got, want,
      relative_to_largest(values(want), tol.value_or(default_tolerance(want.dtype()).rtol)));
}

}  // namespace ember::testing
