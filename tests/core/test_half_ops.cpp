// float16 and bfloat16 on the CPU for the convolution, pooling, normalization, loss,
// dropout, embedding and recurrent ops: forward and backward against the same op in
// float32 on the same (16-bit) values, within the dtype's tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/half.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"

#include "support/allclose.h"
#include "support/check.h"

namespace {

using namespace ember;
using ember::testing::allclose;
using ember::testing::values;

// As in test_half_tensor.cpp: one rounding of the result (2^-11 relative for float16, 2^-8
// for bfloat16), a few more in a backward pass.
ember::testing::Tolerance tolerance(DType dt, double scale) {
  const double t = (dt == kFloat16 ? 2e-3 : 1.6e-2) * scale;
  return {t, t};
}

class Half16Ops : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(Dtypes, Half16Ops, ::testing::Values(kFloat16, kBFloat16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// Random values in [lo, hi), as `dt` (and so exactly representable in it).
Tensor random16(const Shape& shape, DType dt, double lo = -2.0, double hi = 2.0) {
  return (rand(shape) * (hi - lo) + lo).to(dt);
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// y = f(inputs) with the 16-bit inputs and with their float32 copies (integer inputs are
// passed as they are); then the gradients of sum(y * w) for every floating input.
void check_against_float32(const Fn& f, const std::vector<Tensor>& in16, const std::string& what,
                           double scale = 1.0) {
  const DType dt = in16[0].dtype();
  const ember::testing::Tolerance tol = tolerance(dt, scale);
  std::vector<Tensor> a, b;
  for (const Tensor& t : in16) {
    if (is_reduced_float(t.dtype())) {
      a.push_back(t.detach().requires_grad_());
      b.push_back(t.to(kFloat32).detach().requires_grad_());
    } else {
      a.push_back(t);
      b.push_back(t);
    }
  }
  Tensor y = f(a);
  Tensor y32 = f(b);
  ASSERT_EQ(y.dtype(), dt) << what;
  EXPECT_TRUE(allclose(values(y), values(y32), tol)) << what << " forward";
  Tensor w = random16(y.shape(), dt, 0.5, 1.5);
  (y * w).sum().backward();
  (y32 * w.to(kFloat32)).sum().backward();
  for (size_t i = 0; i < a.size(); ++i) {
    // Inputs no gradient flows into (a BCE target, class weights) have none in either.
    if (!is_reduced_float(a[i].dtype()) || !b[i].grad().defined()) continue;
    ASSERT_TRUE(a[i].grad().defined()) << what << " input " << i;
    EXPECT_EQ(a[i].grad().dtype(), dt) << what << " input " << i;
    EXPECT_TRUE(allclose(values(a[i].grad()), values(b[i].grad()), tol))
        << what << " backward, input " << i;
  }
}

TEST_P(Half16Ops, LinearWithItsFusedActivationComputesInFloatAndRoundsOnce) {
  const DType dt = GetParam();
  for (LinearActivation act : {LinearActivation::kNone, LinearActivation::kRelu,
                               LinearActivation::kGelu, LinearActivation::kGeluTanh}) {
    const std::string what = "linear activation " + std::to_string(static_cast<int>(act));
    check_against_float32(
        [act](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2], act); },
        {random16({9, 40}, dt), random16({24, 40}, dt, -0.5, 0.5), random16({24}, dt)}, what,
        4.0);
    // Rounded once: ReLU of the rounded sum is the rounded ReLU, so the fused op equals the
    // composed one bit for bit; the tanh GELU is applied before rounding (one rounding,
    // where the composed op rounds twice).
    const Tensor x = random16({9, 40}, dt), w = random16({24, 40}, dt, -0.5, 0.5),
                 b = random16({24}, dt);
    if (act == LinearActivation::kRelu) {
      EXPECT_EQ(values(linear(x, w, b, act)), values(relu(linear(x, w, b))));
    }
    if (act == LinearActivation::kGeluTanh) {
      const Tensor z32 = linear(x.to(kFloat32), w.to(kFloat32), b.to(kFloat32));
      EXPECT_EQ(values(linear(x, w, b, act)), values(gelu(z32, "tanh").to(dt)));
    }
  }
}

TEST_P(Half16Ops, Conv2dComputesInFloatAndRoundsOnce) {
  const DType dt = GetParam();
  manual_seed(11);
  const Tensor x = random16({2, 4, 6, 6}, dt), w = random16({6, 4, 3, 3}, dt, -0.5, 0.5);
  const Tensor bias = random16({6}, dt);
  // Sums of 36 products: relative to the largest terms, not to the (cancelling) result.
  check_against_float32([](const auto& t) { return conv2d(t[0], t[1], t[2], {.padding = {1, 1}}); },
                        {x, w, bias}, "conv2d", 4.0);
  const Tensor wg = random16({4, 2, 3, 3}, dt, -0.5, 0.5);
  check_against_float32(
      [](const auto& t) { return conv2d(t[0], t[1], Tensor(), {.stride = {2, 2}, .groups = 2}); },
      {x, wg}, "grouped strided conv2d", 4.0);
}

TEST_P(Half16Ops, Pooling) {
  const DType dt = GetParam();
  manual_seed(12);
  const Tensor x = random16({2, 3, 7, 7}, dt);
  check_against_float32([](const auto& t) { return max_pool2d(t[0]); }, {x}, "max_pool2d 2x2");
  check_against_float32(
      [](const auto& t) {
        return max_pool2d(t[0], {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}});
      },
      {x}, "max_pool2d 3x3 overlapping");
  check_against_float32(
      [](const auto& t) { return avg_pool2d(t[0], {.kernel = {3, 3}, .padding = {1, 1}}); },
      {x}, "avg_pool2d");
  check_against_float32([](const auto& t) { return adaptive_avg_pool2d(t[0], {3, 2}); }, {x},
                        "adaptive_avg_pool2d");
}

TEST_P(Half16Ops, BatchNormAndLayerNorm) {
  const DType dt = GetParam();
  manual_seed(13);
  const Tensor x = random16({4, 3, 5}, dt, -1.0, 3.0);
  const Tensor w = random16({3}, dt, 0.5, 1.5), b = random16({3}, dt);
  // The normalized output is O(1) whatever the input's scale: the backward subtracts
  // nearly equal sums, so it gets a wider margin.
  check_against_float32(
      [](const auto& t) { return batch_norm(t[0], Tensor(), Tensor(), t[1], t[2], true); },
      {x, w, b}, "batch_norm (training)", 4.0);
  // Running statistics are updated from float statistics and rounded once.
  Tensor rm = zeros({3}, {.dtype = dt}), rv = ones({3}, {.dtype = dt});
  Tensor rm32 = zeros({3}), rv32 = ones({3});
  batch_norm(x, rm, rv, w, b, true, 0.5);
  batch_norm(x.to(kFloat32), rm32, rv32, w.to(kFloat32), b.to(kFloat32), true, 0.5);
  EXPECT_TRUE(allclose(values(rm), values(rm32), tolerance(dt, 1.0)));
  EXPECT_TRUE(allclose(values(rv), values(rv32), tolerance(dt, 1.0)));
  check_against_float32(
      [&](const auto& t) {
        return batch_norm(t[0], rm.to(t[0].dtype()), rv.to(t[0].dtype()), t[1], t[2], false);
      },
      {x, w, b}, "batch_norm (eval)", 2.0);
  const Tensor lw = random16({5}, dt, 0.5, 1.5), lb = random16({5}, dt);
  check_against_float32([](const auto& t) { return layer_norm(t[0], {5}, t[1], t[2]); },
                        {x, lw, lb}, "layer_norm", 4.0);
}

TEST_P(Half16Ops, LossesAccumulateInFloat) {
  const DType dt = GetParam();
  manual_seed(14);
  const Tensor logits = random16({9, 5}, dt, -3.0, 3.0);
  const Tensor target = Tensor::from_vector<int64_t>({0, 4, 2, 1, 3, 3, -100, 0, 2}, {9});
  const Tensor cw = random16({5}, dt, 0.5, 2.0);
  check_against_float32([](const auto& t) { return cross_entropy(t[0], t[1]); }, {logits, target},
                        "cross_entropy");
  check_against_float32(
      [](const auto& t) {
        return cross_entropy(t[0], t[1], {.label_smoothing = 0.1, .weight = t[2].detach()});
      },
      {logits, target, cw.detach()}, "cross_entropy (weighted, smoothed)", 2.0);
  check_against_float32(
      [](const auto& t) { return cross_entropy(t[0], t[1], {.reduction = Reduction::None}); },
      {logits, target}, "cross_entropy (none)");
  check_against_float32([](const auto& t) { return nll_loss(log_softmax(t[0], 1), t[1]); },
                        {logits, target}, "nll_loss");
  const Tensor a = random16({4, 6}, dt), b = random16({4, 6}, dt);
  check_against_float32([](const auto& t) { return mse_loss(t[0], t[1]); }, {a, b}, "mse_loss");
  check_against_float32([](const auto& t) { return l1_loss(t[0], t[1], Reduction::Sum); },
                        {a, b}, "l1_loss");
  const Tensor p = random16({4, 6}, dt, 0.05, 0.95), y = random16({4, 6}, dt, 0.0, 1.0);
  check_against_float32([](const auto& t) { return binary_cross_entropy(t[0], t[1]); }, {p, y},
                        "binary_cross_entropy");
  const Tensor pw = random16({6}, dt, 0.5, 3.0);
  check_against_float32(
      [](const auto& t) {
        return binary_cross_entropy_with_logits(t[0], t[1], {.pos_weight = t[2].detach()});
      },
      {a, y, pw.detach()}, "binary_cross_entropy_with_logits");
}

// A mean over more rows than the 16-bit type counts exactly (bfloat16 stops at 256):
// the divisor and the quotient are float32.
TEST_P(Half16Ops, MeanLossOverManyRowsDividesExactly) {
  const DType dt = GetParam();
  const Tensor x = full({2051}, 0.5, {.dtype = dt});
  EXPECT_EQ(mse_loss(x, zeros({2051}, {.dtype = dt})).item(), 0.25);
  const Tensor logits = zeros({2051, 4}, {.dtype = dt});
  const Tensor target = zeros({2051}, {.dtype = kInt64});
  EXPECT_NEAR(cross_entropy(logits, target).item(), std::log(4.0), 1e-2);
}

TEST_P(Half16Ops, DropoutKeepsTheFloat32Mask) {
  const DType dt = GetParam();
  const Tensor x = ones({64}, {.dtype = dt});
  manual_seed(15);
  Tensor y = dropout(x, 0.25, true);
  manual_seed(15);
  Tensor y32 = dropout(x.to(kFloat32), 0.25, true);
  EXPECT_EQ(y.dtype(), dt);
  EXPECT_TRUE(allclose(values(y), values(y32), tolerance(dt, 1.0)));
}

TEST_P(Half16Ops, EmbeddingGathersAndSumsRepeatedRowsInFloat) {
  const DType dt = GetParam();
  manual_seed(16);
  const Tensor table = random16({6, 3}, dt);
  const Tensor idx = Tensor::from_vector<int64_t>({1, 4, 1, 1, 0}, {5});
  check_against_float32([](const auto& t) { return embedding(t[0], t[1]); }, {table, idx},
                        "embedding");
  // 600 repeats of one row: a 16-bit running sum of 1s would stop at 256 (bfloat16).
  Tensor w = ones({2, 2}, {.dtype = dt}).requires_grad_();
  embedding(w, zeros({600}, {.dtype = kInt64})).sum().backward();
  EXPECT_EQ(w.grad().to(kFloat32).to_vector<float>()[0], 600.0f);
}

TEST_P(Half16Ops, RecurrentNetworks) {
  const DType dt = GetParam();
  for (RnnMode mode : {RnnMode::Lstm, RnnMode::Gru, RnnMode::RnnTanh}) {
    manual_seed(17);
    RnnParams p{.mode = mode, .input_size = 3, .hidden_size = 4};
    std::vector<Tensor> in{random16({5, 2, 3}, dt)};
    for (const Shape& s : rnn_weight_shapes(p)) in.push_back(random16(s, dt, -0.5, 0.5));
    check_against_float32(
        [&](const auto& t) {
          const std::vector<Tensor> weights(t.begin() + 1, t.end());
          return rnn(t[0], Tensor(), Tensor(), weights, {}, p).output;
        },
        in, "rnn mode " + std::to_string(static_cast<int>(mode)), 4.0);
  }
}

}  // namespace
