// CUDA loss kernels in float, float16 and bfloat16 (the 16-bit types compute in float):
// (fused log-softmax + NLL and NLL, both with optional class weights,
// pointwise losses, binary cross-entropy on logits with pos_weight) and the dropout mask.
// The per-element math comes from kernels/loss_math.h, shared with kernels/cpu.
#include "ember/kernels/cuda/loss.cuh"

#include <cub/block/block_reduce.cuh>
#include <curand_kernel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "ember/core/base/error.h"
#include "ember/core/base/half.h"
#include "ember/kernels/cuda/launch.cuh"
#include "ember/kernels/loss_math.h"

namespace ember::kernels::cuda {
namespace {

constexpr int kRowBlock = 256;

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

__device__ inline void count_bad_target(int64_t* bad_count) {
  atomicAdd(reinterpret_cast<unsigned long long*>(bad_count), 1ULL);
}

// ---- kernels ----------------------------------------------------------------------------

// Sum of the class weights, reduced by the whole block (every thread gets it; the closing
// barrier lets the caller reuse temp at once). The smoothing terms read it, so it is
// reduced once per block rather than once per row.
template <typename T>
__device__ float block_weight_sum(const T* class_weight, int64_t C,
                                  cub::BlockReduce<float, kRowBlock>::TempStorage& temp,
                                  float& shared_sum) {
  float w = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) w += static_cast<float>(class_weight[c]);
  w = cub::BlockReduce<float, kRowBlock>(temp).Sum(w);
  if (threadIdx.x == 0) shared_sum = w;
  __syncthreads();
  return shared_sum;
}

// One row's loss and log-sum-exp from its reductions (max m, sum of exp(x - m), sum of the
// logits or weighted logits), written by one thread.
template <typename T>
__device__ void store_cross_entropy_row(const T* x, const int64_t* target, const T* class_weight,
                                        T* loss, T* lse, int64_t r, int64_t C,
                                        int64_t ignore_index, float smoothing, float m,
                                        float sum_exp, float sum_x, float weight_sum,
                                        int64_t* bad_count) {
  const float row_lse = m + logf(sum_exp);
  lse[r] = row_lse;
  const int64_t t = target[r];
  switch (classify_target(t, C, ignore_index)) {
    case TargetClass::Ignored:
      loss[r] = 0.0f;
      break;
    case TargetClass::OutOfRange:
      loss[r] = invalid_target_value<float>();
      count_bad_target(bad_count);
      break;
    case TargetClass::Valid: {
      const float xt = x[t];
      loss[r] = class_weight != nullptr
                    ? weighted_cross_entropy_row_loss<float>(
                          row_lse, xt, static_cast<float>(class_weight[t]), weight_sum, sum_x,
                          static_cast<float>(C), smoothing)
                    : cross_entropy_row_loss<float>(row_lse, xt, sum_x, static_cast<float>(C),
                                                    smoothing);
      break;
    }
  }
}

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Note [Cross-entropy rows by warp]
// A block of 256 threads per row leaves most of them idle when the classes are few (with
// Fashion-MNIST's 10, 246 of 256), and every row pays two block-wide reductions with their
// barriers. Up to kWarpRowMaxClasses classes, each warp takes a row instead (eight rows per
// block), reduced with shuffles and no barrier; the math per row is the same.
constexpr int64_t kWarpRowMaxClasses = 256;
constexpr int kWarpsPerBlock = kRowBlock / 32;

template <typename T>
__global__ void cross_entropy_forward_warp_kernel(const T* logits, const int64_t* target,
                                                  const T* class_weight, T* loss, T* lse,
                                                  int64_t N, int64_t C, int64_t ignore_index,
                                                  float smoothing, int64_t* bad_count) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int64_t warp = threadIdx.x / 32;
  const bool weighted = class_weight != nullptr;
  float weight_sum = 0.0f;
  if (weighted && smoothing != 0.0f) {
    for (int64_t c = lane; c < C; c += 32) weight_sum += static_cast<float>(class_weight[c]);
    weight_sum = warp_sum(weight_sum);
  }
  const int64_t step = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + warp; r < N; r += step) {
    const T* x = logits + r * C;
    float m = -INFINITY;
    for (int64_t c = lane; c < C; c += 32) m = fmaxf(m, static_cast<float>(x[c]));
    m = warp_max(m);
    float sum_exp = 0.0f, sum_x = 0.0f;
    for (int64_t c = lane; c < C; c += 32) {
      const float xc = x[c];
      sum_exp += expf(xc - m);
      sum_x += weighted ? static_cast<float>(class_weight[c]) * xc : xc;
    }
    sum_exp = warp_sum(sum_exp);
    sum_x = warp_sum(sum_x);
    if (lane == 0) {
      store_cross_entropy_row(x, target, class_weight, loss, lse, r, C, ignore_index, smoothing,
                              m, sum_exp, sum_x, weight_sum, bad_count);
    }
  }
}

