// The enums and small POD structs that name a kernel's operation and describe
// strided/broadcast indexing. Shared by the CPU and CUDA kernels and by core/ops.
#pragma once

#include <cstdint>

namespace ember::kernels {

// Unary elementwise ops. Forward: y = f(x; p). Backward: grad_x = grad_y * f'(x, y; p).
enum class UnaryOp : int {
  Neg,        // -x
  Exp,        // e^x
  Log,        // ln x
  Sqrt,       // sqrt x
  Abs,        // |x|          (derivative: sign(x), 0 at 0)
  Pow,        // x^p.a
  Clamp,      // min(max(x, p.a), p.b)  (derivative 1 inside [a, b], else 0)
  Relu,       // max(x, 0)    (derivative 0 at 0)
  LeakyRelu,  // x > 0 ? x : p.a * x
  Sigmoid,    // 1 / (1 + e^-x)
  Tanh,       // tanh x
  Gelu,       // exact: 0.5 x (1 + erf(x / sqrt 2))
  GeluTanh,   // tanh approximation: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
  AddScalar,  // x + p.a
  MulScalar,  // x * p.a
};

struct UnaryParams {
  double a = 0.0;
  double b = 0.0;
};

// The activation a GEMM applies on the way out, after the bias (kernels::cpu/cuda::
// gemm_bias_act): cuBLASLt's RELU_BIAS and GELU_BIAS epilogues, whose GELU is the tanh
// approximation.
enum class GemmActivation : int { kNone, kRelu, kGeluTanh };

// The elementwise op an activation other than kNone is (its forward and derivative).
constexpr UnaryOp unary_op_of(GemmActivation act) {
  return act == GemmActivation::kRelu ? UnaryOp::Relu : UnaryOp::GeluTanh;
}

// Binary elementwise ops with NumPy broadcasting (see BroadcastIndex).
enum class BinaryOp : int { Add, Sub, Mul, Div, Maximum, Minimum };

// Comparisons: output is bool (stored as uint8_t 0/1 in a `bool` buffer).
enum class CompareOp : int { Eq, Ne, Lt, Le, Gt, Ge };

// Reductions over the middle axis of a [outer, n, inner] view of a contiguous tensor.
enum class ReduceOp : int { Sum, Mean, Max, Min };

// Pointwise losses: out[i] = loss(input[i], target[i]) (unreduced).
enum class PointwiseLoss : int {
  Mse,                  // (x - t)^2
  L1,                   // |x - t|
  BinaryCrossEntropy,   // -(t log x + (1 - t) log(1 - x)), logs clamped at -100 like PyTorch
  BinaryCrossEntropyWithLogits,  // max(x,0) - x t + log(1 + e^-|x|)
};

inline constexpr int kMaxDims = 8;

// Indexing for an op whose output is contiguous with `sizes` and whose inputs are read
// through their own strides (in elements). A broadcast dimension has stride 0.
// Rank 0 is ndim == 0 (one element). Element i of the output lives at the offsets
// obtained by unravelling i over `sizes` (last dimension fastest).
struct BroadcastIndex {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t stride_a[kMaxDims] = {};
  int64_t stride_b[kMaxDims] = {};
};

// Indexing for a strided gather into a contiguous output (used by contiguous()).
struct StridedIndex {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
};

}  // namespace ember::kernels
