// Kernel scratch memory (kernels/scratch.h) from ember's memory pool (internal to core/ops).
#pragma once

#include <cstdint>

#include "ember/core/tensor.h"
#include "ember/kernels/scratch.h"

namespace ember::detail {

// A Scratch on `device` whose current buffer is the byte tensor `held`: the op keeps
// `held` until the kernel has returned, then lets it go back to the pool.
inline kernels::Scratch pool_scratch(Device device, Tensor& held) {
  return [device, &held](size_t bytes) -> void* {
    held = Tensor();  // the previous buffer goes back first, so the pool may reuse it
    if (bytes == 0) return nullptr;
    held = Tensor::empty({static_cast<int64_t>(bytes)}, {.dtype = kUInt8, .device = device});
    return held.data_ptr();
  };
}

}  // namespace ember::detail
