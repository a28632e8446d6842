// cuDNN batch normalization: the [n, c, s, 1] data descriptor and its derived [1, c, 1, 1]
// parameter descriptor, cached per shape, then one cuDNN call per direction; and the CUDA
// twins of kernels/cpu/norm.h's batch norm (kernels/cuda/norm.cuh) on top of them.
#include "ember/kernels/cudnn/norm.h"

#include <algorithm>
#include <array>
#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/kernels/cuda/elementwise.cuh"
#include "ember/kernels/cuda/norm.cuh"
#include "ember/kernels/cudnn/data_type.h"

namespace ember::kernels::cudnn {
namespace {

constexpr cudnnBatchNormMode_t kMode = CUDNN_BATCHNORM_SPATIAL;

struct BatchNormDescriptors {
  cudnnTensorDescriptor_t x = nullptr;      // [n, c, s, 1]
  cudnnTensorDescriptor_t param = nullptr;  // [1, c, 1, 1]

  BatchNormDescriptors() = default;
  BatchNormDescriptors(const BatchNormDescriptors&) = delete;
  BatchNormDescriptors& operator=(const BatchNormDescriptors&) = delete;
  ~BatchNormDescriptors() {  // runs when the cache is cleared, never at exit
    if (param != nullptr) cudnnDestroyTensorDescriptor(param);
    if (x != nullptr) cudnnDestroyTensorDescriptor(x);
  }
};

// Bounded like the pooling cache: entries handed out survive a clear through shared_ptr.
constexpr size_t kMaxCachedShapes = 1024;

// The parameter descriptor derived from a half or bfloat16 x is float32 (cuDNN's rule for
// batch norm), so only x's descriptor depends on the data type.
std::shared_ptr<const BatchNormDescriptors> descriptors(int64_t n, int64_t c, int64_t s,
                                                        cudnnDataType_t dtype) {
  EMBER_CHECK(n <= INT_MAX && c <= INT_MAX && s <= INT_MAX && n * c * s <= INT_MAX,
              "batch_norm (cuDNN): input of ", n, " x ", c, " x ", s,
              " elements exceeds cuDNN's int32 tensor descriptors");
  static std::mutex mu;
  // See Note [cuDNN caches are never destroyed] in plan_cache.h.
  static auto* cache =
      new std::map<std::array<int64_t, 4>, std::shared_ptr<const BatchNormDescriptors>>();
  const std::array<int64_t, 4> key{n, c, s, static_cast<int64_t>(dtype)};
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  auto d = std::make_shared<BatchNormDescriptors>();
  EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->x));
  EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, dtype,
                                               static_cast<int>(n), static_cast<int>(c),
                                               static_cast<int>(s), 1));
  EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->param));
  EMBER_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(d->param, d->x, kMode));
  if (cache->size() >= kMaxCachedShapes) cache->clear();
  cache->emplace(key, d);
  return d;
}

}  // namespace

double batch_norm_min_epsilon() { return CUDNN_BN_MIN_EPSILON; }

template <typename T>
void batch_norm_forward_training(cudnnHandle_t handle, const T* x, const float* weight,
                                 const float* bias, T* y, float* save_mean,
                                 float* save_invstd, float* running_mean, float* running_var,
                                 int64_t n, int64_t c, int64_t s, double momentum, double eps) {
  EMBER_INTERNAL_ASSERT((running_mean == nullptr) == (running_var == nullptr),
                        "running_mean and running_var must both be given or both be null");
  const auto d = descriptors(n, c, s, kDataType<T>);
  const float alpha = 1.0f, beta = 0.0f;
  EMBER_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
      handle, kMode, &alpha, &beta, d->x, x, d->x, y, d->param, weight, bias, momentum,
      running_mean, running_var, std::max(eps, CUDNN_BN_MIN_EPSILON), save_mean, save_invstd));
}

template <typename T>
void batch_norm_forward_inference(cudnnHandle_t handle, const T* x, const float* weight,
                                  const float* bias, const float* running_mean,
                                  const float* running_var, T* y, int64_t n, int64_t c,
                                  int64_t s, double eps) {
  const auto d = descriptors(n, c, s, kDataType<T>);
  const float alpha = 1.0f, beta = 0.0f;
  EMBER_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
      handle, kMode, &alpha, &beta, d->x, x, d->x, y, d->param, weight, bias, running_mean,
      running_var, std::max(eps, CUDNN_BN_MIN_EPSILON)));
}

template <typename T>
void batch_norm_backward(cudnnHandle_t handle, const T* x, const T* grad_y,
                         const float* weight, const float* save_mean, const float* save_invstd,
                         T* grad_x, float* grad_weight, float* grad_bias, int64_t n,
                         int64_t c, int64_t s, double eps) {
  const auto d = descriptors(n, c, s, kDataType<T>);
  const float one = 1.0f, zero = 0.0f;
  EMBER_CUDNN_CHECK(cudnnBatchNormalizationBackward(
      handle, kMode, &one, &zero, &one, &zero, d->x, x, d->x, grad_y, d->x, grad_x, d->param,
      weight, grad_weight, grad_bias, std::max(eps, CUDNN_BN_MIN_EPSILON), save_mean,
      save_invstd));
}

