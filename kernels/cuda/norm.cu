// CUDA layer normalization (float, float16, bfloat16; statistics in float): forward and grad_x one
// block per row with CUB block reductions; grad_weight / grad_bias by column tiles reduced in
// shared memory. (The batch norm twins declared in norm.cuh are cuDNN's, in
// kernels/cudnn/norm.cpp.)
#include "ember/kernels/cuda/norm.cuh"

#include <cub/block/block_reduce.cuh>

#include "ember/core/base/half.h"
#include "ember/kernels/cuda/launch.cuh"

namespace ember::kernels::cuda {
namespace {

constexpr int kRowBlock = 256;

// The parameter-gradient kernel's 256 threads as 32 columns x 8 row lanes: a warp reads
// 32 neighbouring columns of one row (coalesced), the 8 lanes stride over the rows.
constexpr int kTileCols = 32;
constexpr int kTileRows = kRowBlock / kTileCols;

// ---- kernels ----------------------------------------------------------------------------

// x, y: [rows, cols] -> mean, rstd: [rows]
template <typename T>
__global__ void layer_norm_forward_kernel(const T* x, const T* weight, const T* bias, T* y,
                                          T* mean, T* rstd, int64_t rows, int64_t cols,
                                          float eps) {
  using BlockReduce = cub::BlockReduce<float, kRowBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  __shared__ float row_mean, row_rstd;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    float acc = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) acc += static_cast<float>(xr[j]);
    acc = BlockReduce(temp).Sum(acc);
    if (threadIdx.x == 0) row_mean = acc / static_cast<float>(cols);
    __syncthreads();
    const float mu = row_mean;
    float sq = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float d = static_cast<float>(xr[j]) - mu;
      sq += d * d;
    }
    sq = BlockReduce(temp).Sum(sq);
    if (threadIdx.x == 0) {
      row_rstd = rsqrtf(sq / static_cast<float>(cols) + eps);
      mean[r] = mu;
      rstd[r] = row_rstd;
    }
    __syncthreads();
    const float rs = row_rstd;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      float v = (static_cast<float>(xr[j]) - mu) * rs;
      if (weight != nullptr) v *= static_cast<float>(weight[j]);
      if (bias != nullptr) v += static_cast<float>(bias[j]);
      yr[j] = v;
    }
    __syncthreads();  // row_mean, row_rstd and temp are rewritten by the next row
  }
}

// grad_x = rstd / cols * (cols * wg - sum(wg) - xhat * sum(wg * xhat)), wg = gy * weight.
template <typename T>
__global__ void layer_norm_grad_x_kernel(const T* x, const T* grad_y, const T* weight,
                                         const T* mean, const T* rstd, T* grad_x, int64_t rows,
                                         int64_t cols) {
  using BlockReduce = cub::BlockReduce<float, kRowBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  __shared__ float row_sum_wg, row_sum_wg_xhat;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* gr = grad_y + r * cols;
    const float mu = mean[r];
    const float rs = rstd[r];
    float sum_wg = 0.0f, sum_wg_xhat = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float g = gr[j];
      const float wg = weight != nullptr ? g * static_cast<float>(weight[j]) : g;
      sum_wg += wg;
      sum_wg_xhat += wg * (static_cast<float>(xr[j]) - mu) * rs;
    }
    sum_wg = BlockReduce(temp).Sum(sum_wg);
    __syncthreads();  // temp is reused by the second reduction
    sum_wg_xhat = BlockReduce(temp).Sum(sum_wg_xhat);
    if (threadIdx.x == 0) {
      row_sum_wg = sum_wg;
      row_sum_wg_xhat = sum_wg_xhat;
    }
    __syncthreads();
    const float a = row_sum_wg, b = row_sum_wg_xhat;
    const float n = static_cast<float>(cols);
    T* gx = grad_x + r * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float g = gr[j];
      const float wg = weight != nullptr ? g * static_cast<float>(weight[j]) : g;
      const float xhat = (static_cast<float>(xr[j]) - mu) * rs;
      gx[j] = rs / n * (n * wg - a - xhat * b);
    }
    __syncthreads();
  }
}

