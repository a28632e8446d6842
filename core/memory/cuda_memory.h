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

}  // namespace ember::cuda
