// Tensor memory on a device and byte copies between the host and devices (internal to
// core): the CUDA runtime calls that core makes outside kernels, all in transfer.cpp, the
// one file a build without CUDA replaces. No CUDA header here.
#pragma once

#include <cstddef>
#include <memory>

#include "ember/core/device.h"
#include "ember/core/storage.h"

namespace ember::memory {

// Fresh, uninitialised storage of `nbytes` on CUDA `device`, from its caching pool, for
// use on the device's compute stream.
std::shared_ptr<StorageImpl> cuda_storage(size_t nbytes, Device device);

// Copies `nbytes` contiguous bytes from `src` on `src_device` to `dst` on `dst_device`
// (the ranges may overlap only host to host). When either side is the host the copy has
// completed on return (the host buffer may be freed or read at once); a copy within one
// GPU is queued on its compute stream, one between two GPUs on the destination's compute
// stream after the source's has drained.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                size_t nbytes);

// Note [Non-blocking copies]
// Tensor::to(device, /*non_blocking=*/true) from the host to a GPU does not wait for the
// copy: it allocates the destination on the device's copy stream (announced to the
// compute stream with record_stream, so the memory is not reused before compute work
// reading it has run), queues cudaMemcpyAsync on the copy stream, records an event there
// and makes the compute stream wait for it (cudaStreamWaitEvent). Work queued later on the
// compute stream, which is every op, is therefore ordered after the copy, and the host
// goes on at once. The source must stay alive until the DMA has read it: its storage is
// held with the event in a process-wide list and released by a later non-blocking copy
// that finds the event complete (never inside a CUDA callback, which may not call CUDA).
// From page-locked memory (Tensor::pin_memory) the copy is asynchronous DMA; from pageable
// memory the driver stages it and cudaMemcpyAsync returns once the bytes are staged, which
// is correct but slower. The host must not write the source before the copy completes.
// This is the transfer the DataLoader makes for every batch (Note [DataLoader pipeline]).

// The host bytes [src, src + nbytes), which lie in `src_storage`, copied into new storage
// on CUDA `device` as Note [Non-blocking copies] describes; `src_storage` is kept alive
// until the copy has completed.
std::shared_ptr<StorageImpl> copy_to_cuda_async(const void* src, size_t nbytes,
                                                std::shared_ptr<StorageImpl> src_storage,
                                                Device device);

}  // namespace ember::memory