#define EMBER_CUDNN_BN_INSTANTIATE(T)                                                        \
  template void batch_norm_forward_training<T>(cudnnHandle_t, const T*, const float*,        \
                                               const float*, T*, float*, float*, float*,     \
                                               float*, int64_t, int64_t, int64_t, double,    \
                                               double);                                      \
  template void batch_norm_forward_inference<T>(cudnnHandle_t, const T*, const float*,       \
                                                const float*, const float*, const float*,    \
                                                T*, int64_t, int64_t, int64_t, double);      \
  template void batch_norm_backward<T>(cudnnHandle_t, const T*, const T*, const float*,      \
                                       const float*, const float*, T*, float*, float*,       \
                                       int64_t, int64_t, int64_t, double);
EMBER_CUDNN_BN_INSTANTIATE(float)
EMBER_CUDNN_BN_INSTANTIATE(Half)
EMBER_CUDNN_BN_INSTANTIATE(BFloat16)
#undef EMBER_CUDNN_BN_INSTANTIATE

}  // namespace ember::kernels::cudnn

namespace ember::kernels::cuda {
namespace {

// Note [Batch norm stand-ins]
// The CPU loops take a null weight as 1, a null bias as 0 and a null gradient as "not
// wanted"; cuDNN takes none of them as null and always writes all three gradients. The
// twins below stand in for the missing ones with pieces of one scratch buffer: ones and
// zeros set by cudnnSetTensor on the [1, c, 1, 1] parameter descriptor (on the handle's
// stream, before the call that reads them), and room for the unwanted gradients.
//
// float16 and bfloat16: cuDNN keeps the per-channel arrays in float32 while ember's op
// holds them in T, so every per-channel array is a float32 piece of the same buffer,
// widened from T before the call (cast on ctx.stream) and rounded back to T after it for
// those cuDNN writes. For float the pieces are the caller's arrays themselves.
template <typename T>
inline constexpr int kDTypeCode = std::is_same_v<T, Half> ? 6 : std::is_same_v<T, BFloat16> ? 7 : 0;

class StandIns {
 public:
  // `floats`: what the pieces asked for below need in all, as counted by `room`.
  StandIns(const Context& ctx, int64_t n, int64_t c, int64_t s, cudnnDataType_t dtype,
           int64_t floats, const Scratch& scratch)
      : ctx_(ctx), n_(n), c_(c), s_(s), dtype_(dtype),
        next_(static_cast<float*>(scratch(static_cast<size_t>(floats) * sizeof(float)))) {}

  // Floats a piece of `count` takes, rounded up so each piece starts 256-byte aligned.
  static int64_t room(int64_t count) { return (count + 63) / 64 * 64; }

  // `given` as float32 (widened into a [c] piece for 16-bit T), or a [c] piece set to
  // `value` when it is null.
  template <typename T>
  const float* param_or(const T* given, float value) {
    if constexpr (std::is_same_v<T, float>) {
      if (given != nullptr) return given;
    } else {
      if (given != nullptr) return widen(given);
    }
    float* p = take(c_);
    const auto d = cudnn::descriptors(n_, c_, s_, dtype_);
    EMBER_CUDNN_CHECK(cudnnSetTensor(ctx_.cudnn, d->param, p, &value));
    return p;
  }

  // A per-channel array cuDNN reads (copy_in) and/or writes, as float32: `given` itself for
  // float, a [c] piece for 16-bit T (null stays null); finish() rounds it back.
  template <typename T>
  float* channel(T* given, bool copy_in) {
    if constexpr (std::is_same_v<T, float>) {
      return given;
    } else {
      if (given == nullptr) return nullptr;
      return copy_in ? widen(given) : take(c_);
    }
  }

  // `given`, or a piece of `count` elements of T for cuDNN to write and nobody to read.
  template <typename T>
  T* output_or(T* given, int64_t count) {
    return given != nullptr ? given : reinterpret_cast<T*>(take(count));
  }

  // Rounds a piece from channel() back into the caller's T array (nothing for float).
  template <typename T>
  void finish(const float* piece, T* given) {
    if constexpr (!std::is_same_v<T, float>) {
      if (given != nullptr) cast(ctx_, 0, piece, kDTypeCode<T>, given, c_);
    }
  }

 private:
  template <typename T>
  float* widen(const T* given) {
    float* p = take(c_);
    cast(ctx_, kDTypeCode<T>, given, 0, p, c_);
    return p;
  }

  float* take(int64_t count) {
    float* p = next_;
    next_ += room(count);
    return p;
  }

