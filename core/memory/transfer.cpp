// Device storage and host<->device byte copies on the CUDA runtime: the only CUDA calls
// core/tensor.cpp relies on (see transfer.h). In a build without CUDA only host copies
// exist, and a CUDA device cannot be named (Device::cuda throws first).
#include "ember/core/memory/transfer.h"

#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/deferred_check.h"

#if EMBER_WITH_CUDA
#include <cuda_runtime_api.h>

#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/memory/cuda_memory.h"
#endif

namespace ember::memory {

#if EMBER_WITH_CUDA

namespace {

// A non-blocking copy in flight: `done` is recorded after it on the copy stream.
struct PendingCopy {
  cudaEvent_t done;
  std::shared_ptr<StorageImpl> source;
};

struct PendingCopies {
  std::mutex mu;
  std::vector<PendingCopy> copies;
};

PendingCopies& pending() {
  // Never destroyed, like the allocators (Note [Allocator lifetime]): a static destructor
  // may run after the CUDA runtime has unloaded.
  static PendingCopies* p = new PendingCopies();
  return *p;
}

// Releases the sources of the copies that have completed.
void release_finished_copies() {
  std::vector<std::shared_ptr<StorageImpl>> finished;
  {
    PendingCopies& p = pending();
    std::lock_guard<std::mutex> lock(p.mu);
    auto keep = p.copies.begin();
    for (auto it = p.copies.begin(); it != p.copies.end(); ++it) {
      const cudaError_t err = cudaEventQuery(it->done);
      if (err == cudaErrorNotReady) {
        (void)cudaGetLastError();  // "not ready" is an answer, not an error to report later
        *keep++ = std::move(*it);
        continue;
      }
      EMBER_CUDA_WARN(err);
      EMBER_CUDA_WARN(cudaEventDestroy(it->done));
      finished.push_back(std::move(it->source));
    }
    p.copies.erase(keep, p.copies.end());
  }
  // `finished` is dropped here, outside the lock: a storage's deleter may take other locks.
}

}  // namespace

std::shared_ptr<StorageImpl> cuda_storage(size_t nbytes, Device device) {
  const int index = device.index();
  cudaStream_t stream = cuda::compute_stream(index);
  void* p = cuda::raw_alloc(nbytes, index, stream);
  return std::make_shared<StorageImpl>(p, nbytes, device,
                                       [index](void* q) { cuda::raw_free(q, index); });
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                size_t nbytes) {
  if (nbytes == 0) return;
  const Device s = src_device, d = dst_device;
  if (s.is_cpu() && d.is_cpu()) {
    std::memmove(dst, src, nbytes);  // views of one storage may overlap
  } else if (s.is_cpu()) {
    cudaStream_t stream = cuda::compute_stream(d.index());
    cuda::DeviceGuard guard(d.index());
    EMBER_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream));
    // The host buffer may be freed as soon as we return.
    cuda::note_host_sync();
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
  } else if (d.is_cpu()) {
    cudaStream_t stream = cuda::compute_stream(s.index());
    cuda::DeviceGuard guard(s.index());
    EMBER_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream));
    cuda::note_host_sync();
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
    // The stream is drained: reading the queued checks' counters waits for nothing more.
    detail::run_deferred_checks(s.index(), true);
  } else if (s == d) {
    EMBER_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice,
                                     cuda::compute_stream(d.index())));
  } else {
    // Note [Copies between GPUs]
    // The copy runs on the destination's stream after the source's pending work. The
    // source's pool reuses freed memory in the order of the source's compute stream, so
    // that stream waits for the copy: the source may be freed as soon as we return without
    // its bytes being overwritten before the copy has read them.
    cudaStream_t src_stream = cuda::compute_stream(s.index());
    cudaStream_t dst_stream = cuda::compute_stream(d.index());
    cuda::note_host_sync();
    EMBER_CUDA_CHECK(cudaStreamSynchronize(src_stream));
    cuda::DeviceGuard guard(d.index());  // the event belongs to the destination's stream
    EMBER_CUDA_CHECK(cudaMemcpyPeerAsync(dst, d.index(), src, s.index(), nbytes, dst_stream));
    cudaEvent_t copied = nullptr;
    EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
    EMBER_CUDA_CHECK(cudaEventRecord(copied, dst_stream));
    EMBER_CUDA_CHECK(cudaStreamWaitEvent(src_stream, copied, 0));
    EMBER_CUDA_CHECK(cudaEventDestroy(copied));  // released once the wait is satisfied
  }
}

std::shared_ptr<StorageImpl> copy_to_cuda_async(const void* src, size_t nbytes,
                                                std::shared_ptr<StorageImpl> src_storage,
                                                Device device) {
  const int dev = device.index();
  cudaStream_t copy = cuda::copy_stream(dev);
  cudaStream_t compute = cuda::compute_stream(dev);
  cuda::DeviceGuard guard(dev);  // events belong to the device of their stream
  release_finished_copies();
  void* d = cuda::raw_alloc(nbytes, dev, copy);
  auto out = std::make_shared<StorageImpl>(d, nbytes, device,
                                           [dev](void* q) { cuda::raw_free(q, dev); });
  if (d == nullptr) return out;  // no bytes, nothing to order
  cuda::record_stream(d, dev, compute);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(d, src, nbytes, cudaMemcpyHostToDevice, copy));
  cudaEvent_t done = nullptr;
  try {
    EMBER_CUDA_CHECK(
        cudaEventCreateWithFlags(&done, cudaEventDisableTiming | cudaEventBlockingSync));
    EMBER_CUDA_CHECK(cudaEventRecord(done, copy));
    EMBER_CUDA_CHECK(cudaStreamWaitEvent(compute, done, 0));
    PendingCopies& p = pending();
    std::lock_guard<std::mutex> lock(p.mu);
    p.copies.push_back({done, std::move(src_storage)});
  } catch (...) {
    // The source is released on the way out: let the DMA finish reading it first.
    EMBER_CUDA_WARN(cudaStreamSynchronize(copy));
    if (done != nullptr) EMBER_CUDA_WARN(cudaEventDestroy(done));
    throw;
  }
  return out;
}

#else  // a build without CUDA

namespace {
[[noreturn]] void no_cuda(Device device) {
  throw DeviceError(
      detail::str_cat(device.str(), ": ember was built without CUDA (EMBER_CUDA=OFF)"));
}
}  // namespace

std::shared_ptr<StorageImpl> cuda_storage(size_t /*nbytes*/, Device device) { no_cuda(device); }

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                size_t nbytes) {
  if (!src_device.is_cpu()) no_cuda(src_device);
  if (!dst_device.is_cpu()) no_cuda(dst_device);
  if (nbytes > 0) std::memmove(dst, src, nbytes);  // views of one storage may overlap
}

std::shared_ptr<StorageImpl> copy_to_cuda_async(const void* /*src*/, size_t /*nbytes*/,
                                                std::shared_ptr<StorageImpl> /*src_storage*/,
                                                Device device) {
  no_cuda(device);
}

#endif

}  // namespace ember::memory
