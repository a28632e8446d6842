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

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/kernels/cuda/norm.cuh"

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

std::shared_ptr<const BatchNormDescriptors> descriptors(int64_t n, int64_t c, int64_t s) {
  EMBER_CHECK(n <= INT_MAX && c <= INT_MAX && s <= INT_MAX && n * c * s <= INT_MAX,
              "batch_norm (cuDNN): input of ", n, " x ", c, " x ", s,
              " elements exceeds cuDNN's int32 tensor descriptors");
  static std::mutex mu;
  // See Note [cuDNN caches are never destroyed] in plan_cache.h.
  static auto* cache =
      new std::map<std::array<int64_t, 3>, std::shared_ptr<const BatchNormDescriptors>>();
  const std::array<int64_t, 3> key{n, c, s};
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  auto d = std::make_shared<BatchNormDescriptors>();
  EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->x));
  EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
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

void batch_norm_forward_training(cudnnHandle_t handle, const float* x, const float* weight,
                                 const float* bias, float* y, float* save_mean,
                                 float* save_invstd, float* running_mean, float* running_var,
                                 int64_t n, int64_t c, int64_t s, double momentum, double eps) {
  EMBER_INTERNAL_ASSERT((running_mean == nullptr) == (running_var == nullptr),
                        "running_mean and running_var must both be given or both be null");
  const auto d = descriptors(n, c, s);
  const float alpha = 1.0f, beta = 0.0f;
  EMBER_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
      handle, kMode, &alpha, &beta, d->x, x, d->x, y, d->param, weight, bias, momentum,
      running_mean, running_var, std::max(eps, CUDNN_BN_MIN_EPSILON), save_mean, save_invstd));
}

void batch_norm_forward_inference(cudnnHandle_t handle, const float* x, const float* weight,
                                  const float* bias, const float* running_mean,
                                  const float* running_var, float* y, int64_t n, int64_t c,
                                  int64_t s, double eps) {
  const auto d = descriptors(n, c, s);
  const float alpha = 1.0f, beta = 0.0f;
  EMBER_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
      handle, kMode, &alpha, &beta, d->x, x, d->x, y, d->param, weight, bias, running_mean,
      running_var, std::max(eps, CUDNN_BN_MIN_EPSILON)));
}

void batch_norm_backward(cudnnHandle_t handle, const float* x, const float* grad_y,
                         const float* weight, const float* save_mean, const float* save_invstd,
                         float* grad_x, float* grad_weight, float* grad_bias, int64_t n,
                         int64_t c, int64_t s, double eps) {
  const auto d = descriptors(n, c, s);
  const float one = 1.0f, zero = 0.0f;
  EMBER_CUDNN_CHECK(cudnnBatchNormalizationBackward(
      handle, kMode, &one, &zero, &one, &zero, d->x, x, d->x, grad_y, d->x, grad_x, d->param,
      weight, grad_weight, grad_bias, std::max(eps, CUDNN_BN_MIN_EPSILON), save_mean,
      save_invstd));
}

}  // namespace ember::kernels::cudnn

namespace ember::kernels::cuda {

namespace {

// Note [Batch norm stand-ins]
// The CPU loops take a null weight as 1, a null bias as 0 and a null gradient as "not
// wanted"; cuDNN takes none of them as null and always writes all three gradients. The
// twins below stand in for the missing ones with pieces of one scratch buffer: ones and
// zeros set by cudnnSetTensor on the [1, c, 1, 1] parameter descriptor (on the handle's
// stream, before the call that reads them), and room for the unwanted gradients.
class StandIns {
 public:
  // `floats`: what the pieces asked for below need in all, as counted by `room`.
  StandIns(const Context& ctx, int64_t n, int64_t c, int64_t s, int64_t floats,
           const Scratch& scratch)
      : ctx_(ctx), n_(n), c_(c), s_(s),
        next_(static_cast<float*>(scratch(static_cast<size_t>(floats) * sizeof(float)))) {}

  // Floats a piece of `count` takes, rounded up so each piece starts 256-byte aligned.
  static int64_t room(int64_t count) { return (count + 63) / 64 * 64; }

  // `given`, or a [c] piece set to `value`.
  const float* param_or(const float* given, float value) {
    if (given != nullptr) return given;
    float* p = take(c_);
    const auto d = cudnn::descriptors(n_, c_, s_);
    EMBER_CUDNN_CHECK(cudnnSetTensor(ctx_.cudnn, d->param, p, &value));
    return p;
  }

  // `given`, or a piece of `count` floats for cuDNN to write and nobody to read.
  float* output_or(float* given, int64_t count) { return given != nullptr ? given : take(count); }

 private:
  float* take(int64_t count) {
    float* p = next_;
    next_ += room(count);
    return p;
  }

  Context ctx_;
  int64_t n_, c_, s_;
  float* next_;
};

void check_handle(const Context& ctx) {
  EMBER_INTERNAL_ASSERT(ctx.cudnn != nullptr, "batch_norm (CUDA): the context has no cuDNN handle");
}

}  // namespace

// See Note [Batch norm stand-ins] for the stand-ins of each twin.
void batch_norm_forward_training(Context ctx, const float* x, const float* weight,
                                 const float* bias, float* y, float* save_mean,
                                 float* save_invstd, float* running_mean, float* running_var,
                                 int64_t n, int64_t c, int64_t s, double momentum, double eps,
                                 const Scratch& scratch) {
  check_handle(ctx);
  const int64_t pc = StandIns::room(c);
  StandIns si(ctx, n, c, s, (weight ? 0 : pc) + (bias ? 0 : pc), scratch);
  const float* w = si.param_or(weight, 1.0f);
  const float* b = si.param_or(bias, 0.0f);
  cudnn::batch_norm_forward_training(ctx.cudnn, x, w, b, y, save_mean, save_invstd,
                                     running_mean, running_var, n, c, s, momentum, eps);
}

void batch_norm_forward_inference(Context ctx, const float* x, const float* weight,
                                  const float* bias, const float* running_mean,
                                  const float* running_var, float* y, int64_t n, int64_t c,
                                  int64_t s, double eps, const Scratch& scratch) {
  check_handle(ctx);
  const int64_t pc = StandIns::room(c);
  StandIns si(ctx, n, c, s, (weight ? 0 : pc) + (bias ? 0 : pc), scratch);
  const float* w = si.param_or(weight, 1.0f);
  const float* b = si.param_or(bias, 0.0f);
  cudnn::batch_norm_forward_inference(ctx.cudnn, x, w, b, running_mean, running_var, y, n, c,
                                      s, eps);
}

void batch_norm_backward(Context ctx, const float* x, const float* grad_y, const float* weight,
                         const float* save_mean, const float* save_invstd, float* grad_x,
                         float* grad_weight, float* grad_bias, int64_t n, int64_t c, int64_t s,
                         double eps, const Scratch& scratch) {
  check_handle(ctx);
  const int64_t pc = StandIns::room(c);
  const int64_t floats = (weight ? 0 : pc) + (grad_x ? 0 : StandIns::room(n * c * s)) +
                         (grad_weight ? 0 : pc) + (grad_bias ? 0 : pc);
  StandIns si(ctx, n, c, s, floats, scratch);
  const float* w = si.param_or(weight, 1.0f);
  cudnn::batch_norm_backward(ctx.cudnn, x, grad_y, w, save_mean, save_invstd,
                             si.output_or(grad_x, n * c * s), si.output_or(grad_weight, c),
                             si.output_or(grad_bias, c), n, c, s, eps);
}

}  // namespace ember::kernels::cuda
