// CPU reductions over the middle axis of [outer, n, inner], the max/min index backward and
// softmax / log-softmax: the reference the CUDA kernels are tested against.
#include "ember/kernels/cpu/reduce.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/base/half.h"

namespace ember::kernels::cpu {
namespace {

// Float sums accumulate in double: a float running sum over 10^6 elements loses about
// three of its seven digits. So do Half and BFloat16 sums (never in 16 bits), rounded once
// at the end; softmax works in double for every floating type.
template <typename T>
struct Accumulator {
  using type = double;
};
template <>
struct Accumulator<int64_t> {
  using type = int64_t;
};

template <typename T>
bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T> || is_reduced_float_v<T>) {
    return std::isnan(static_cast<float>(v));
  } else {
    return false;
  }
}

// Whether `v`, met at a later index, replaces `best` as the running max (min). NaN
// replaces everything and is never replaced; ties keep the earlier index.
template <typename T>
bool replaces_extreme(T v, T best, bool is_max) {
  if (is_nan(best)) return false;
  if (is_nan(v)) return true;
  return is_max ? v > best : v < best;
}

// The loops run k outside i so that the inner loop walks contiguous memory; one
// accumulator per column of the [n, inner] slab.
template <typename T>
void reduce_sum(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, bool mean) {
  using Acc = typename Accumulator<T>::type;
  if (inner == 1) {
    // Contiguous rows (a sum over the last axis, e.g. a bias gradient over H * W): eight
    // independent accumulators instead of one long dependency chain.
#pragma omp parallel for if (outer > 1 && outer * n > (1 << 18))
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = x + o * n;
      Acc part[8] = {};
      int64_t k = 0;
      for (; k + 8 <= n; k += 8) {
        for (int j = 0; j < 8; ++j) part[j] += static_cast<Acc>(row[k + j]);
      }
      for (; k < n; ++k) part[0] += static_cast<Acc>(row[k]);
      const Acc total =
          ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
      // n == 0 gives 0 / 0 = NaN for the mean, as documented.
      out[o] = mean ? static_cast<T>(total / static_cast<Acc>(n)) : static_cast<T>(total);
    }
    return;
  }
  std::vector<Acc> acc(static_cast<size_t>(inner));
  for (int64_t o = 0; o < outer; ++o) {
    std::fill(acc.begin(), acc.end(), Acc(0));
    const T* xo = x + o * n * inner;
    for (int64_t k = 0; k < n; ++k) {
      const T* row = xo + k * inner;
      for (int64_t i = 0; i < inner; ++i) acc[i] += static_cast<Acc>(row[i]);
    }
    T* oo = out + o * inner;
    for (int64_t i = 0; i < inner; ++i) {
      // n == 0 gives 0 / 0 = NaN for the mean, as documented.
      oo[i] = mean ? static_cast<T>(acc[i] / static_cast<Acc>(n)) : static_cast<T>(acc[i]);
    }
  }
}

template <typename T>
void reduce_extreme(const T* x, T* out, int64_t* indices, int64_t outer, int64_t n, int64_t inner,
                    bool is_max) {
  std::vector<T> best(static_cast<size_t>(inner));
  std::vector<int64_t> best_k(static_cast<size_t>(inner));
  for (int64_t o = 0; o < outer; ++o) {
    const T* xo = x + o * n * inner;
    std::copy(xo, xo + inner, best.begin());
    std::fill(best_k.begin(), best_k.end(), int64_t{0});
    for (int64_t k = 1; k < n; ++k) {
      const T* row = xo + k * inner;
      for (int64_t i = 0; i < inner; ++i) {
        if (replaces_extreme(row[i], best[i], is_max)) {
          best[i] = row[i];
          best_k[i] = k;
        }
      }
    }
    std::copy(best.begin(), best.end(), out + o * inner);
    if (indices != nullptr) std::copy(best_k.begin(), best_k.end(), indices + o * inner);
  }
}

}  // namespace

template <typename T>
void reduce(Context, ReduceOp op, const T* x, T* out, int64_t* indices, int64_t outer,
            int64_t n, int64_t inner) {
  if (outer == 0 || inner == 0) return;
  switch (op) {
    case ReduceOp::Sum:
      reduce_sum(x, out, outer, n, inner, /*mean=*/false);
      return;
    case ReduceOp::Mean:
      if constexpr (std::is_integral_v<T>) {
        EMBER_CHECK(false, "reduce: mean of an int64 tensor [", outer, ", ", n, ", ", inner,
                    "] is not supported; convert it to a floating dtype first");
      } else {
        reduce_sum(x, out, outer, n, inner, /*mean=*/true);
      }
      return;
    case ReduceOp::Max:
    case ReduceOp::Min:
      EMBER_INTERNAL_ASSERT(n > 0, "reduce: max/min over an empty axis of [", outer, ", ", n, ", ",
                            inner, "]");
      reduce_extreme(x, out, indices, outer, n, inner, op == ReduceOp::Max);
      return;
  }
  EMBER_INTERNAL_ASSERT(false, "reduce: unknown ReduceOp ", static_cast<int>(op));
}

