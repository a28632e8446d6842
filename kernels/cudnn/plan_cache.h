// What the cuDNN wrappers share: a process-wide cache of plans (descriptors and algorithm
// choices) keyed by handle and shape, the hash that keys it, and a non-throwing report of
// a failed cuDNN call for destructors.
#pragma once

#include <cudnn.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace ember::kernels::cudnn {

// Destructors run at exit and must not throw: a failure is only reported.
inline void warn_cudnn(cudnnStatus_t st, const char* call) {
  if (st != CUDNN_STATUS_SUCCESS) {
    std::fprintf(stderr, "ember warning: cuDNN error %s in %s\n", cudnnGetErrorString(st), call);
  }
}

// Folds `v` into the hash `h` (boost's hash_combine).
inline void hash_mix(size_t& h, int64_t v) {
  h ^= std::hash<int64_t>()(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
}

// Plans by key, behind one mutex held while a plan is built or used.
template <typename Key, typename Plan, typename Hash>
struct KeyedPlanCache {
  std::mutex mu;
  std::unordered_map<Key, std::unique_ptr<Plan>, Hash> plans;
};

}  // namespace ember::kernels::cudnn
