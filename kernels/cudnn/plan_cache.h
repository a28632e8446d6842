// What the cuDNN wrappers share: a process-wide, bounded cache of plans (descriptors and
// algorithm choices) keyed by device and shape, the hash that keys it, and a non-throwing
// report of a failed cuDNN call for destructors.
//
// Note [cuDNN caches are never destroyed]
// Every cache of cuDNN objects (the plans in kernels/cudnn/conv.cpp and rnn.cpp, the
// descriptors in pool.cpp and norm.cpp) is allocated with new on first use and never
// deleted, like the streams and handles in core/cuda_context.cpp. cuDNN 9 loads its
// sub-libraries lazily and tears them down from its own exit handlers, which can run
// before the destructors of function-local statics; a cudnnDestroy*Descriptor call from a
// static destructor would then reach a library that is gone (a crash or an error at exit
// instead of a clean one). The process frees the memory when it ends. Entries a cache
// drops while the program runs (a bounded cache cleared, a plan whose creation failed)
// are still destroyed then, when cuDNN is alive.
#pragma once

#include <cudnn.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>

#include "ember/core/base/cuda_check.h"
#include "ember/kernels/lru_cache.h"

namespace ember::kernels::cudnn {

// Destructors must not throw: a failure is only reported.
inline void warn_cudnn(cudnnStatus_t st, const char* call) {
  if (st != CUDNN_STATUS_SUCCESS) {
    std::fprintf(stderr, "ember warning: cuDNN error %s in %s\n", cudnnGetErrorString(st), call);
  }
}

// Folds `v` into the hash `h` (boost's hash_combine).
inline void hash_mix(size_t& h, int64_t v) {
  h ^= std::hash<int64_t>()(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
}

// Note [Bounded plan caches]
// A plan holds descriptors built for one shape, so a program whose shapes vary (the last,
// smaller batch of an epoch; sequences bucketed by length) adds plans as it runs. The
// caches keep the kPlanCacheCapacity most recently used ones and destroy the rest (cuDNN is
// alive then). A plan is keyed by device, not by handle: each thread has its own handle
// (Note [cuDNN handles per thread] in core/cuda_context.cpp), and an algorithm chosen on a
// GPU serves every thread using it.
inline constexpr size_t kPlanCacheCapacity = 512;

// Plans by key, behind one mutex held while a plan is built or looked up.
template <typename Key, typename Plan, typename Hash>
struct KeyedPlanCache {
  std::mutex mu;
  LruCache<Key, Plan, Hash> plans{kPlanCacheCapacity};
};

// The device the calling thread has current: the one the dispatch seam made current for
// the op, and the handle's.
inline int current_device() {
  int device = 0;
  EMBER_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

}  // namespace ember::kernels::cudnn
