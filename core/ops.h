// Every differentiable op ember defines (the definitions live in core/ops/<family>.cpp).
// Names and semantics follow PyTorch's. Binary ops broadcast by NumPy rules.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ember/core/base/export.h"
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
// GELU, exact (0.5 x (1 + erf(x / sqrt 2))) or, with approximate = "tanh", PyTorch's tanh
// approximation 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
EMBER_API Tensor gelu(const Tensor& x, std::string_view approximate = "none");
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
// The activation linear() applies after the bias, the same as calling it on linear()'s
// result. On a GPU the bias and the activation run inside the GEMM (cuBLASLt's epilogue),
// and the backward computes the bias gradient inside the weight-gradient GEMM (Note [Fused
// linear] in core/ops/linalg.cpp). kGeluTanh is gelu(x, "tanh"), the GELU cuBLASLt fuses;
// the exact kGelu runs as its own kernel after the fused bias.
enum class LinearActivation { kNone, kRelu, kGelu, kGeluTanh };
EMBER_API Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                        LinearActivation activation);

// --- joining and splitting (core/ops/join.cpp) ---------------------------------------------
// Concatenates along an existing dimension; all other sizes must match.
EMBER_API Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Joins same-shaped tensors along a new dimension `dim`.
EMBER_API Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Views of consecutive pieces of `dim` with the given sizes (they must add up to its size).
EMBER_API std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes,
                                    int64_t dim = 0);
// `chunks` views of ceil(size / chunks) along `dim` (the last may be smaller), as PyTorch.
EMBER_API std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);

// --- embedding (core/ops/embedding.cpp) ---------------------------------------------------
// weight [num_embeddings, dim], indices int64 of any shape -> [*indices.shape, dim]. Row
// `padding_idx` (when >= 0) receives no gradient.
EMBER_API Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx = -1);

// --- recurrent networks (core/ops/rnn.cpp) ------------------------------------------------
enum class RnnMode { RnnTanh, RnnRelu, Lstm, Gru };
struct RnnParams {
  RnnMode mode = RnnMode::Lstm;
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;
  double dropout = 0.0;   // on the outputs of every layer but the last, when training
  bool training = false;
  bool bidirectional = false;
  std::string name = "rnn";  // how errors name the caller, e.g. "LSTM(28, 128)"
};
struct RnnResult {
  Tensor output;  // [T, N, D * H] ([N, T, D * H] batch-first); zero at padded steps
  Tensor h_n;     // [num_layers * D, N, H], the state at each sequence's last step
  Tensor c_n;     // LSTM only, like h_n
};
// Gates per cell: 1 (RNN), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n).
EMBER_API int64_t rnn_gate_count(RnnMode mode);
// The shapes `weights` must have, in PyTorch's order: for each layer, each direction:
// weight_ih [G * H, in], weight_hh [G * H, H], then (with bias) bias_ih, bias_hh [G * H].
EMBER_API std::vector<Shape> rnn_weight_shapes(const RnnParams& p);
// A multi-layer (bidirectional) RNN, LSTM or GRU as PyTorch defines them. x: [T, N, in]
// ([N, T, in] batch-first); hx (and cx for an LSTM): [num_layers * D, N, H] or undefined
// for zeros; `lengths`: empty (every sequence has T steps) or one length in [1, T] per
// sequence, in any order, the steps past it being padding. cuDNN on the GPU; on the CPU
// the cells are composed from the differentiable ops above (the reference).
EMBER_API RnnResult rnn(const Tensor& x, const Tensor& hx, const Tensor& cx,
                        const std::vector<Tensor>& weights, const std::vector<int64_t>& lengths,
                        const RnnParams& p);
// The same composition of ops on any device (what rnn() runs on the CPU).
EMBER_API RnnResult rnn_reference(const Tensor& x, const Tensor& hx, const Tensor& cx,
                                  const std::vector<Tensor>& weights,
                                  const std::vector<int64_t>& lengths, const RnnParams& p);
// See Note [RNN weight buffer] in core/ops/rnn_cudnn.cpp. CUDA float32 weights only: true when
// `weights` are already views into one buffer in cuDNN's layout (rnn() then uses it in
// place); rnn_flatten_weights() makes that buffer (a copy of the values) and returns each
// weight's view into it, or no views when cuDNN's layout cannot hold them as views.
EMBER_API bool rnn_weights_flat(const std::vector<Tensor>& weights, const RnnParams& p);
struct RnnFlatWeights {
  Tensor buffer;
  std::vector<Tensor> views;  // one per weight, same order and shapes, or empty
};
EMBER_API RnnFlatWeights rnn_flatten_weights(const std::vector<Tensor>& weights,
                                             const RnnParams& p);

// --- losses (core/ops/loss.cpp) ---------------------------------------------------------
enum class Reduction { None, Mean, Sum };
struct CrossEntropyOptions {
  Reduction reduction = Reduction::Mean;
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  // PyTorch's `weight`: a rescaling weight per class, [C] float with the input's dtype and
  // device (no gradient flows into it). 'mean' divides by the sum of the targets' weights.
  Tensor weight;
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
struct BCEWithLogitsOptions {
  Reduction reduction = Reduction::Mean;
  // PyTorch's pos_weight, the weight of the positive term: broadcastable to the logits
  // (typically [C], one per class of the last dimension), their dtype and device, no
  // gradient. The loss becomes -(pos_weight t log s(x) + (1 - t) log(1 - s(x))).
  Tensor pos_weight;
};
EMBER_API Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                                  BCEWithLogitsOptions opts);

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