// grad_weight[j] = sum_r gy[r, j] * xhat[r, j], grad_bias[j] = sum_r gy[r, j]; one block
// per tile of kTileCols columns.
template <typename T>
__global__ void layer_norm_grad_params_kernel(const T* x, const T* grad_y, const T* mean,
                                              const T* rstd, T* grad_weight, T* grad_bias,
                                              int64_t rows, int64_t cols, int64_t tiles) {
  __shared__ float part_w[kTileRows][kTileCols + 1];  // +1: no bank conflicts on the sum
  __shared__ float part_b[kTileRows][kTileCols + 1];
  const int lane_col = threadIdx.x % kTileCols;
  const int lane_row = threadIdx.x / kTileCols;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t j = t * kTileCols + lane_col;
    float acc_w = 0.0f, acc_b = 0.0f;
    if (j < cols) {
      for (int64_t r = lane_row; r < rows; r += kTileRows) {
        const float gy = grad_y[r * cols + j];
        acc_w += gy * (static_cast<float>(x[r * cols + j]) - static_cast<float>(mean[r])) *
                 static_cast<float>(rstd[r]);
        acc_b += gy;
      }
    }
    part_w[lane_row][lane_col] = acc_w;
    part_b[lane_row][lane_col] = acc_b;
    __syncthreads();
    if (lane_row == 0 && j < cols) {
      float sw = 0.0f, sb = 0.0f;
      for (int k = 0; k < kTileRows; ++k) {
        sw += part_w[k][lane_col];
        sb += part_b[k][lane_col];
      }
      if (grad_weight != nullptr) grad_weight[j] = sw;
      if (grad_bias != nullptr) grad_bias[j] = sb;
    }
    __syncthreads();  // the partials are rewritten by the next tile
  }
}

}  // namespace

// ---- entry points -------------------------------------------------------------------------

template <typename T>
void layer_norm_forward(Context ctx, const T* x, const T* weight, const T* bias, T* y, T* mean,
                        T* rstd, int64_t rows, int64_t cols, double eps) {
  launch_rows<kRowBlock>(layer_norm_forward_kernel<T>, rows, ctx.stream, x, weight, bias, y, mean,
                         rstd, rows, cols, static_cast<float>(eps));
}

template <typename T>
void layer_norm_backward(Context ctx, const T* x, const T* grad_y, const T* weight,
                         const T* mean, const T* rstd, T* grad_x, T* grad_weight, T* grad_bias,
                         int64_t rows, int64_t cols) {
  if (grad_x != nullptr) {
    launch_rows<kRowBlock>(layer_norm_grad_x_kernel<T>, rows, ctx.stream, x, grad_y, weight, mean,
                           rstd, grad_x, rows, cols);
  }
  if (grad_weight != nullptr || grad_bias != nullptr) {
    // rows == 0 still owes zeros to the parameter gradients, so the tiles run regardless.
    const int64_t tiles = (cols + kTileCols - 1) / kTileCols;
    launch_rows<kRowBlock>(layer_norm_grad_params_kernel<T>, tiles, ctx.stream, x, grad_y, mean,
                           rstd, grad_weight, grad_bias, rows, cols, tiles);
  }
}

#define EMBER_LAYER_NORM_INSTANTIATE(T)                                                    \
  template void layer_norm_forward<T>(Context, const T*, const T*, const T*, T*, T*, T*,  \
                                      int64_t, int64_t, double);                          \
  template void layer_norm_backward<T>(Context, const T*, const T*, const T*, const T*,   \
                                       const T*, T*, T*, T*, int64_t, int64_t);
EMBER_LAYER_NORM_INSTANTIATE(float)
EMBER_LAYER_NORM_INSTANTIATE(Half)
EMBER_LAYER_NORM_INSTANTIATE(BFloat16)
#undef EMBER_LAYER_NORM_INSTANTIATE

}  // namespace ember::kernels::cuda
