// Streams and cuBLAS handles, created lazily once per device and kept for the process.
#include "ember/core/cuda_context.h"

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/device.h"
#include "ember/core/version.h"

namespace ember::cuda {

namespace {

struct DeviceContext {
  cudaStream_t compute = nullptr;
  cudaStream_t copy = nullptr;
  cublasHandle_t cublas = nullptr;
  // The math mode last set on `cublas` (TF32 or not), so the hot path calls into cuBLAS
  // only when set_allow_tf32() has changed it.
  std::atomic<bool> cublas_tf32{false};
};

// Note [Library versions]
// libember is built against one cuDNN and cuBLAS, but the loader may find others at run
// time (on a GPU machine often those of a Python wheel). cuDNN's rule decides
// (cudnn_compatible in core/version.h): another major version, or an older minor one,
// breaks the ABI; a newer minor is fine and says nothing. Say so plainly, once, instead
// of failing obscurely later.
void check_library_versions() {
  static const bool checked = [] {
    if (!cudnn_runtime_compatible()) {
      std::fprintf(stderr,
                   "ember warning: built against cuDNN %s but loaded cuDNN %s; cuDNN needs "
                   "the same major version and a minor version no older than the one built "
                   "against\n",
                   cudnn_version_built().c_str(), cudnn_version_runtime().c_str());
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

void apply_math_mode(cublasHandle_t h, bool tf32) {
  EMBER_CUBLAS_CHECK(
      cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

// Brings the handle's math mode in line with allow_tf32(), calling cuBLAS only on a change.
void sync_math_mode(DeviceContext& c) {
  const bool want = allow_tf32();
  if (c.cublas_tf32.exchange(want) != want) apply_math_mode(c.cublas, want);
}

// Note [Per-thread context cache]
// Every op asks for its device's stream and handles, so the lookup is on the launch path.
// The contexts are created once under a mutex and never destroyed, so each thread keeps
// plain pointers to them and takes the mutex only the first time it sees a device.
DeviceContext& create_context(int device) {
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
    const bool tf32 = allow_tf32();
    apply_math_mode(c->cublas, tf32);
    c->cublas_tf32 = tf32;
    // Handles and streams live until the process ends: destroying them from a static
    // destructor can run after the driver has shut down.
    ctx = std::move(c);
  }
  return *ctx;
}

DeviceContext& context(int device) {
  thread_local std::vector<DeviceContext*> cache;
  if (device >= 0 && static_cast<size_t>(device) < cache.size() && cache[device] != nullptr) {
    return *cache[device];
  }
  DeviceContext& ctx = create_context(device);  // checks the device index
  if (cache.size() <= static_cast<size_t>(device)) cache.resize(device + 1, nullptr);
  cache[device] = &ctx;
  return ctx;
}

// Note [cuDNN handles per thread]
// cuDNN's handle may not be used by two threads at once (its documentation asks for one
// handle per thread), while the plans in kernels/cudnn are shared by all threads. So each
// thread gets its own handle per device, bound to the device's compute stream. Threads
// come and go (a DataLoader's worker, a user's thread pool): a thread's handles go back
// to a per-device free list when it ends and the next new thread takes them, so the number
// of handles is that of the threads alive at once, not of all threads ever started. Like
// the streams, handles are never destroyed (Note [cuDNN caches are never destroyed] in
// kernels/cudnn/plan_cache.h); returning one to the list calls nothing in cuDNN, so a
// thread (the main one included) may end while cuDNN is being torn down.
struct CudnnHandlePool {
  std::mutex mu;
  std::vector<std::vector<cudnnHandle_t>> free;  // per device
};

CudnnHandlePool& cudnn_pool() {
  static auto* pool = new CudnnHandlePool();
  return *pool;
}

struct ThreadCudnnHandles {
  std::vector<cudnnHandle_t> handles;  // per device; nullptr: none yet
  ThreadCudnnHandles() = default;
  ThreadCudnnHandles(const ThreadCudnnHandles&) = delete;
  ThreadCudnnHandles& operator=(const ThreadCudnnHandles&) = delete;
  ~ThreadCudnnHandles() {
    CudnnHandlePool& pool = cudnn_pool();
    std::lock_guard<std::mutex> lock(pool.mu);
    for (size_t d = 0; d < handles.size(); ++d) {
      if (handles[d] == nullptr) continue;
      if (pool.free.size() <= d) pool.free.resize(d + 1);
      pool.free[d].push_back(handles[d]);
    }
  }
};

cudnnHandle_t thread_cudnn_handle(int device, const DeviceContext& c) {
  thread_local ThreadCudnnHandles mine;
  if (static_cast<size_t>(device) < mine.handles.size() && mine.handles[device] != nullptr) {
    return mine.handles[device];
  }
  cudnnHandle_t h = nullptr;
  {
    CudnnHandlePool& pool = cudnn_pool();
    std::lock_guard<std::mutex> lock(pool.mu);
    if (static_cast<size_t>(device) < pool.free.size() && !pool.free[device].empty()) {
      h = pool.free[device].back();
      pool.free[device].pop_back();
    }
  }
  if (h == nullptr) {
    DeviceGuard guard(device);
    EMBER_CUDNN_CHECK(cudnnCreate(&h));
    EMBER_CUDNN_CHECK(cudnnSetStream(h, c.compute));
  }
  if (mine.handles.size() <= static_cast<size_t>(device)) mine.handles.resize(device + 1, nullptr);
  mine.handles[device] = h;
  return h;
}

}  // namespace

cudaStream_t compute_stream(int device) { return context(device).compute; }
cudaStream_t copy_stream(int device) { return context(device).copy; }

cublasHandle_t cublas_handle(int device) {
  DeviceContext& c = context(device);
  sync_math_mode(c);
  return c.cublas;
}

cudnnHandle_t cudnn_handle(int device) { return thread_cudnn_handle(device, context(device)); }

kernels::cuda::Context kernel_context(int device) {
  DeviceContext& c = context(device);
  sync_math_mode(c);
  kernels::cuda::Context ctx;
  ctx.stream = c.compute;
  ctx.device = device;
  ctx.cublas = c.cublas;
  ctx.cudnn = thread_cudnn_handle(device, c);
  ctx.deterministic = deterministic();
  ctx.cudnn_benchmark = cudnn_benchmark();
  ctx.allow_tf32 = allow_tf32();
  return ctx;
}

}  // namespace ember::cuda
