// Layer normalization in hand-written CUDA (float), the twin of the layer_norm functions
// in kernels/cpu/norm.h (same contracts; weight and bias may be null). Batch norm on the
// GPU goes through cuDNN (kernels/cudnn/norm.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ember::kernels::cuda {

// x, y: [rows, cols]; mean, rstd: [rows]. One block per row, CUB block reductions, two
// passes over the row (mean, then squared deviations).
void layer_norm_forward(cudaStream_t stream, const float* x, const float* weight,
                        const float* bias, float* y, float* mean, float* rstd, int64_t rows,
                        int64_t cols, double eps);

// grad_x: one block per row; grad_weight / grad_bias: one block per 32 columns, its
// threads striding over the rows and reducing in shared memory. Any output may be null.
void layer_norm_backward(cudaStream_t stream, const float* x, const float* grad_y,
                         const float* weight, const float* mean, const float* rstd,
                         float* grad_x, float* grad_weight, float* grad_bias, int64_t rows,
                         int64_t cols);

}  // namespace ember::kernels::cuda
