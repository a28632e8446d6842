// ember's CPU tensor memory, public API: large CPU buffers come from a caching pool so
// that a training loop does not map, fault in and unmap its activations at every step.
// See Note [Host memory].
#pragma once

#include <cstddef>
#include <string>

#include "ember/core/base/export.h"
#include "ember/core/memory/caching_allocator.h"

namespace ember::cpu {

// Note [Host memory]
// glibc serves every request above 32 MiB (its largest mmap threshold) with a fresh mmap
// and gives it back with munmap on free, so each step of a training loop whose
// activations are that large pays a page fault and a page clear for every 4 KiB it
// touches (a third of a CPU epoch of image_folder_cnn went there). CPU buffers larger
// than memory::kSmallSize (1 MiB) therefore come from a CachingAllocator (Note [Caching
// allocator policy]) whose segments are page-aligned blocks from aligned_alloc: freed
// buffers are kept and handed out again, already faulted in. Smaller buffers go straight
// to aligned_alloc, whose arenas already reuse them. Every buffer is 64-byte aligned.
// Like the CUDA pool, the cache is not given back on its own; empty_cache() does, and an
// allocation that fails empties it and retries before throwing OutOfMemoryError
// ("CPU out of memory. Tried to allocate ...").
//
// The environment variable EMBER_CPU_ALLOC, read once per process, chooses:
//   "pool" (default, also when unset or empty): the above;
//   "system": every buffer from aligned_alloc and back to free at once, for memory
//     checkers (valgrind, AddressSanitizer) that a cache would blind to use-after-free.
// Returns "pool" or "system"; throws ember::Error for any other value of the variable.
EMBER_API std::string allocator_backend();

// At least `bytes` bytes, 64-byte aligned (nullptr for 0). Throws OutOfMemoryError.
EMBER_API void* raw_alloc(size_t bytes);
// `ptr` from raw_alloc(bytes), with the same `bytes`; nullptr is a no-op.
EMBER_API void raw_free(void* ptr, size_t bytes);

// Note [CPU memory limit]
// A process-wide bound on the CPU memory ember's tensors hold (Note [Memory limits]):
// the pool's segments (buffers in use and cached) plus the buffers of 1 MiB or less that
// bypass it (and, with the "system" backend, every buffer). The environment variable
// EMBER_CPU_MEMORY_LIMIT sets it at the first allocation ("8GiB", "512MiB", "1.5G",
// bytes; see memory::parse_memory_size; a bad value is an ember::Error naming the
// variable, at the first allocation and every one after until it is fixed);
// set_memory_limit() sets it from code and overrides the variable. An allocation that
// would cross it releases the cache, retries once, and then throws OutOfMemoryError
// ("CPU out of memory. Tried to allocate 2.00 GiB on the CPU, over the memory limit of
// 4.00 GiB ...", with the memory in use, the memory cached and the limit); nothing is
// held back by the failure, so a smaller allocation right after succeeds.
// memory_stats().ooms counts these errors. Without a limit (the default) only the
// machine bounds the pool.
//
// `bytes` 0 removes the limit.
EMBER_API void set_memory_limit(size_t bytes);
// The limit in bytes, 0 when there is none. Reads EMBER_CPU_MEMORY_LIMIT on first use
// (throws for a bad value, as above).
EMBER_API size_t memory_limit();

// Figures of the pool (buffers above 1 MiB only), except `ooms`, which counts every CPU
// OutOfMemoryError ember threw, and `unpooled_bytes`, the bytes of the buffers outside the
// pool; the rest are zero with the "system" backend.
// device_allocs / device_frees count the segments taken from and given back to the
// system.
EMBER_API memory::AllocatorStats memory_stats();
EMBER_API void reset_peak_memory_stats();
// Gives every cached, wholly free segment back to the system. Live buffers are untouched.
EMBER_API void empty_cache();

}  // namespace ember::cpu
