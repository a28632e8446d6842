// CUDA embedding lookup and its backward (float, float16, bfloat16), the twins of
// kernels/cpu/embedding.h (same contracts).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/scratch.h"

namespace ember::kernels::cuda {

// One thread per output element; bad indices counted by one thread per row.
template <typename T>
void embedding_forward(Context ctx, const T* weight, const int64_t* indices, T* out,
                       int64_t n, int64_t dim, int64_t num_embeddings, int64_t* bad_count);

// grad_weight is overwritten. By default one thread per element of grad_out, adding into
// its row with atomicAdd (fast, but rows that share an index sum in no fixed order); with
// ctx.deterministic, the indices are sorted (a stable radix sort, so equal indices keep
// the order of i) and each (run of equal indices, column) is summed by one thread in that
// order: the CPU's sums, in parallel over rows and columns. Scratch: 4 n int64 and the
// sort's workspace, deterministic mode only. float16 and bfloat16 always take the sorted
// path (sums in float, one rounding per element of grad_weight).
template <typename T>
void embedding_backward(Context ctx, const T* grad_out, const int64_t* indices,
                        T* grad_weight, int64_t n, int64_t dim, int64_t num_embeddings,
                        int64_t padding_idx, const Scratch& scratch);

}  // namespace ember::kernels::cuda
