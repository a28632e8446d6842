// cuDNN batch normalization: the [n, c, s, 1] data descriptor and its derived [1, c, 1, 1]
// parameter descriptor, cached per shape, then one cuDNN call per direction.
#include "ember/kernels/cudnn/norm.h"

#include <algorithm>
#include <array>
#include <climits>
#include <map>
#include <memory>
#include <mutex>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"

namespace ember::kernels::cudnn {
namespace {

constexpr cudnnBatchNormMode_t kMode = CUDNN_BATCHNORM_SPATIAL;

struct BatchNormDescriptors {
  cudnnTensorDescriptor_t x = nullptr;      // [n, c, s, 1]
  cudnnTensorDescriptor_t param = nullptr;  // [1, c, 1, 1]

  BatchNormDescriptors() = default;
  BatchNormDescriptors(const BatchNormDescriptors&) = delete;
  BatchNormDescriptors& operator=(const BatchNormDescriptors&) = delete;
  ~BatchNormDescriptors() {  // host memory only: safe at process exit
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
  static std::map<std::array<int64_t, 3>, std::shared_ptr<const BatchNormDescriptors>> cache;
  const std::array<int64_t, 3> key{n, c, s};
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto d = std::make_shared<BatchNormDescriptors>();
  EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->x));
  EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                               static_cast<int>(n), static_cast<int>(c),
                                               static_cast<int>(s), 1));
  EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->param));
  EMBER_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(d->param, d->x, kMode));
  if (cache.size() >= kMaxCachedShapes) cache.clear();
  cache.emplace(key, d);
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