// logits: [N, C] -> loss, lse: [N]. One block per row: max, then sum of exp (and of the
// logits, or the weighted logits, when smoothing), then thread 0 picks the target's logit
// and writes the row.
template <typename T>
__global__ void cross_entropy_forward_kernel(const T* logits, const int64_t* target,
                                             const T* class_weight, T* loss, T* lse,
                                             int64_t N, int64_t C, int64_t ignore_index,
                                             float smoothing, int64_t* bad_count) {
  using BlockReduce = cub::BlockReduce<float, kRowBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  __shared__ float row_max;
  __shared__ float weight_sum_shared;
  // class_weight and smoothing are uniform across the block, so every thread joins or none.
  const bool weighted = class_weight != nullptr;
  float weight_sum = 0.0f;
  if (weighted && smoothing != 0.0f) {
    weight_sum = block_weight_sum<T>(class_weight, C, temp, weight_sum_shared);
  }
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* x = logits + r * C;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, static_cast<float>(x[c]));
    m = BlockReduce(temp).Reduce(m, MaxOp{});
    if (threadIdx.x == 0) row_max = m;
    __syncthreads();
    m = row_max;
    float sum_exp = 0.0f, sum_x = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float xc = x[c];
      sum_exp += expf(xc - m);
      sum_x += weighted ? static_cast<float>(class_weight[c]) * xc : xc;
    }
    sum_exp = BlockReduce(temp).Sum(sum_exp);
    if (smoothing != 0.0f) {  // uniform across the block, so every thread joins or none
      __syncthreads();
      sum_x = BlockReduce(temp).Sum(sum_x);
    }
    if (threadIdx.x == 0) {
      store_cross_entropy_row(x, target, class_weight, loss, lse, r, C, ignore_index, smoothing,
                              m, sum_exp, sum_x, weight_sum, bad_count);
    }
    __syncthreads();  // row_max and temp are rewritten by the next row
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* target,
                                              const T* lse, const T* grad_loss,
                                              int64_t grad_stride, T* grad_logits, int64_t N,
                                              int64_t C, int64_t ignore_index, float smoothing,
                                              float smoothing_over_c) {
  for (int64_t j : grid_stride(N * C)) {
    const int64_t r = j / C;
    const int64_t t = target[r];
    switch (classify_target(t, C, ignore_index)) {
      case TargetClass::Ignored:
        grad_logits[j] = 0.0f;
        break;
      case TargetClass::OutOfRange:
        grad_logits[j] = invalid_target_value<float>();
        break;
      case TargetClass::Valid:
        grad_logits[j] = static_cast<float>(grad_loss[r * grad_stride]) *
                         cross_entropy_logit_grad<float>(static_cast<float>(logits[j]),
                                                         static_cast<float>(lse[r]), j - r * C == t,
                                                         smoothing, smoothing_over_c);
        break;
    }
  }
}

// grad_logits as cross_entropy_backward_kernel, with class weights: one block per row, so
// the sum of the weights (needed only with smoothing) is reduced once per block.
template <typename T>
__global__ void weighted_cross_entropy_backward_kernel(
    const T* logits, const int64_t* target, const T* class_weight, const T* lse,
    const T* grad_loss, int64_t grad_stride, T* grad_logits, int64_t N, int64_t C,
    int64_t ignore_index, float smoothing, float smoothing_over_c) {
  using BlockReduce = cub::BlockReduce<float, kRowBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  __shared__ float weight_sum_shared;
  const float weight_sum =
      smoothing != 0.0f ? block_weight_sum<T>(class_weight, C, temp, weight_sum_shared) : 0.0f;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* x = logits + r * C;
    T* gx = grad_logits + r * C;
    const int64_t t = target[r];
    const TargetClass kind = classify_target(t, C, ignore_index);
    if (kind != TargetClass::Valid) {
      const float fill = kind == TargetClass::Ignored ? 0.0f : invalid_target_value<float>();
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) gx[c] = fill;
      continue;
    }
    const float g = grad_loss[r * grad_stride];
    const float target_weight = class_weight[t];
    const float row_lse = lse[r];
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      gx[c] = g * weighted_cross_entropy_logit_grad<float>(static_cast<float>(x[c]), row_lse,
                                                           c == t,
                                                           static_cast<float>(class_weight[c]),
                                                           target_weight, weight_sum, smoothing,
                                                           smoothing_over_c);
    }
  }
}

