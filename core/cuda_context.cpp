// Streams and cuBLAS handles, created lazily once per device and kept for the process.
#include "core/cuda_context.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "core/cuda_check.h"
#include "core/device.h"

namespace ember::cuda {

namespace {

struct DeviceContext {
  cudaStream_t compute = nullptr;
  cudaStream_t copy = nullptr;
  cublasHandle_t cublas = nullptr;
};

std::atomic<bool> g_allow_tf32{false};

DeviceContext& context(int device) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<DeviceContext>> contexts;
  std::lock_guard<std::mutex> lock(mu);
  const int n = device_count();
  EMBER_CHECK_T(DeviceError, device >= 0 && device < n, "cuda:", device,
                " is not available (", n, " CUDA device(s)",
                n == 0 ? ": " + unavailable_reason() : std::string(), ")");
  if (contexts.empty()) contexts.resize(n);
  auto& ctx = contexts[device];
  if (!ctx) {
    DeviceGuard guard(device);
    auto c = std::make_unique<DeviceContext>();
    EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&c->compute, cudaStreamNonBlocking));
    EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking));
    EMBER_CUBLAS_CHECK(cublasCreate(&c->cublas));
    EMBER_CUBLAS_CHECK(cublasSetStream(c->cublas, c->compute));
    EMBER_CUBLAS_CHECK(cublasSetMathMode(
        c->cublas, g_allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    // Handles and streams live until the process ends: destroying them from a static
    // destructor can run after the driver has shut down.
    ctx = std::move(c);
  }
  return *ctx;
}

}  // namespace

cudaStream_t compute_stream(int device) { return context(device).compute; }
cudaStream_t copy_stream(int device) { return context(device).copy; }

cublasHandle_t cublas_handle(int device) {
  cublasHandle_t h = context(device).cublas;
  EMBER_CUBLAS_CHECK(cublasSetMathMode(
      h, g_allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return h;
}

void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32; }

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

}  // namespace ember::cuda
