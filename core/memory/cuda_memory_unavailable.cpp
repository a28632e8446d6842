// core/memory/cuda_memory.h in a build without CUDA (EMBER_CUDA=OFF): there is no device
// memory, so the queries say so with the DeviceError a missing GPU gives, and
// empty_cache() has nothing to release (as PyTorch's does before CUDA is initialised).
// Compiled in every build; empty when CUDA is there (core/memory/cuda_allocator.cpp).
#include "ember/core/memory/cuda_memory.h"

#if !EMBER_WITH_CUDA

#include "ember/core/base/error.h"

namespace ember::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what, int device) {
  throw DeviceError(detail::str_cat(what, "(cuda:", device,
                                    "): ember was built without CUDA (EMBER_CUDA=OFF)"));
}
}  // namespace

std::string allocator_backend() { return "none (built without CUDA)"; }
void* raw_alloc(size_t /*bytes*/, int device, void* /*stream*/) { no_cuda("raw_alloc", device); }
void raw_free(void* /*ptr*/, int /*device*/) {}
void record_stream(void* /*ptr*/, int device, void* /*stream*/) {
  no_cuda("record_stream", device);
}
memory::AllocatorStats memory_stats(int device) { no_cuda("memory_stats", device); }
void reset_peak_memory_stats(int device) { no_cuda("reset_peak_memory_stats", device); }
void empty_cache() {}
void set_memory_fraction(double /*fraction*/, int device) {
  no_cuda("set_memory_fraction", device);
}
void set_memory_limit(size_t /*bytes*/, int device) { no_cuda("set_memory_limit", device); }
size_t memory_limit(int device) { no_cuda("memory_limit", device); }

}  // namespace ember::cuda

#endif