template <typename T>
__global__ void nll_forward_kernel(const T* logp, const int64_t* target,
                                   const T* class_weight, T* loss, int64_t N, int64_t C,
                                   int64_t ignore_index, int64_t* bad_count) {
  for (int64_t r : grid_stride(N)) {
    const int64_t t = target[r];
    switch (classify_target(t, C, ignore_index)) {
      case TargetClass::Ignored:
        loss[r] = 0.0f;
        break;
      case TargetClass::OutOfRange:
        loss[r] = invalid_target_value<float>();
        count_bad_target(bad_count);
        break;
      case TargetClass::Valid:
        loss[r] = (class_weight != nullptr ? static_cast<float>(class_weight[t]) : 1.0f) *
                  nll_row_loss(static_cast<float>(logp[r * C + t]));
        break;
    }
  }
}

template <typename T>
__global__ void nll_backward_kernel(const int64_t* target, const T* class_weight,
                                    const T* grad_loss, int64_t grad_stride, T* grad_logp,
                                    int64_t N, int64_t C, int64_t ignore_index) {
  for (int64_t j : grid_stride(N * C)) {
    const int64_t r = j / C;
    const int64_t t = target[r];
    const TargetClass kind = classify_target(t, C, ignore_index);
    float g = 0.0f;
    if (kind == TargetClass::OutOfRange) {
      g = invalid_target_value<float>();
    } else if (kind == TargetClass::Valid && j - r * C == t) {
      g = -static_cast<float>(grad_loss[r * grad_stride]) *
          (class_weight != nullptr ? static_cast<float>(class_weight[t]) : 1.0f);
    }
    grad_logp[j] = g;
  }
}

template <typename T>
__global__ void target_class_weights_kernel(const int64_t* target, const T* class_weight,
                                            T* out, int64_t N, int64_t C,
                                            int64_t ignore_index) {
  for (int64_t r : grid_stride(N)) {
    const int64_t t = target[r];
    out[r] = classify_target(t, C, ignore_index) == TargetClass::Valid
                 ? static_cast<float>(class_weight[t])
                 : 0.0f;
  }
}

template <typename Loss, typename T>
__global__ void pointwise_forward_kernel(const T* input, const T* target, T* out,
                                         int64_t n) {
  for (int64_t i : grid_stride(n)) {
    out[i] = Loss::forward(static_cast<float>(input[i]), static_cast<float>(target[i]));
  }
}

template <typename Loss, typename T>
__global__ void pointwise_backward_kernel(const T* input, const T* target,
                                          const T* grad_out, int64_t grad_stride,
                                          T* grad_input, int64_t n) {
  for (int64_t i : grid_stride(n)) {
    grad_input[i] = static_cast<float>(grad_out[i * grad_stride]) *
                    Loss::derivative(static_cast<float>(input[i]), static_cast<float>(target[i]));
  }
}

template <typename T>
__global__ void bce_with_logits_forward_kernel(const T* logits, const T* target,
                                               const T* pos_weight, int64_t pos_weight_size,
                                               T* out, int64_t n) {
  for (int64_t i : grid_stride(n)) {
    out[i] = BinaryCrossEntropyWithLogitsLoss::forward(
        static_cast<float>(logits[i]), static_cast<float>(target[i]),
        static_cast<float>(pos_weight[i % pos_weight_size]));
  }
}

template <typename T>
__global__ void bce_with_logits_backward_kernel(const T* logits, const T* target,
                                                const T* pos_weight, int64_t pos_weight_size,
                                                const T* grad_out, int64_t grad_stride,
                                                T* grad_input, int64_t n) {
  for (int64_t i : grid_stride(n)) {
    grad_input[i] = static_cast<float>(grad_out[i * grad_stride]) *
                    BinaryCrossEntropyWithLogitsLoss::derivative(
                        static_cast<float>(logits[i]), static_cast<float>(target[i]),
                        static_cast<float>(pos_weight[i % pos_weight_size]));
  }
}

