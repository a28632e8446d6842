// The dispatch seam (internal to core): the one place that picks the backend for a
// device and the C++ element type for a dtype. Every op in core/ops/ calls its kernels
// through it; see Note [Dispatch].
//
// Note [Dispatch]
// An op file reads: checks -> dispatch -> backward rule. The dispatch is one call,
//
//   dispatch::run(x, dispatch::kFloating, "max_pool2d", [&]<typename T>(auto ctx) {
//     pool2d_forward(ctx, g, mode, x.data<T>(), y.data<T>());
//   });
//
// which does two things:
//  - the backend: on_device() builds the kernel context of x's device
//    (kernels::cpu::Context, or kernels::cuda::Context with that device current, its
//    compute stream and library handles). Every kernel entry point takes its context as
//    the first argument, and a CPU kernel and its CUDA twin take the same arguments, so the
//    unqualified call above finds kernels::cpu::pool2d_forward or
//    kernels::cuda::pool2d_forward by the context's namespace (argument-dependent lookup).
//    That is the whole backend choice: no `if (x.is_cuda())` in an op.
//  - the element type: a plain switch over the dtype runs the body with T = float, double,
//    ..., for the dtypes the op accepts (its type list) that the backend computes in
//    (kComputes). Anything else is a DTypeError naming the op and the tensor.
//
// Adding a dtype: one case in run()'s switch, its entries in the type lists and
// kComputes, and the kernels' instantiations. Adding a backend: its Context in
// kernels/context.h, one branch in on_device(), and its twins of the kernels.
//
// float16 and bfloat16 (T = Half, BFloat16) enter op by op, as in PyTorch's
// AT_DISPATCH_FLOATING_TYPES_AND2(Half, BFloat16): an op whose kernels compute in them
// (load as T, compute in acc_t<T> = float, round on store: kernels/acc_type.h) names a
// list "...AndHalf"; an op that names kFloating, kArithmetic or kAll does not take them,
// and a 16-bit tensor gets the DTypeError above, never a wrong answer and never a missing
// symbol (the body is not instantiated for a type its list leaves out). On CUDA every
// kernel twin an op body calls has Half and BFloat16 instantiations (elementwise,
// activation, reduce/softmax, loss, dropout, embedding, layer norm and optimizers
// hand-written in float; batch norm, pooling and convolution through cuDNN with a float
// compute type; GEMM through cuBLASLt with CUBLAS_COMPUTE_32F), so
// kComputes<kernels::cuda::Context, Half/BFloat16> is true and an op's "AndHalf" list alone
// decides whether it takes 16-bit tensors on either backend. Once every op computes in
// 16-bit, the "AndHalf" lists become the plain ones.
//
// The body returns nothing; it writes into tensors the op allocated before dispatching.
// A build without CUDA (EMBER_WITH_CUDA 0) never instantiates a body with the CUDA
// context, so no CUDA kernel is referenced.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "ember/core/base/error.h"
#include "ember/core/tensor.h"
#include "ember/kernels/context.h"

#if EMBER_WITH_CUDA
#include "ember/core/cuda_settings.h"
namespace ember::cuda {
// core/cuda_context.cpp: the compute stream and handles of `device`.
EMBER_API kernels::cuda::Context kernel_context(int device);
}  // namespace ember::cuda
#endif

namespace ember::dispatch {

// A list of element types an op accepts.
template <typename... Ts>
struct Types {};

inline constexpr Types<float, double> kFloating{};
inline constexpr Types<float, double, int32_t, int64_t> kArithmetic{};
inline constexpr Types<float, double, int32_t, int64_t, uint8_t, bool> kAll{};
// The same with float16 and bfloat16, for ops that compute in them (Note [Dispatch]).
inline constexpr Types<float, double, Half, BFloat16> kFloatingAndHalf{};
inline constexpr Types<float, double, int32_t, int64_t, Half, BFloat16> kArithmeticAndHalf{};
inline constexpr Types<float, double, int32_t, int64_t, uint8_t, bool, Half, BFloat16>
    kAllAndHalf{};

// Whether a backend computes in element type T. The CPU computes in every dtype ember
// has; the CUDA kernels have no float64 instantiation (float64 serves gradient checks on
// the CPU) but compute in float16 and bfloat16 (Note [Dispatch]).
template <typename Ctx, typename T>
inline constexpr bool kComputes = true;
template <>
inline constexpr bool kComputes<kernels::cuda::Context, double> = false;

template <typename Ctx>
inline constexpr const char* kBackendName = "CPU";
template <>
inline constexpr const char* kBackendName<kernels::cuda::Context> = "CUDA";

// Runs body(ctx) with the kernel context of `device` (made current on CUDA).
template <typename Body>
void on_device(Device device, Body&& body) {
  if (device.is_cuda()) {
#if EMBER_WITH_CUDA
    cuda::DeviceGuard guard(device.index());
    body(cuda::kernel_context(device.index()));
    return;
#else
    throw DeviceError(detail::str_cat("tensor on ", device.str(),
                                      " in a build of ember without CUDA"));
#endif
  }
  body(kernels::cpu::Context{});
}

namespace detail {

[[noreturn]] EMBER_API void throw_unsupported_dtype(const char* op, const Tensor& t,
                                                    const char* backend, const DType* accepted,
                                                    int n_accepted);

template <typename T, typename... Ts>
inline constexpr bool kListed = (std::is_same_v<T, Ts> || ...);

template <typename T, typename Ctx, typename Body, typename... Ts>
void run_as(Ctx ctx, Types<Ts...>, const Tensor& t, const char* op, Body& body) {
  if constexpr (kListed<T, Ts...> && kComputes<Ctx, T>) {
    body.template operator()<T>(ctx);
  } else {
    // Only the dtypes this backend computes in count as accepted.
    const DType accepted[] = {dtype_of_v<Ts>...};
    DType usable[sizeof...(Ts)];
    int n = 0;
    for (DType d : accepted) {
      const bool computes = ((d == dtype_of_v<Ts> && kComputes<Ctx, Ts>) || ...);
      if (computes) usable[n++] = d;
    }
    throw_unsupported_dtype(op, t, kBackendName<Ctx>, usable, n);
  }
}

}  // namespace detail

// Runs body.template operator()<T>(ctx) with T the element type of t's dtype and ctx the
// kernel context of t's device, when `types` lists that dtype and the backend computes in
// it; otherwise throws DTypeError naming `op`.
template <typename... Ts, typename Body>
void run(const Tensor& t, Types<Ts...> types, const char* op, Body&& body) {
  on_device(t.device(), [&](auto ctx) {
    switch (t.dtype()) {
      case kFloat32: return detail::run_as<float>(ctx, types, t, op, body);
      case kFloat64: return detail::run_as<double>(ctx, types, t, op, body);
      case kInt32: return detail::run_as<int32_t>(ctx, types, t, op, body);
      case kInt64: return detail::run_as<int64_t>(ctx, types, t, op, body);
      case kUInt8: return detail::run_as<uint8_t>(ctx, types, t, op, body);
      case kBool: return detail::run_as<bool>(ctx, types, t, op, body);
      case kFloat16: return detail::run_as<Half>(ctx, types, t, op, body);
      case kBFloat16: return detail::run_as<BFloat16>(ctx, types, t, op, body);
    }
    EMBER_INTERNAL_ASSERT(false, "unknown dtype code ", dtype_code(t.dtype()));
  });
}

}  // namespace ember::dispatch
