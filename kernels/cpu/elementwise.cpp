// CPU elementwise kernels: plain loops over the shared math of kernels/elementwise_math.h
// and the shared indexing of kernels/index_math.h. The reference for kernels/cuda.
#include "ember/kernels/cpu/elementwise.h"

#include <cstring>
#include <type_traits>

#include "ember/core/base/error.h"
#include "ember/kernels/acc_type.h"
#include "ember/kernels/elementwise_math.h"
#include "ember/kernels/index_math.h"

namespace ember::kernels::cpu {

namespace {

// out[i] = f(a[off_a(i)], b[off_b(i)]) for binary ops and comparisons alike.
// Contiguous inputs take a flat loop the compiler vectorizes; anything else walks the
// output row by row (rows of the last dimension): one unravel per row, then a strided
// inner loop, so the division-heavy unravel is not paid per element.
template <typename T, typename R, typename F>
void broadcast_loop(F f, const T* a, const T* b, R* out, const BroadcastIndex& idx,
                    int64_t n) {
  if (n <= 0) return;
  if (idx.ndim == 0) {
    for (int64_t i = 0; i < n; ++i) out[i] = f(a[0], b[0]);
    return;
  }
  const int last = idx.ndim - 1;
  const int64_t sa = idx.stride_a[last];
  const int64_t sb = idx.stride_b[last];
  if (idx.ndim == 1 && sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
    return;
  }
  const int64_t row = idx.sizes[last];
  if (row <= 0) return;  // an empty index; never loop on a zero step
  for (int64_t start = 0; start < n; start += row) {
    const BroadcastOffsets off = broadcast_offsets(idx, start);
    const T* ra = a + off.a;
    const T* rb = b + off.b;
    R* ro = out + start;
    for (int64_t j = 0; j < row; ++j) ro[j] = f(ra[j * sa], rb[j * sb]);
  }
}

template <typename S, typename D>
void cast_loop(const S* x, D* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = math::convert<D>(x[i]);
}

// Gather (Scatter == false): y[i] = x[offset(i)]; scatter: y[offset(i)] = x[i].
template <typename U, bool Scatter>
void strided_copy_loop(const U* x, const StridedIndex& idx, U* y, int64_t n) {
  if (idx.ndim == 0) {
    for (int64_t i = 0; i < n; ++i) y[Scatter ? 0 : i] = x[Scatter ? i : 0];
    return;
  }
  const int last = idx.ndim - 1;
  const int64_t row = idx.sizes[last];
  const int64_t stride = idx.strides[last];
  if (row <= 0) return;  // an empty index; never loop on a zero step
  for (int64_t start = 0; start < n; start += row) {
    const int64_t off = strided_offset(idx, start);
    if constexpr (Scatter) {
      const U* src = x + start;
      U* dst = y + off;
      for (int64_t j = 0; j < row; ++j) dst[j * stride] = src[j];
    } else {
      const U* src = x + off;
      U* dst = y + start;
      for (int64_t j = 0; j < row; ++j) dst[j] = src[j * stride];
    }
  }
}

// The element's bytes are moved as one unsigned integer of its size.
template <typename U, bool Scatter>
void strided_copy_as(const void* x, const StridedIndex& idx, void* y, int64_t n) {
  strided_copy_loop<U, Scatter>(static_cast<const U*>(x), idx, static_cast<U*>(y), n);
}

template <bool Scatter>
void strided_copy_any(const char* op, int64_t elem_size, const void* x, const StridedIndex& idx,
                      void* y, int64_t n) {
  switch (elem_size) {
    case 1: return strided_copy_as<uint8_t, Scatter>(x, idx, y, n);
    case 2: return strided_copy_as<uint16_t, Scatter>(x, idx, y, n);
    case 4: return strided_copy_as<uint32_t, Scatter>(x, idx, y, n);
    case 8: return strided_copy_as<uint64_t, Scatter>(x, idx, y, n);
  }
  EMBER_CHECK(false, op, ": element size ", elem_size,
              " bytes is not supported (expected 1, 2, 4 or 8)");
}

}  // namespace

// The math runs in acc_t<T> (float for Half and BFloat16: each element is loaded, computed
// in float and rounded once on store, as the GPU does); for the other types A is T.
template <typename T>
void unary_forward(Context, UnaryOp op, const T* x, T* y, int64_t n, UnaryParams p) {
  using A = acc_t<T>;
  if (n <= 0) return;
  math::visit_unary<A>(op, p, [&](auto f) {
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(f.forward(static_cast<A>(x[i])));
  });
}

template <typename T>
void unary_backward(Context, UnaryOp op, const T* x, const T* y, const T* grad_y,
                    T* grad_x, int64_t n, UnaryParams p) {
  using A = acc_t<T>;
  if (n <= 0) return;
  math::visit_unary<A>(op, p, [&](auto f) {
    for (int64_t i = 0; i < n; ++i) {
      grad_x[i] = static_cast<T>(static_cast<A>(grad_y[i]) *
                                 f.derivative(static_cast<A>(x[i]), static_cast<A>(y[i])));
    }
  });
}

// broadcast_loop converts each T operand to the functor's A and its result back to T.
template <typename T>
void binary(Context, BinaryOp op, const T* a, const T* b, T* out, const BroadcastIndex& idx,
            int64_t n) {
  if (n <= 0) return;
  math::visit_binary<acc_t<T>>(op, [&](auto f) { broadcast_loop(f, a, b, out, idx, n); });
}

template <typename T>
void compare(Context, CompareOp op, const T* a, const T* b, bool* out,
             const BroadcastIndex& idx, int64_t n) {
  if (n <= 0) return;
  math::visit_compare<acc_t<T>>(op, [&](auto f) { broadcast_loop(f, a, b, out, idx, n); });
}

void cast(Context, int src_dtype, const void* x, int dst_dtype, void* y, int64_t n) {
  math::visit_dtype("cast", src_dtype, [&](auto src_tag) {
    using S = typename decltype(src_tag)::type;
    math::visit_dtype("cast", dst_dtype, [&](auto dst_tag) {
      using D = typename decltype(dst_tag)::type;
      if (n <= 0) return;
      if constexpr (std::is_same_v<S, D>) {
        std::memcpy(y, x, static_cast<size_t>(n) * sizeof(S));
      } else {
        cast_loop(static_cast<const S*>(x), static_cast<D*>(y), n);
      }
    });
  });
}

void fill(Context, int dtype, void* y, int64_t n, double value) {
  math::visit_dtype("fill", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = math::convert<T>(value);
    T* out = static_cast<T*>(y);
    for (int64_t i = 0; i < n; ++i) out[i] = v;
  });
}