// One thread per group of four elements, one Philox block per group; see
// Note [Dropout random stream] in kernels/philox.h for why the subsequence is the group
// index (the global thread index on the grid-stride loop's first pass) and the offset is
// 4 * offset. Each group re-initialises its state so the mask does not depend on the
// launch size; for Philox that is counter arithmetic, and the block curand_init computes
// is overwritten before use, so the compiler drops it.
template <typename T>
__global__ void dropout_mask_kernel(T* mask, int64_t n, uint64_t seed, uint64_t offset,
                                    uint64_t threshold, float scale) {
  const int64_t groups = (n + 3) / 4;
  // Four floats store as one float4; four 16-bit values as lanes (8 bytes, no vector type).
  const bool vector_store =
      std::is_same_v<T, float> && reinterpret_cast<uintptr_t>(mask) % sizeof(float4) == 0;
  for (int64_t g : grid_stride(groups)) {
    curandStatePhilox4_32_10_t state;
    curand_init(seed, static_cast<unsigned long long>(g), 4 * offset, &state);
    const uint4 w = curand4(&state);
    const float4 v{
        dropout_keeps(w.x, threshold) ? scale : 0.0f, dropout_keeps(w.y, threshold) ? scale : 0.0f,
        dropout_keeps(w.z, threshold) ? scale : 0.0f, dropout_keeps(w.w, threshold) ? scale : 0.0f};
    const int64_t base = g * 4;
    if (vector_store && base + 4 <= n) {
      if constexpr (std::is_same_v<T, float>) reinterpret_cast<float4*>(mask)[g] = v;
    } else {
      const float lanes[4] = {v.x, v.y, v.z, v.w};
      for (int64_t j = 0; j < 4 && base + j < n; ++j) mask[base + j] = lanes[j];
    }
  }
}

// ---- launchers --------------------------------------------------------------------------

// One atomic per thread that found any: bad values are rare, and the count only has to be
// right, not fast.
template <typename T>
__global__ void count_outside_kernel(const T* x, int64_t n, float lo, float hi,
                                     int64_t* count) {
  unsigned long long bad = 0;
  for (int64_t i : grid_stride(n)) {
    const float v = static_cast<float>(x[i]);
    if (!(v >= lo && v <= hi)) ++bad;  // NaN compares false both ways
  }
  if (bad != 0) atomicAdd(reinterpret_cast<unsigned long long*>(count), bad);
}

template <typename Loss, typename T>
void launch_pointwise_forward(cudaStream_t stream, const T* input, const T* target, T* out,
                              int64_t n) {
  launch_1d(pointwise_forward_kernel<Loss, T>, n, stream, input, target, out, n);
}

template <typename Loss, typename T>
void launch_pointwise_backward(cudaStream_t stream, const T* input, const T* target,
                               const T* grad_out, int64_t grad_stride, T* grad_input,
                               int64_t n) {
  launch_1d(pointwise_backward_kernel<Loss, T>, n, stream, input, target, grad_out, grad_stride,
            grad_input, n);
}

}  // namespace

// ---- entry points -----------------------------------------------------------------------

template <typename T>
void cross_entropy_forward(Context ctx, const T* logits, const int64_t* target,
                           const T* class_weight, T* loss, T* lse, int64_t N,
                           int64_t C, int64_t ignore_index, double label_smoothing,
                           int64_t* bad_count) {
  const auto smoothing = static_cast<float>(label_smoothing);
  if (C <= kWarpRowMaxClasses) {  // Note [Cross-entropy rows by warp]
    if (N <= 0) return;
    const int64_t blocks = std::min<int64_t>((N + kWarpsPerBlock - 1) / kWarpsPerBlock,
                                             int64_t{65535} * 32);
    cross_entropy_forward_warp_kernel<T><<<static_cast<unsigned>(blocks), kRowBlock, 0,
                                           ctx.stream>>>(logits, target, class_weight, loss, lse,
                                                         N, C, ignore_index, smoothing,
                                                         bad_count);
    EMBER_KERNEL_LAUNCH_CHECK();
    return;
  }
  launch_rows<kRowBlock>(cross_entropy_forward_kernel<T>, N, ctx.stream, logits, target,
                         class_weight, loss, lse, N, C, ignore_index, smoothing, bad_count);
}

