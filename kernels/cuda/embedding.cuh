// CUDA embedding lookup and its backward (float), the twins of kernels/cpu/embedding.h
// (same contracts).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ember::kernels::cuda {

// One thread per output element.
void embedding_forward(cudaStream_t stream, const float* weight, const int64_t* indices,
                       float* out, int64_t n, int64_t dim);

// grad_weight is overwritten. By default one thread per element of grad_out, adding into
// its row with atomicAdd (fast, but rows that share an index sum in no fixed order); with
// `deterministic`, one thread per column walks the rows in order (the CPU's sums, slower).
void embedding_backward(cudaStream_t stream, const float* grad_out, const int64_t* indices,
                        float* grad_weight, int64_t n, int64_t dim, int64_t num_embeddings,
                        int64_t padding_idx, bool deterministic);

}  // namespace ember::kernels::cuda
