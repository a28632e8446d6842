// CUDA embedding: a gather for the forward; for the backward a scatter-add with atomics,
// or (deterministic mode) a column-per-thread walk over the rows in order.
#include "ember/kernels/cuda/embedding.cuh"

#include "ember/kernels/cuda/launch.cuh"

namespace ember::kernels::cuda {
namespace {

// ---- kernels ----------------------------------------------------------------------------

// weight: [V, dim], indices: [n] -> out: [n, dim]
__global__ void embedding_forward_kernel(const float* weight, const int64_t* indices,
                                         float* out, int64_t n, int64_t dim) {
  for (int64_t k : grid_stride(n * dim)) {
    const int64_t i = k / dim, j = k - i * dim;
    out[k] = weight[indices[i] * dim + j];
  }
}

// grad_out: [n, dim] -> grad_weight: [V, dim] (zeroed before), atomically.
__global__ void embedding_backward_atomic_kernel(const float* grad_out, const int64_t* indices,
                                                 float* grad_weight, int64_t n, int64_t dim,
                                                 int64_t padding_idx) {
  for (int64_t k : grid_stride(n * dim)) {
    const int64_t i = k / dim, j = k - i * dim;
    const int64_t r = indices[i];
    if (r == padding_idx) continue;
    atomicAdd(grad_weight + r * dim + j, grad_out[k]);
  }
}

// One thread per column j: rows added in index order, as on the CPU.
__global__ void embedding_backward_ordered_kernel(const float* grad_out, const int64_t* indices,
                                                  float* grad_weight, int64_t n, int64_t dim,
                                                  int64_t padding_idx) {
  for (int64_t j : grid_stride(dim)) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = indices[i];
      if (r == padding_idx) continue;
      grad_weight[r * dim + j] += grad_out[i * dim + j];
    }
  }
}

}  // namespace

// ---- entry points -------------------------------------------------------------------------

void embedding_forward(Context ctx, const float* weight, const int64_t* indices, float* out,
                       int64_t n, int64_t dim) {
  launch_1d(embedding_forward_kernel, n * dim, ctx.stream, weight, indices, out, n, dim);
}

void embedding_backward(Context ctx, const float* grad_out, const int64_t* indices,
                        float* grad_weight, int64_t n, int64_t dim, int64_t num_embeddings,
                        int64_t padding_idx) {
  const size_t bytes = static_cast<size_t>(num_embeddings * dim) * sizeof(float);
  if (bytes > 0) EMBER_CUDA_CHECK(cudaMemsetAsync(grad_weight, 0, bytes, ctx.stream));
  if (ctx.deterministic) {
    launch_1d(embedding_backward_ordered_kernel, dim, ctx.stream, grad_out, indices, grad_weight,
              n, dim, padding_idx);
  } else {
    launch_1d(embedding_backward_atomic_kernel, n * dim, ctx.stream, grad_out, indices,
              grad_weight, n, dim, padding_idx);
  }
}

}  // namespace ember::kernels::cuda
