// Output linear index -> input element offsets for BroadcastIndex and StridedIndex,
// shared by the CPU loops and the CUDA kernels.
#pragma once

#include <cstdint>

#include "ember/kernels/hd.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels {

struct BroadcastOffsets {
  int64_t a;
  int64_t b;
};

// Unravels i over idx.sizes (last dimension fastest) and applies each input's strides.
EMBER_HD inline BroadcastOffsets broadcast_offsets(const BroadcastIndex& idx, int64_t i) {
  BroadcastOffsets off{0, 0};
  EMBER_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= idx.ndim) continue;
    const int64_t size = idx.sizes[d];
    const int64_t coord = i % size;
    i /= size;
    off.a += coord * idx.stride_a[d];
    off.b += coord * idx.stride_b[d];
  }
  return off;
}

EMBER_HD inline int64_t strided_offset(const StridedIndex& idx, int64_t i) {
  int64_t off = 0;
  EMBER_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= idx.ndim) continue;
    const int64_t size = idx.sizes[d];
    off += (i % size) * idx.strides[d];
    i /= size;
  }
  return off;
}

}  // namespace ember::kernels