void strided_copy(Context, int64_t elem_size, const void* x, const StridedIndex& idx, void* y,
                  int64_t n) {
  strided_copy_any<false>("strided_copy", elem_size, x, idx, y, n);
}

void strided_scatter(Context, int64_t elem_size, const void* x, const StridedIndex& idx,
                     void* y, int64_t n) {
  strided_copy_any<true>("strided_scatter", elem_size, x, idx, y, n);
}

template void unary_forward<float>(Context, UnaryOp, const float*, float*, int64_t,
                                   UnaryParams);
template void unary_forward<double>(Context, UnaryOp, const double*, double*, int64_t,
                                    UnaryParams);

template void unary_backward<float>(Context, UnaryOp, const float*, const float*,
                                    const float*, float*, int64_t, UnaryParams);
template void unary_backward<double>(Context, UnaryOp, const double*, const double*,
                                     const double*, double*, int64_t, UnaryParams);

template void binary<float>(Context, BinaryOp, const float*, const float*, float*,
                            const BroadcastIndex&, int64_t);
template void binary<double>(Context, BinaryOp, const double*, const double*, double*,
                             const BroadcastIndex&, int64_t);
template void binary<int32_t>(Context, BinaryOp, const int32_t*, const int32_t*, int32_t*,
                              const BroadcastIndex&, int64_t);
template void binary<int64_t>(Context, BinaryOp, const int64_t*, const int64_t*, int64_t*,
                              const BroadcastIndex&, int64_t);

template void compare<float>(Context, CompareOp, const float*, const float*, bool*,
                             const BroadcastIndex&, int64_t);
template void compare<double>(Context, CompareOp, const double*, const double*, bool*,
                              const BroadcastIndex&, int64_t);
template void compare<int32_t>(Context, CompareOp, const int32_t*, const int32_t*, bool*,
                               const BroadcastIndex&, int64_t);
template void compare<int64_t>(Context, CompareOp, const int64_t*, const int64_t*, bool*,
                               const BroadcastIndex&, int64_t);
template void compare<uint8_t>(Context, CompareOp, const uint8_t*, const uint8_t*, bool*,
                               const BroadcastIndex&, int64_t);
template void compare<bool>(Context, CompareOp, const bool*, const bool*, bool*,
                            const BroadcastIndex&, int64_t);

template void unary_forward<Half>(Context, UnaryOp, const Half*, Half*, int64_t, UnaryParams);
template void unary_forward<BFloat16>(Context, UnaryOp, const BFloat16*, BFloat16*, int64_t,
                                      UnaryParams);
template void unary_backward<Half>(Context, UnaryOp, const Half*, const Half*, const Half*,
                                   Half*, int64_t, UnaryParams);
template void unary_backward<BFloat16>(Context, UnaryOp, const BFloat16*, const BFloat16*,
                                       const BFloat16*, BFloat16*, int64_t, UnaryParams);
template void binary<Half>(Context, BinaryOp, const Half*, const Half*, Half*,
                           const BroadcastIndex&, int64_t);
template void binary<BFloat16>(Context, BinaryOp, const BFloat16*, const BFloat16*, BFloat16*,
                               const BroadcastIndex&, int64_t);
template void compare<Half>(Context, CompareOp, const Half*, const Half*, bool*,
                            const BroadcastIndex&, int64_t);
template void compare<BFloat16>(Context, CompareOp, const BFloat16*, const BFloat16*, bool*,
                                const BroadcastIndex&, int64_t);

}  // namespace ember::kernels::cpu
