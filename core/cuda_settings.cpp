// The switches and the device guard of core/cuda_settings.h (built with and without CUDA).
#include "ember/core/cuda_settings.h"

#include <atomic>

#include "ember/core/base/error.h"

#if EMBER_WITH_CUDA
#include <cuda_runtime_api.h>

#include "ember/core/base/cuda_check.h"
#endif

namespace ember::cuda {

namespace {
std::atomic<bool> g_allow_tf32{false};
std::atomic<bool> g_cudnn_benchmark{false};
std::atomic<bool> g_deterministic{false};
}  // namespace

void set_cudnn_benchmark(bool on) { g_cudnn_benchmark = on; }
bool cudnn_benchmark() { return g_cudnn_benchmark; }
void set_deterministic(bool on) { g_deterministic = on; }
bool deterministic() { return g_deterministic; }
void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32; }

#if EMBER_WITH_CUDA
DeviceGuard::DeviceGuard(int device) {
  EMBER_CUDA_CHECK(cudaGetDevice(&prev_));
  if (prev_ != device) {
    EMBER_CUDA_CHECK(cudaSetDevice(device));
  } else {
    prev_ = -1;
  }
}

DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0) EMBER_CUDA_WARN(cudaSetDevice(prev_));
}
#else
// No CUDA device exists in a build without CUDA, so no op ever needs one made current.
DeviceGuard::DeviceGuard(int device) {
  throw DeviceError(detail::str_cat("cuda:", device,
                                    ": ember was built without CUDA (EMBER_CUDA=OFF)"));
}
DeviceGuard::~DeviceGuard() = default;
#endif

}  // namespace ember::cuda