template <typename T>
void cross_entropy_backward(Context ctx, const T* logits, const int64_t* target,
                            const T* class_weight, const T* lse,
                            const T* grad_loss, int64_t grad_stride, T* grad_logits,
                            int64_t N, int64_t C, int64_t ignore_index,
                            double label_smoothing) {
  // Rounded to float once, exactly as the CPU float path does.
  const float smoothing = static_cast<float>(label_smoothing);
  const float smoothing_over_c =
      C > 0 ? static_cast<float>(label_smoothing / static_cast<double>(C)) : 0.0f;
  if (class_weight != nullptr) {
    launch_rows<kRowBlock>(weighted_cross_entropy_backward_kernel<T>, N, ctx.stream, logits,
                           target, class_weight, lse, grad_loss, grad_stride, grad_logits, N, C,
                           ignore_index, smoothing, smoothing_over_c);
    return;
  }
  launch_1d(cross_entropy_backward_kernel<T>, N * C, ctx.stream, logits, target, lse, grad_loss,
            grad_stride, grad_logits, N, C, ignore_index, smoothing, smoothing_over_c);
}

template <typename T>
void nll_forward(Context ctx, const T* logp, const int64_t* target,
                 const T* class_weight, T* loss, int64_t N, int64_t C,
                 int64_t ignore_index, int64_t* bad_count) {
  launch_1d(nll_forward_kernel<T>, N, ctx.stream, logp, target, class_weight, loss, N, C,
            ignore_index, bad_count);
}

template <typename T>
void nll_backward(Context ctx, const int64_t* target, const T* class_weight,
                  const T* grad_loss, int64_t grad_stride, T* grad_logp, int64_t N,
                  int64_t C, int64_t ignore_index) {
  launch_1d(nll_backward_kernel<T>, N * C, ctx.stream, target, class_weight, grad_loss,
            grad_stride, grad_logp, N, C, ignore_index);
}

template <typename T>
void target_class_weights(Context ctx, const int64_t* target, const T* class_weight,
                          T* out, int64_t N, int64_t C, int64_t ignore_index) {
  launch_1d(target_class_weights_kernel<T>, N, ctx.stream, target, class_weight, out, N, C,
            ignore_index);
}

template <typename T>
void count_outside(Context ctx, const T* x, int64_t n, double lo, double hi, int64_t* count) {
  launch_1d(count_outside_kernel<T>, n, ctx.stream, x, n, static_cast<float>(lo),
            static_cast<float>(hi), count);
}

template <typename T>
void pointwise_loss_forward(Context ctx, PointwiseLoss op, const T* input,
                            const T* target, T* out, int64_t n) {
  cudaStream_t stream = ctx.stream;
  switch (op) {
    case PointwiseLoss::Mse:
      return launch_pointwise_forward<MseLoss, T>(stream, input, target, out, n);
    case PointwiseLoss::L1:
      return launch_pointwise_forward<L1Loss, T>(stream, input, target, out, n);
    case PointwiseLoss::BinaryCrossEntropy:
      return launch_pointwise_forward<BinaryCrossEntropyLoss, T>(stream, input, target, out, n);
    case PointwiseLoss::BinaryCrossEntropyWithLogits:
      return launch_pointwise_forward<BinaryCrossEntropyWithLogitsLoss, T>(stream, input, target,
                                                                           out, n);
  }
  EMBER_INTERNAL_ASSERT(false, "pointwise_loss_forward: unknown PointwiseLoss ",
                        static_cast<int>(op));
}

template <typename T>
void pointwise_loss_backward(Context ctx, PointwiseLoss op, const T* input,
                             const T* target, const T* grad_out, int64_t grad_stride,
                             T* grad_input, int64_t n) {
  cudaStream_t stream = ctx.stream;
  switch (op) {
    case PointwiseLoss::Mse:
      return launch_pointwise_backward<MseLoss, T>(stream, input, target, grad_out, grad_stride,
                                                grad_input, n);
    case PointwiseLoss::L1:
      return launch_pointwise_backward<L1Loss, T>(stream, input, target, grad_out, grad_stride,
                                               grad_input, n);
    case PointwiseLoss::BinaryCrossEntropy:
      return launch_pointwise_backward<BinaryCrossEntropyLoss, T>(stream, input, target, grad_out,
                                                               grad_stride, grad_input, n);
    case PointwiseLoss::BinaryCrossEntropyWithLogits:
      return launch_pointwise_backward<BinaryCrossEntropyWithLogitsLoss, T>(
          stream, input, target, grad_out, grad_stride, grad_input, n);
  }
  EMBER_INTERNAL_ASSERT(false, "pointwise_loss_backward: unknown PointwiseLoss ",
                        static_cast<int>(op));
}

