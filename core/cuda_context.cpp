// Streams and cuBLAS handles, created lazily once per device and kept for the process.
#include "ember/core/cuda_context.h"

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/device.h"

namespace ember::cuda {

namespace {

struct DeviceContext {
  cudaStream_t compute = nullptr;
  cudaStream_t copy = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
};

// Note [Library versions]
// libember is built against one cuDNN and cuBLAS, but the loader may find others at run
// time. A different major version breaks the ABI; a different minor may change results
// or speed. Say so plainly, once, instead of failing obscurely later.
void check_library_versions() {
  static const bool checked = [] {
    const size_t cudnn_runtime = cudnnGetVersion();
    if (cudnn_runtime / 10000 != CUDNN_VERSION / 10000 ||
        (cudnn_runtime / 100) % 100 != (CUDNN_VERSION / 100) % 100) {
      std::fprintf(stderr,
                   "ember warning: built against cuDNN %d.%d.%d but loaded cuDNN %zu.%zu.%zu\n",
                   CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL, cudnn_runtime / 10000,
                   (cudnn_runtime / 100) % 100, cudnn_runtime % 100);
    }
    int cublas_runtime = 0;
    if (cublasGetProperty(MAJOR_VERSION, &cublas_runtime) == CUBLAS_STATUS_SUCCESS &&
        cublas_runtime != CUBLAS_VER_MAJOR) {
      std::fprintf(stderr, "ember warning: built against cuBLAS %d but loaded cuBLAS %d\n",
                   CUBLAS_VER_MAJOR, cublas_runtime);
    }
    return true;
  }();
  (void)checked;
}

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
    check_library_versions();
    DeviceGuard guard(device);
    auto c = std::make_unique<DeviceContext>();
    EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&c->compute, cudaStreamNonBlocking));
    EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking));
    EMBER_CUBLAS_CHECK(cublasCreate(&c->cublas));
    EMBER_CUBLAS_CHECK(cublasSetStream(c->cublas, c->compute));
    EMBER_CUBLAS_CHECK(cublasSetMathMode(
        c->cublas, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    EMBER_CUDNN_CHECK(cudnnCreate(&c->cudnn));
    EMBER_CUDNN_CHECK(cudnnSetStream(c->cudnn, c->compute));
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
      h, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return h;
}

cudnnHandle_t cudnn_handle(int device) { return context(device).cudnn; }

kernels::cuda::Context kernel_context(int device) {
  kernels::cuda::Context ctx;
  ctx.stream = compute_stream(device);
  ctx.device = device;
  ctx.cublas = cublas_handle(device);
  ctx.cudnn = cudnn_handle(device);
  ctx.deterministic = deterministic();
  return ctx;
}

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
