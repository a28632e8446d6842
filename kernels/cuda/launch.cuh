// The one place that decides launch sizes (nvcc only). Kernels never pick their own:
// launch_1d(kernel, n, stream, args...) sizes a grid-stride launch for n elements,
// returns at once for n == 0, and checks the launch.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "ember/core/base/cuda_check.h"

namespace ember::kernels::cuda {

inline constexpr int kBlockSize = 256;

// Grid-stride range: `for (int64_t i : grid_stride(n))` inside a kernel.
struct GridStride {
  int64_t begin_, n_, step_;
  struct It {
    int64_t i, step;
    __device__ int64_t operator*() const { return i; }
    __device__ It& operator++() { i += step; return *this; }
    __device__ bool operator!=(const It& end) const { return i < end.i; }
  };
  __device__ It begin() const { return {begin_, step_}; }
  __device__ It end() const { return {n_, step_}; }
};

__device__ inline GridStride grid_stride(int64_t n) {
  return {static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x, n,
          static_cast<int64_t>(gridDim.x) * blockDim.x};
}

inline int grid_size_for(int64_t n, int block = kBlockSize) {
  // Enough blocks to fill the device several times over; the grid-stride loop does the rest.
  const int64_t blocks = (n + block - 1) / block;
  return static_cast<int>(std::min<int64_t>(blocks, 65535LL * 8));
}

template <typename Kernel, typename... Args>
void launch_1d(Kernel kernel, int64_t n, cudaStream_t stream, Args... args) {
  if (n <= 0) return;
  kernel<<<grid_size_for(n), kBlockSize, 0, stream>>>(args...);
  EMBER_KERNEL_LAUNCH_CHECK();
}

// One block per row for row-wise kernels (softmax, cross-entropy, reductions).
template <int Block, typename Kernel, typename... Args>
void launch_rows(Kernel kernel, int64_t rows, cudaStream_t stream, Args... args) {
  if (rows <= 0) return;
  const int64_t grid = std::min<int64_t>(rows, 2147483647LL);
  kernel<<<static_cast<unsigned>(grid), Block, 0, stream>>>(args...);
  EMBER_KERNEL_LAUNCH_CHECK();
}

}  // namespace ember::kernels::cuda