template <typename T>
void bce_with_logits_forward(Context ctx, const T* logits, const T* target,
                             const T* pos_weight, int64_t pos_weight_size, T* out,
                             int64_t n) {
  EMBER_INTERNAL_ASSERT(pos_weight != nullptr && (n == 0 || pos_weight_size > 0),
                        "bce_with_logits_forward needs a pos_weight");
  launch_1d(bce_with_logits_forward_kernel<T>, n, ctx.stream, logits, target, pos_weight,
            pos_weight_size, out, n);
}

template <typename T>
void bce_with_logits_backward(Context ctx, const T* logits, const T* target,
                              const T* pos_weight, int64_t pos_weight_size,
                              const T* grad_out, int64_t grad_stride, T* grad_input,
                              int64_t n) {
  EMBER_INTERNAL_ASSERT(pos_weight != nullptr && (n == 0 || pos_weight_size > 0),
                        "bce_with_logits_backward needs a pos_weight");
  launch_1d(bce_with_logits_backward_kernel<T>, n, ctx.stream, logits, target, pos_weight,
            pos_weight_size, grad_out, grad_stride, grad_input, n);
}

template <typename T>
void dropout_mask(Context ctx, T* mask, int64_t n, double p, uint64_t seed,
                  uint64_t offset) {
  EMBER_CHECK(p >= 0.0 && p < 1.0, "dropout_mask: p = ", p, " must lie in [0, 1)");
  EMBER_CHECK(offset < (uint64_t{1} << 62), "dropout_mask: offset ", offset, " must be below 2^62");
  launch_1d(dropout_mask_kernel<T>, (n + 3) / 4, ctx.stream, mask, n, seed, offset,
            dropout_threshold(p), static_cast<float>(1.0 / (1.0 - p)));
}

#define EMBER_LOSS_INSTANTIATE(T)                                                            \
  template void cross_entropy_forward<T>(Context, const T*, const int64_t*, const T*, T*, T*, \
                                         int64_t, int64_t, int64_t, double, int64_t*);        \
  template void cross_entropy_backward<T>(Context, const T*, const int64_t*, const T*,      \
                                          const T*, const T*, int64_t, T*, int64_t, int64_t, \
                                          int64_t, double);                                  \
  template void nll_forward<T>(Context, const T*, const int64_t*, const T*, T*, int64_t,    \
                               int64_t, int64_t, int64_t*);                                  \
  template void nll_backward<T>(Context, const int64_t*, const T*, const T*, int64_t, T*,   \
                                int64_t, int64_t, int64_t);                                  \
  template void target_class_weights<T>(Context, const int64_t*, const T*, T*, int64_t,     \
                                        int64_t, int64_t);                                   \
  template void count_outside<T>(Context, const T*, int64_t, double, double, int64_t*);     \
  template void pointwise_loss_forward<T>(Context, PointwiseLoss, const T*, const T*, T*,   \
                                          int64_t);                                          \
  template void pointwise_loss_backward<T>(Context, PointwiseLoss, const T*, const T*,      \
                                           const T*, int64_t, T*, int64_t);                  \
  template void bce_with_logits_forward<T>(Context, const T*, const T*, const T*, int64_t,  \
                                           T*, int64_t);                                     \
  template void bce_with_logits_backward<T>(Context, const T*, const T*, const T*, int64_t, \
                                            const T*, int64_t, T*, int64_t);                 \
  template void dropout_mask<T>(Context, T*, int64_t, double, uint64_t, uint64_t);
EMBER_LOSS_INSTANTIATE(float)
EMBER_LOSS_INSTANTIATE(Half)
EMBER_LOSS_INSTANTIATE(BFloat16)
#undef EMBER_LOSS_INSTANTIATE

}  // namespace ember::kernels::cuda
