// CUDA optimizer updates, the twins of kernels/cpu/optim.h with the same arguments: one call
// updates a whole list of float32, float16 or bfloat16 parameter tensors of one device in one
// kernel launch (see Note [Multi-tensor apply] in kernels/cuda/optim.cu), with the shared rules of
// kernels/optim_math.h. The launch tables and their indexing are plain host/device code, so CPU
// tests check them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/cpu/optim.h"
#include "ember/kernels/hd.h"

namespace ember::kernels::cuda {

// On ctx.stream. Entries with numel == 0 are skipped. The arrays of distinct entries must
// not overlap.
// T: float, Half, BFloat16 (the 16-bit types update in float and round on store).
template <typename T>
void sgd_multi_tensor(Context ctx, const SgdEntry<T>* entries, int64_t count);
template <typename T>
void adam_multi_tensor(Context ctx, const AdamEntry<T>* entries, int64_t count);
template <typename T>
void rmsprop_multi_tensor(Context ctx, const RmspropEntry<T>* entries, int64_t count);

// ---------------------------------------------------------------------------------
// The launch table (passed by value as the kernel's one argument).

// Elements per chunk; one block updates one chunk at a time. A multiple of 4, so every
// chunk of a 16-byte aligned tensor starts 16-byte aligned.
inline constexpr int64_t kMultiTensorChunk = 8192;
// Kernel-argument budgets: the classic 4 KiB, and the 32 KiB that CUDA 12.1+ allows on
// Volta and newer (every architecture CUDA 13 builds for).
inline constexpr size_t kSmallTableBytes = 4000;
inline constexpr size_t kLargeTableBytes = 32000;

template <typename Entry>
constexpr int multi_tensor_capacity(size_t bytes) {
  return static_cast<int>((bytes - 16) / (sizeof(Entry) + sizeof(int64_t)));
}

template <typename Entry, int Capacity>
struct MultiTensorTable {
  static constexpr int kCapacity = Capacity;
  Entry entries[Capacity];
  // chunk_begin[t]: the first global chunk of entry t; chunk_begin[count]: the total.
  int64_t chunk_begin[Capacity + 1];
  int32_t count;
};

// Fills `table` with the non-empty entries from entries[start..count) until it is full;
// returns the index of the first entry not taken (count when all were).
template <typename Table, typename Entry>
int64_t pack_multi_tensor_table(Table* table, const Entry* entries, int64_t count,
                                int64_t start) {
  table->count = 0;
  table->chunk_begin[0] = 0;
  int64_t i = start;
  for (; i < count && table->count < Table::kCapacity; ++i) {
    if (entries[i].numel <= 0) continue;
    const int32_t t = table->count++;
    table->entries[t] = entries[i];
    table->chunk_begin[t + 1] =
        table->chunk_begin[t] + (entries[i].numel + kMultiTensorChunk - 1) / kMultiTensorChunk;
  }
  // Trailing empty entries need no launch of their own.
  while (i < count && entries[i].numel <= 0) ++i;
  return i;
}

// The entry that owns global chunk `chunk` (0 <= chunk < chunk_begin[count]): the last t
// with chunk_begin[t] <= chunk. A binary search over at most a few hundred entries.
EMBER_HD inline int32_t multi_tensor_chunk_owner(const int64_t* chunk_begin, int32_t count,
                                                 int64_t chunk) {
  int32_t lo = 0, hi = count - 1;
  while (lo < hi) {
    const int32_t mid = (lo + hi + 1) / 2;
    if (chunk_begin[mid] <= chunk) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

}  // namespace ember::kernels::cuda
