// Every differentiable op ember defines (the definitions live in core/ops/<family>.cpp).
// Names and semantics follow PyTorch's. Binary ops broadcast by NumPy rules.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ember/core/export.h"
#include "ember/core/tensor.h"

namespace ember {

// --- elementwise (core/ops/elementwise.cpp) ---------------------------------------------
EMBER_API Tensor add(const Tensor& a, const Tensor& b);
EMBER_API Tensor sub(const Tensor& a, const Tensor& b);
EMBER_API Tensor mul(const Tensor& a, const Tensor& b);
EMBER_API Tensor div(const Tensor& a, const Tensor& b);
EMBER_API Tensor maximum(const Tensor& a, const Tensor& b);
EMBER_API Tensor minimum(const Tensor& a, const Tensor& b);
EMBER_API Tensor add(const Tensor& a, double b);
EMBER_API Tensor mul(const Tensor& a, double b);
EMBER_API Tensor neg(const Tensor& x);
EMBER_API Tensor exp(const Tensor& x);
EMBER_API Tensor log(const Tensor& x);
EMBER_API Tensor sqrt(const Tensor& x);
EMBER_API Tensor abs(const Tensor& x);
EMBER_API Tensor pow(const Tensor& x, double exponent);
EMBER_API Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);
// Comparisons give bool tensors (not differentiable).
EMBER_API Tensor eq(const Tensor& a, const Tensor& b);
EMBER_API Tensor ne(const Tensor& a, const Tensor& b);
EMBER_API Tensor lt(const Tensor& a, const Tensor& b);
EMBER_API Tensor le(const Tensor& a, const Tensor& b);
EMBER_API Tensor gt(const Tensor& a, const Tensor& b);
EMBER_API Tensor ge(const Tensor& a, const Tensor& b);

// The broadcast shape of a and b, or a ShapeError naming `op` and both shapes.
EMBER_API Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Sums `x` down to `shape` (the reverse of broadcasting); used by backward rules.
EMBER_API Tensor sum_to(const Tensor& x, const Shape& shape);

// --- activations (core/ops/activation.cpp) ----------------------------------------------
EMBER_API Tensor relu(const Tensor& x);
EMBER_API Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
EMBER_API Tensor sigmoid(const Tensor& x);
EMBER_API Tensor tanh(const Tensor& x);
EMBER_API Tensor gelu(const Tensor& x);
EMBER_API Tensor softmax(const Tensor& x, int64_t dim = -1);
EMBER_API Tensor log_softmax(const Tensor& x, int64_t dim = -1);

// --- reductions (core/ops/reduce.cpp) ---------------------------------------------------
// Over all elements (rank-0 result) or over `dims`. Bool/uint8/int32 sums give int64.
EMBER_API Tensor sum(const Tensor& x);
EMBER_API Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
EMBER_API Tensor mean(const Tensor& x);
EMBER_API Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
EMBER_API Tensor max(const Tensor& x);
EMBER_API Tensor min(const Tensor& x);
struct ValuesIndices {
  Tensor values;
  Tensor indices;  // int64
};
EMBER_API ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
EMBER_API ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
EMBER_API Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
EMBER_API Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);

// --- linear algebra (core/ops/linalg.cpp) -----------------------------------------------
// 1-D·1-D, 2-D@2-D, batched 3-D@3-D (and 3-D@2-D, 2-D@3-D broadcast over the batch).
EMBER_API Tensor matmul(const Tensor& a, const Tensor& b);
// y = x @ weight^T + bias: x [N, in], weight [out, in], bias [out] (may be undefined).
EMBER_API Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// --- losses (core/ops/loss.cpp) ---------------------------------------------------------
enum class Reduction { None, Mean, Sum };
struct CrossEntropyOptions {
  Reduction reduction = Reduction::Mean;
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
};
// logits [N, C], target [N] int64 class indices. Fused log-softmax + NLL.
EMBER_API Tensor cross_entropy(const Tensor& logits, const Tensor& target,
                               CrossEntropyOptions opts = {});
// log_probs [N, C], target [N] int64.
EMBER_API Tensor nll_loss(const Tensor& log_probs, const Tensor& target,
                          CrossEntropyOptions opts = {});
EMBER_API Tensor mse_loss(const Tensor& input, const Tensor& target,
                          Reduction reduction = Reduction::Mean);
EMBER_API Tensor l1_loss(const Tensor& input, const Tensor& target,
                         Reduction reduction = Reduction::Mean);
// input holds probabilities in [0, 1].
EMBER_API Tensor binary_cross_entropy(const Tensor& input, const Tensor& target,
                                      Reduction reduction = Reduction::Mean);
EMBER_API Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                                  Reduction reduction = Reduction::Mean);

// --- dropout (core/ops/dropout.cpp) -----------------------------------------------------
// Zeroes each element with probability p and scales the rest by 1/(1-p) when `training`;
// identity otherwise. Philox-based on both devices (seeded by manual_seed).
EMBER_API Tensor dropout(const Tensor& x, double p = 0.5, bool training = true);

// --- convolution, pooling, normalization (core/ops/conv.cpp, pool.cpp, norm.cpp) -------------
// cuDNN on the GPU, im2col + GEMM (and plain loops) on the CPU.
struct Conv2dParams {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};   // symmetric zero padding (top/bottom, left/right)
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
  // "same" output size for stride 1: the padding is computed from the kernel and
  // dilation, with the odd extra pixel on the bottom/right as PyTorch does.
  bool same = false;
};
// x [N, C, H, W], weight [O, C / groups, kH, kW], bias [O] (may be undefined) -> [N, O, H', W'].
EMBER_API Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                        Conv2dParams params = {});

struct Pool2dParams {
  std::array<int64_t, 2> kernel{2, 2};
  std::array<int64_t, 2> stride{0, 0};   // 0 means "equal to the kernel", like PyTorch's None
  std::array<int64_t, 2> padding{0, 0};
  bool ceil_mode = false;
  bool count_include_pad = true;         // avg pooling only
};
EMBER_API Tensor max_pool2d(const Tensor& x, Pool2dParams params = {});
EMBER_API Tensor avg_pool2d(const Tensor& x, Pool2dParams params = {});
// x [N, C, H, W] -> [N, C, out_h, out_w] with PyTorch's adaptive bin boundaries.
EMBER_API Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);

// x [N, C] or [N, C, L] or [N, C, H, W]. In training mode normalizes with the batch
// statistics and updates running_mean/running_var in place (if defined) with `momentum`
// (PyTorch's convention: new = (1 - momentum) * old + momentum * batch, unbiased var);
// in eval mode uses the running statistics. weight/bias [C] may be undefined.
EMBER_API Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                            const Tensor& weight, const Tensor& bias, bool training,
                            double momentum = 0.1, double eps = 1e-5);
// Normalizes over the last normalized_shape.size() dims; weight/bias of normalized_shape.
EMBER_API Tensor layer_norm(const Tensor& x, const Shape& normalized_shape,
                            const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                            double eps = 1e-5);

// --- operators ----------------------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(double a, const Tensor& b) { return add(neg(b), a); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator-(const Tensor& x) { return neg(x); }

}  // namespace ember
