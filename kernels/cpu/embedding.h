// CPU embedding lookup (rows of a table gathered by index) and its backward (the rows'
// gradients scattered back, summed where an index repeats): the reference for
// kernels/cuda/embedding.cuh.
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/scratch.h"

namespace ember::kernels::cpu {

// weight: [num_embeddings, dim]; indices: [n]; out: [n, dim]. An index outside
// [0, num_embeddings) reads nothing: its row of `out` is NaN and it adds one to
// *bad_count (the op raises; Note [Deferred checks] in core/device.h). T: float, double, Half,
// BFloat16 (the backward sums 16-bit rows in float).
template <typename T>
void embedding_forward(Context ctx, const T* weight, const int64_t* indices, T* out, int64_t n,
                       int64_t dim, int64_t num_embeddings, int64_t* bad_count);

// grad_weight: [num_embeddings, dim], overwritten: row r = sum of grad_out's rows i with
// indices[i] == r, except row `padding_idx` (when >= 0), which stays zero. Rows sharing
// an index add in the order of i. Indices out of range add nothing. `scratch`: the CUDA
// twin's sort buffers (unused here).
template <typename T>
void embedding_backward(Context ctx, const T* grad_out, const int64_t* indices, T* grad_weight,
                        int64_t n, int64_t dim, int64_t num_embeddings, int64_t padding_idx,
                        const Scratch& scratch);

}  // namespace ember::kernels::cpu
