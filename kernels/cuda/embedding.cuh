// CUDA embedding lookup and its backward (float), the twins of kernels/cpu/embedding.h
// (same contracts).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"

namespace ember::kernels::cuda {

// One thread per output element.
void embedding_forward(Context ctx, const float* weight, const int64_t* indices, float* out,
                       int64_t n, int64_t dim);

// grad_weight is overwritten. By default one thread per element of grad_out, adding into
// its row with atomicAdd (fast, but rows that share an index sum in no fixed order); with
// ctx.deterministic, one thread per column walks the rows in order (the CPU's sums,
// slower).
void embedding_backward(Context ctx, const float* grad_out, const int64_t* indices,
                        float* grad_weight, int64_t n, int64_t dim, int64_t num_embeddings,
                        int64_t padding_idx);

}  // namespace ember::kernels::cuda