template <typename T>
void reduce_index_backward(Context, const int64_t* indices, const T* grad_y, T* grad_x,
                           int64_t outer, int64_t n, int64_t inner) {
  std::fill(grad_x, grad_x + outer * n * inner, T(0));
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t k = indices[o * inner + i];
      EMBER_INTERNAL_ASSERT(k >= 0 && k < n, "reduce_index_backward: index ", k, " outside [0, ", n,
                            ")");
      grad_x[(o * n + k) * inner + i] = grad_y[o * inner + i];
    }
  }
}

template <typename T>
void softmax_forward(Context, const T* x, T* y, int64_t outer, int64_t n, int64_t inner,
                     bool log) {
  if (outer == 0 || n == 0 || inner == 0) return;
  std::vector<T> max_v(static_cast<size_t>(inner));
  std::vector<double> sum(static_cast<size_t>(inner));
  for (int64_t o = 0; o < outer; ++o) {
    const T* xo = x + o * n * inner;
    T* yo = y + o * n * inner;
    std::copy(xo, xo + inner, max_v.begin());
    for (int64_t k = 1; k < n; ++k) {
      for (int64_t i = 0; i < inner; ++i) max_v[i] = std::max(max_v[i], xo[k * inner + i]);
    }
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t i = 0; i < inner; ++i) {
        sum[i] += std::exp(static_cast<double>(xo[k * inner + i]) - max_v[i]);
      }
    }
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t i = 0; i < inner; ++i) {
        const double shifted = static_cast<double>(xo[k * inner + i]) - max_v[i];
        yo[k * inner + i] =
            static_cast<T>(log ? shifted - std::log(sum[i]) : std::exp(shifted) / sum[i]);
      }
    }
  }
}

template <typename T>
void softmax_backward(Context, const T* y, const T* grad_y, T* grad_x, int64_t outer,
                      int64_t n, int64_t inner, bool log) {
  if (outer == 0 || n == 0 || inner == 0) return;
  // softmax: sum_k gy*y; log_softmax: sum_k gy.
  std::vector<double> dot(static_cast<size_t>(inner));
  for (int64_t o = 0; o < outer; ++o) {
    const int64_t base = o * n * inner;
    std::fill(dot.begin(), dot.end(), 0.0);
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t j = base + k * inner + i;
        dot[i] += log ? static_cast<double>(grad_y[j])
                      : static_cast<double>(grad_y[j]) * static_cast<double>(y[j]);
      }
    }
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t j = base + k * inner + i;
        const double gy = grad_y[j], yj = y[j];
        grad_x[j] = static_cast<T>(log ? gy - std::exp(yj) * dot[i] : yj * (gy - dot[i]));
      }
    }
  }
}

template void reduce<float>(Context, ReduceOp, const float*, float*, int64_t*, int64_t,
                            int64_t, int64_t);
template void reduce<double>(Context, ReduceOp, const double*, double*, int64_t*, int64_t,
                             int64_t, int64_t);
template void reduce<int64_t>(Context, ReduceOp, const int64_t*, int64_t*, int64_t*, int64_t,
                              int64_t, int64_t);

template void reduce_index_backward<float>(Context, const int64_t*, const float*, float*,
                                           int64_t, int64_t, int64_t);
template void reduce_index_backward<double>(Context, const int64_t*, const double*, double*,
                                            int64_t, int64_t, int64_t);

template void softmax_forward<float>(Context, const float*, float*, int64_t, int64_t, int64_t,
                                     bool);
template void softmax_forward<double>(Context, const double*, double*, int64_t, int64_t,
                                      int64_t, bool);

template void softmax_backward<float>(Context, const float*, const float*, float*, int64_t,
                                      int64_t, int64_t, bool);
template void softmax_backward<double>(Context, const double*, const double*, double*, int64_t,
                                       int64_t, int64_t, bool);

// float16 and bfloat16.
template void reduce<Half>(Context, ReduceOp, const Half*, Half*, int64_t*, int64_t, int64_t,
                           int64_t);
template void reduce<BFloat16>(Context, ReduceOp, const BFloat16*, BFloat16*, int64_t*,
                               int64_t, int64_t, int64_t);
template void reduce_index_backward<Half>(Context, const int64_t*, const Half*, Half*, int64_t,
                                          int64_t, int64_t);
template void reduce_index_backward<BFloat16>(Context, const int64_t*, const BFloat16*,
                                              BFloat16*, int64_t, int64_t, int64_t);
template void softmax_forward<Half>(Context, const Half*, Half*, int64_t, int64_t, int64_t,
                                    bool);
template void softmax_forward<BFloat16>(Context, const BFloat16*, BFloat16*, int64_t, int64_t,
                                        int64_t, bool);
template void softmax_backward<Half>(Context, const Half*, const Half*, Half*, int64_t,
                                     int64_t, int64_t, bool);
template void softmax_backward<BFloat16>(Context, const BFloat16*, const BFloat16*, BFloat16*,
                                         int64_t, int64_t, int64_t, bool);

}  // namespace ember::kernels::cpu
