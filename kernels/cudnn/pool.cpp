// cuDNN pooling: descriptors cached per geometry (see kernels/cudnn/pool.h), then one
// cudnnPoolingForward / cudnnPoolingBackward call on the handle's stream.
#include "ember/kernels/cudnn/pool.h"

#include <array>
#include <climits>
#include <map>
#include <memory>
#include <mutex>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/kernels/cudnn/data_type.h"

namespace ember::kernels::cudnn {
namespace {

struct PoolDescriptors {
  cudnnTensorDescriptor_t x = nullptr;
  cudnnTensorDescriptor_t y = nullptr;
  cudnnPoolingDescriptor_t pool = nullptr;

  PoolDescriptors() = default;
  PoolDescriptors(const PoolDescriptors&) = delete;
  PoolDescriptors& operator=(const PoolDescriptors&) = delete;
  // Runs when the cache is cleared, never at exit (Note [cuDNN caches are never
  // destroyed] in plan_cache.h).
  ~PoolDescriptors() {
    if (pool != nullptr) cudnnDestroyPoolingDescriptor(pool);
    if (y != nullptr) cudnnDestroyTensorDescriptor(y);
    if (x != nullptr) cudnnDestroyTensorDescriptor(x);
  }
};

// A training run meets a handful of geometries; a program that keeps changing shapes
// must not grow the cache without bound. Entries handed out stay alive through their
// shared_ptr when the cache is cleared.
constexpr size_t kMaxCachedGeometries = 1024;

using Key = std::array<int64_t, 15>;  // the geometry, the mode and the data type

cudnnPoolingMode_t pooling_mode(const Pool2dGeometry& g, PoolMode mode, bool deterministic) {
  if (mode == PoolMode::Max) {
    return deterministic ? CUDNN_POOLING_MAX_DETERMINISTIC : CUDNN_POOLING_MAX;
  }
  return g.count_include_pad ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                             : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
}

std::shared_ptr<const PoolDescriptors> descriptors(const Pool2dGeometry& g,
                                                   cudnnPoolingMode_t mode,
                                                   cudnnDataType_t dtype) {
  static std::mutex mu;
  // See Note [cuDNN caches are never destroyed] in plan_cache.h.
  static auto* cache = new std::map<Key, std::shared_ptr<const PoolDescriptors>>();
  const Key key{g.n, g.c, g.h, g.w, g.out_h, g.out_w, g.kernel_h, g.kernel_w,
                g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.count_include_pad,
                static_cast<int64_t>(mode), static_cast<int64_t>(dtype)};
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;

  auto d = std::make_shared<PoolDescriptors>();
  auto i = [](int64_t v) { return static_cast<int>(v); };
  EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->x));
  EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, dtype,
                                               i(g.n), i(g.c), i(g.h), i(g.w)));
  EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->y));
  EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, dtype,
                                               i(g.n), i(g.c), i(g.out_h), i(g.out_w)));
  EMBER_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&d->pool));
  EMBER_CUDNN_CHECK(cudnnSetPooling2dDescriptor(d->pool, mode, CUDNN_PROPAGATE_NAN,
                                                i(g.kernel_h), i(g.kernel_w), i(g.pad_h),
                                                i(g.pad_w), i(g.stride_h), i(g.stride_w)));
  // The output size cuDNN derives must be the one the caller allocated.
  int n = 0, c = 0, h = 0, w = 0;
  EMBER_CUDNN_CHECK(cudnnGetPooling2dForwardOutputDim(d->pool, d->x, &n, &c, &h, &w));
  EMBER_INTERNAL_ASSERT(h == g.out_h && w == g.out_w, "cuDNN pooling output ", h, "x", w,
                        " differs from the expected ", g.out_h, "x", g.out_w);
  if (cache->size() >= kMaxCachedGeometries) cache->clear();
  cache->emplace(key, d);
  return d;
}

}  // namespace

bool pool2d_supported(const Pool2dGeometry& g) {
  const auto fits = [](int64_t v) { return v >= 0 && v <= INT_MAX; };
  if (!fits(g.input_numel()) || !fits(g.output_numel())) return false;
  if (g.planes() == 0 || g.h == 0 || g.w == 0) return false;  // nothing for cuDNN to do
  return g.out_h == (g.h + 2 * g.pad_h - g.kernel_h) / g.stride_h + 1 &&
         g.out_w == (g.w + 2 * g.pad_w - g.kernel_w) / g.stride_w + 1;
}

template <typename T>
void pool2d_forward(cudnnHandle_t handle, const Pool2dGeometry& g, PoolMode mode, const T* x,
                    T* y) {
  EMBER_INTERNAL_ASSERT(pool2d_supported(g), "cuDNN pooling called for an unsupported geometry");
  // Forward values do not depend on the deterministic variant; one descriptor serves both.
  const auto d = descriptors(g, pooling_mode(g, mode, false), kDataType<T>);
  // alpha and beta are float for float16 and bfloat16 data too.
  const float alpha = 1.0f, beta = 0.0f;
  EMBER_CUDNN_CHECK(cudnnPoolingForward(handle, d->pool, &alpha, d->x, x, &beta, d->y, y));
}

template <typename T>
void pool2d_backward(cudnnHandle_t handle, const Pool2dGeometry& g, PoolMode mode,
                     bool deterministic, const T* x, const T* y, const T* grad_y, T* grad_x) {
  EMBER_INTERNAL_ASSERT(pool2d_supported(g), "cuDNN pooling called for an unsupported geometry");
  const auto d = descriptors(g, pooling_mode(g, mode, deterministic), kDataType<T>);
  const float alpha = 1.0f, beta = 0.0f;
  EMBER_CUDNN_CHECK(cudnnPoolingBackward(handle, d->pool, &alpha, d->y, y, d->y, grad_y, d->x,
                                         x, &beta, d->x, grad_x));
}

#define EMBER_CUDNN_POOL_INSTANTIATE(T)                                                       \
  template void pool2d_forward<T>(cudnnHandle_t, const Pool2dGeometry&, PoolMode, const T*,  \
                                  T*);                                                       \
  template void pool2d_backward<T>(cudnnHandle_t, const Pool2dGeometry&, PoolMode, bool,     \
                                   const T*, const T*, const T*, T*);
EMBER_CUDNN_POOL_INSTANTIATE(float)
EMBER_CUDNN_POOL_INSTANTIATE(Half)
EMBER_CUDNN_POOL_INSTANTIATE(BFloat16)
#undef EMBER_CUDNN_POOL_INSTANTIATE

}  // namespace ember::kernels::cudnn