  Context ctx_;
  int64_t n_, c_, s_;
  cudnnDataType_t dtype_;
  float* next_;
};

void check_handle(const Context& ctx) {
  EMBER_INTERNAL_ASSERT(ctx.cudnn != nullptr, "batch_norm (CUDA): the context has no cuDNN handle");
}

// Floats of scratch for `pieces` per-channel pieces, all of them when T is 16-bit.
template <typename T>
int64_t param_room(int64_t c, int64_t pieces_float, int64_t pieces_16bit) {
  return StandIns::room(c) * (std::is_same_v<T, float> ? pieces_float : pieces_16bit);
}

}  // namespace

// See Note [Batch norm stand-ins] for the stand-ins of each twin.
template <typename T>
void batch_norm_forward_training(Context ctx, const T* x, const T* weight, const T* bias, T* y,
                                 T* save_mean, T* save_invstd, T* running_mean,
                                 T* running_var, int64_t n, int64_t c, int64_t s,
                                 double momentum, double eps, const Scratch& scratch) {
  check_handle(ctx);
  const int64_t floats =
      param_room<T>(c, (weight ? 0 : 1) + (bias ? 0 : 1), 6);
  StandIns si(ctx, n, c, s, cudnn::kDataType<T>, floats, scratch);
  const float* w = si.param_or(weight, 1.0f);
  const float* b = si.param_or(bias, 0.0f);
  float* mean = si.channel(save_mean, false);
  float* invstd = si.channel(save_invstd, false);
  float* rmean = si.channel(running_mean, true);
  float* rvar = si.channel(running_var, true);
  cudnn::batch_norm_forward_training(ctx.cudnn, x, w, b, y, mean, invstd, rmean, rvar, n, c, s,
                                     momentum, eps);
  si.finish(mean, save_mean);
  si.finish(invstd, save_invstd);
  si.finish(rmean, running_mean);
  si.finish(rvar, running_var);
}

template <typename T>
void batch_norm_forward_inference(Context ctx, const T* x, const T* weight, const T* bias,
                                  const T* running_mean, const T* running_var, T* y, int64_t n,
                                  int64_t c, int64_t s, double eps, const Scratch& scratch) {
  check_handle(ctx);
  const int64_t floats = param_room<T>(c, (weight ? 0 : 1) + (bias ? 0 : 1), 4);
  StandIns si(ctx, n, c, s, cudnn::kDataType<T>, floats, scratch);
  const float* w = si.param_or(weight, 1.0f);
  const float* b = si.param_or(bias, 0.0f);
  // Running statistics are required in inference (the op checks); 0 and 1 stand in for
  // null ones only to keep cuDNN's contract.
  const float* rmean = si.param_or(running_mean, 0.0f);
  const float* rvar = si.param_or(running_var, 1.0f);
  cudnn::batch_norm_forward_inference(ctx.cudnn, x, w, b, rmean, rvar, y, n, c, s, eps);
}

template <typename T>
void batch_norm_backward(Context ctx, const T* x, const T* grad_y, const T* weight,
                         const T* save_mean, const T* save_invstd, T* grad_x, T* grad_weight,
                         T* grad_bias, int64_t n, int64_t c, int64_t s, double eps,
                         const Scratch& scratch) {
  check_handle(ctx);
  const int64_t floats =
      param_room<T>(c, (weight ? 0 : 1) + (grad_weight ? 0 : 1) + (grad_bias ? 0 : 1), 5) +
      (grad_x ? 0 : StandIns::room(n * c * s));
  StandIns si(ctx, n, c, s, cudnn::kDataType<T>, floats, scratch);
  const float* w = si.param_or(weight, 1.0f);
  const float* mean = si.param_or(save_mean, 0.0f);
  const float* invstd = si.param_or(save_invstd, 1.0f);
  float* gw = std::is_same_v<T, float> ? si.output_or(reinterpret_cast<float*>(grad_weight), c)
                                       : si.output_or(static_cast<float*>(nullptr), c);
  float* gb = std::is_same_v<T, float> ? si.output_or(reinterpret_cast<float*>(grad_bias), c)
                                       : si.output_or(static_cast<float*>(nullptr), c);
  cudnn::batch_norm_backward(ctx.cudnn, x, grad_y, w, mean, invstd,
                             si.output_or(grad_x, n * c * s), gw, gb, n, c, s, eps);
  si.finish(gw, grad_weight);
  si.finish(gb, grad_bias);
}

#define EMBER_BATCH_NORM_INSTANTIATE(T)                                                       \
  template void batch_norm_forward_training<T>(Context, const T*, const T*, const T*, T*, T*, \
                                               T*, T*, T*, int64_t, int64_t, int64_t, double, \
                                               double, const Scratch&);                       \
  template void batch_norm_forward_inference<T>(Context, const T*, const T*, const T*,        \
                                                const T*, const T*, T*, int64_t, int64_t,     \
                                                int64_t, double, const Scratch&);             \
  template void batch_norm_backward<T>(Context, const T*, const T*, const T*, const T*,       \
                                       const T*, T*, T*, T*, int64_t, int64_t, int64_t,       \
                                       double, const Scratch&);
EMBER_BATCH_NORM_INSTANTIATE(float)
EMBER_BATCH_NORM_INSTANTIATE(Half)
EMBER_BATCH_NORM_INSTANTIATE(BFloat16)
#undef EMBER_BATCH_NORM_INSTANTIATE

}  // namespace ember::kernels::cuda
