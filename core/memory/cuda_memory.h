// ember's CUDA memory, public API: raw allocations from the per-device caching pool,
// stream bookkeeping, statistics and empty_cache(). No CUDA headers needed to use it.
#pragma once

#include <cstddef>
#include <string>

#include "ember/core/base/export.h"
#include "ember/core/memory/caching_allocator.h"

namespace ember::cuda {

// Backends, chosen once per process by the environment variable EMBER_CUDA_ALLOC:
//   "pool" (default, also when unset or empty): ember's caching allocator over cudaMalloc,
//     see Note [Caching allocator policy];
//   "async": the driver's stream-ordered allocator (cudaMallocAsync / cudaFreeAsync).
// Returns "pool" or "async"; throws ember::Error for any other value of the variable.
EMBER_API std::string allocator_backend();

// `stream` is a cudaStream_t. The memory may be used on `stream` at once; use on any
// other stream must be announced with record_stream() before it is freed.
// Throws OutOfMemoryError (after releasing cached blocks and retrying) when the device
// cannot hold it, DeviceError when there is no such device. bytes == 0 gives nullptr.
EMBER_API void* raw_alloc(size_t bytes, int device, void* stream);
// `ptr` from raw_alloc on `device`; nullptr is a no-op. Returns the memory to the cache
// (to the driver's pool with the async backend): it is not reused before the work queued
// on its streams so far has run.
EMBER_API void raw_free(void* ptr, int device);
// `ptr` (from raw_alloc) is used on `stream` (a cudaStream_t) too.
EMBER_API void record_stream(void* ptr, int device, void* stream);

// Figures of the device's allocator; all zero before its first allocation.
EMBER_API memory::AllocatorStats memory_stats(int device = 0);
EMBER_API void reset_peak_memory_stats(int device = 0);
// Hands every cached, wholly free segment of every device back to the driver (waits for
// the events that hold blocks back). Live allocations are untouched.
EMBER_API void empty_cache();

// Note [CUDA memory limits]
// A per-device bound on the memory ember's pool reserves from the driver (in use plus
// cached; Note [Memory limits]), as PyTorch's torch.cuda.set_per_process_memory_fraction:
// set_memory_fraction(0.5, 0) lets cuda:0's pool hold at most half of the GPU's total
// memory, set_memory_limit(bytes, device) the same in bytes. Beyond it an allocation
// releases the cache, retries once, then throws OutOfMemoryError naming the request, the
// memory in use, the memory cached, the limit and the GPU; the next allocation that fits
// succeeds, and memory_stats(device).ooms counts the errors. The environment sets the
// limit of every device when its pool is created (its first allocation):
// EMBER_CUDA_MEMORY_FRACTION=0.5, or EMBER_CUDA_MEMORY_LIMIT=20GiB (sizes as
// memory::parse_memory_size reads them); setting both, or a bad value, is an ember::Error
// naming the variable at that first allocation. A call overrides the variables. With
// EMBER_CUDA_ALLOC=async the driver's pool does the caching, so the limit bounds the
// memory in use only. Throws DeviceError when there is no such device, ember::Error for a
// fraction outside (0, 1].
EMBER_API void set_memory_fraction(double fraction, int device = 0);
// `bytes` 0 removes the limit.
EMBER_API void set_memory_limit(size_t bytes, int device = 0);
// The device's limit in bytes, 0 when there is none.
EMBER_API size_t memory_limit(int device = 0);

}  // namespace ember::cuda
