// float16 and bfloat16 tensors on the CPU: conversion, factories, item/to_vector, printing,
// nn::Module::to(dtype); and every op that computes in them, forward and backward, against
// the same op in float32 on the same (16-bit) values, within the dtype's tolerance (the
// convolution, pooling, norm, loss, dropout, embedding and RNN ops: test_half_ops.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/half.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"
#include "ember/layers/layers.h"
#include "ember/layers/module.h"

#include "support/allclose.h"
#include "support/check.h"

namespace {

using namespace ember;
using ember::testing::contains;
using ember::testing::allclose;
using ember::testing::error_of;
using ember::testing::values;

// One rounding of the result separates a 16-bit op from float32 on the same inputs
// (2^-11 relative for float16, 2^-8 for bfloat16); a backward pass rounds a few
// intermediates more.
ember::testing::Tolerance tolerance(DType dt) {
  return dt == kFloat16 ? ember::testing::Tolerance{2e-3, 2e-3}
                        : ember::testing::Tolerance{1.6e-2, 1.6e-2};
}

class Half16 : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(Dtypes, Half16, ::testing::Values(kFloat16, kBFloat16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// --- tensors -------------------------------------------------------------------------------

TEST_P(Half16, ToAndBackRoundsToNearestAndIsExactForRepresentableValues) {
  const DType dt = GetParam();
  const std::vector<float> v = {0.0f, -0.0f, 1.0f, -2.5f, 0.1f, 1e5f, INFINITY, NAN};
  Tensor h = Tensor::from_vector(v, {8}).to(dt);
  EXPECT_EQ(h.dtype(), dt);
  EXPECT_EQ(h.element_size(), 2u);
  const std::vector<float> back = h.to(kFloat32).to_vector<float>();
  for (size_t i = 0; i < v.size(); ++i) {
    const float want = dt == kFloat16 ? float(Half(v[i])) : float(BFloat16(v[i]));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(back[i]));
    } else {
      EXPECT_EQ(back[i], want) << i;
    }
  }
  EXPECT_EQ(back[4] == 0.1f, false);        // rounded
  EXPECT_EQ(std::isinf(back[5]), dt == kFloat16);  // 1e5 overflows float16 only
  // 16-bit -> float64 -> 16-bit and to integers and bool.
  EXPECT_EQ(h.to(kFloat64).to(dt).to(kFloat32).to_vector<float>()[3], -2.5f);
  EXPECT_EQ(Tensor::from_vector<float>({-2.7f, 3.9f}, {2}).to(dt).to(kInt64).to_vector<int64_t>(),
            (std::vector<int64_t>{-2, 3}));
  EXPECT_EQ(Tensor::from_vector<int64_t>({7, -3}, {2}).to(dt).to(kFloat32).to_vector<float>(),
            (std::vector<float>{7, -3}));
  EXPECT_EQ(h.to(kBool).to(kUInt8).to_vector<uint8_t>(),
            (std::vector<uint8_t>{0, 0, 1, 1, 1, 1, 1, 1}));
  // float16 <-> bfloat16 goes through float.
  const DType other = dt == kFloat16 ? kBFloat16 : kFloat16;
  EXPECT_EQ(h.to(other).to(kFloat32).to_vector<float>()[3], -2.5f);
}

TEST_P(Half16, FactoriesItemDataAndToVector) {
  const DType dt = GetParam();
  Tensor z = zeros({2, 3}, {.dtype = dt});
  Tensor o = ones({2}, {.dtype = dt});
  Tensor f = full({3}, 0.5, {.dtype = dt});
  Tensor e = empty({4}, {.dtype = dt});
  EXPECT_EQ(z.dtype(), dt);
  EXPECT_EQ(e.nbytes(), 8u);
  EXPECT_EQ(values(z), std::vector<double>(6, 0.0));
  EXPECT_EQ(values(o), (std::vector<double>{1, 1}));
  EXPECT_EQ(values(f), (std::vector<double>{0.5, 0.5, 0.5}));
  EXPECT_EQ(scalar_tensor(3.0, {.dtype = dt}).item(), 3.0);
  if (dt == kFloat16) {
    Tensor t = Tensor::from_vector<Half>({Half(1.5f), Half(-4.0f)}, {2});
    EXPECT_EQ(t.dtype(), kFloat16);
    EXPECT_EQ(t.data<Half>()[1].bits(), Half(-4.0f).bits());
    EXPECT_EQ(t.to_vector<Half>()[0].bits(), 0x3E00);
    EXPECT_EQ(t.select(0, 1).item<Half>().bits(), 0xC400);
    EXPECT_EQ(t.select(0, 0).item<float>(), 1.5f);
    EXPECT_TRUE(contains(error_of<DTypeError>([&] { t.data<BFloat16>(); }), "float16"));
  } else {
    Tensor t = Tensor::from_vector<BFloat16>({BFloat16(1.5f), BFloat16(-4.0f)}, {2});
    EXPECT_EQ(t.dtype(), kBFloat16);
    EXPECT_EQ(t.data<BFloat16>()[1].bits(), BFloat16(-4.0f).bits());
    EXPECT_EQ(t.to_vector<BFloat16>()[0].bits(), 0x3FC0);
    EXPECT_EQ(t.select(0, 1).item<BFloat16>().bits(), 0xC080);
    EXPECT_TRUE(contains(error_of<DTypeError>([&] { t.to_vector<float>(); }), "bfloat16"));
  }
}

TEST(Half16Printing, PrintsValuesWithTheDtypeSuffix) {
  Tensor b = Tensor::from_vector<float>({1.5f, 2.0f}, {2}).to(kBFloat16);
  EXPECT_EQ(b.str(), "tensor([1.5000, 2.0000], dtype=bfloat16)");
  Tensor h = Tensor::from_vector<float>({0.1f, 3.0f}, {2}).to(kFloat16);
  EXPECT_EQ(h.str(), "tensor([0.1000, 3.0000], dtype=float16)");
  EXPECT_EQ(zeros({0}, {.dtype = kFloat16}).str(), "tensor([], dtype=float16)");
  std::ostringstream os;
  os << Half(0.5f) << " " << BFloat16(-2.0f);
  EXPECT_EQ(os.str(), "0.5 -2");
}

TEST_P(Half16, ToRecordsAGradientInTheSourceDtype) {
  const DType dt = GetParam();
  Tensor x = Tensor::from_vector<float>({1, 2, 3}, {3}).requires_grad_();
  Tensor y = x.to(dt);
  EXPECT_TRUE(y.requires_grad());
  (y * y).sum().backward();
  EXPECT_EQ(x.grad().dtype(), kFloat32);
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{2, 4, 6}));
  Tensor leaf = ones({2}, {.dtype = dt}).requires_grad_();
  (leaf * 3.0).sum().backward();
  EXPECT_EQ(leaf.grad().dtype(), dt);
  EXPECT_EQ(values(leaf.grad()), (std::vector<double>{3, 3}));
}

TEST_P(Half16, ModuleToConvertsFloatingTensorsInPlace) {
  const DType dt = GetParam();
  manual_seed(0);
  nn::Sequential model{nn::Linear(4, 3), nn::BatchNorm1d(3)};
  std::vector<Tensor> params = model.parameters();  // as an optimizer holds them
  const std::vector<double> w0 = values(params[0]);
  params[0].set_grad(ones(params[0].shape()));
  model.to(dt);
  for (const Tensor& p : params) {
    EXPECT_EQ(p.dtype(), dt);
    EXPECT_TRUE(p.requires_grad());
    EXPECT_TRUE(p.is_leaf());
  }
  EXPECT_EQ(params[0].grad().dtype(), dt);
  const std::vector<double> w1 = values(params[0]);
  ASSERT_EQ(w1.size(), w0.size());
  for (size_t i = 0; i < w0.size(); ++i) {
    EXPECT_NEAR(w1[i], w0[i], std::fabs(w0[i]) * (dt == kFloat16 ? 1e-3 : 8e-3));
  }
  for (const auto& [name, t] : model.named_buffers()) {
    EXPECT_EQ(t.dtype(), name.ends_with("num_batches_tracked") ? kInt64 : dt) << name;
  }
  model.to(kFloat32);
  EXPECT_EQ(params[0].dtype(), kFloat32);
  EXPECT_TRUE(contains(error_of<DTypeError>([&] { model.to(kInt64); }), "int64"));
}

// --- ops: 16-bit against float32 on the same values -----------------------------------------

// Random values in [lo, hi), as `dt` (and so exactly representable in it).
Tensor random16(const Shape& shape, DType dt, double lo = -2.0, double hi = 2.0) {
  return (rand(shape) * (hi - lo) + lo).to(dt);
}

using UnaryFn = std::function<Tensor(const Tensor&)>;

// y = f(x) in 16 bits and in float32 from the same values; then the gradient of
// sum(y * w) for a random w, which is 16-bit for the 16-bit input.
void check_against_float32(const UnaryFn& f, const Tensor& x16, const std::string& what,
                           double tol_scale = 1.0) {
  const DType dt = x16.dtype();
  ember::testing::Tolerance tol = tolerance(dt);
  tol.rtol *= tol_scale;
  tol.atol *= tol_scale;
  Tensor x = x16.detach().requires_grad_();
  Tensor x32 = x16.to(kFloat32).detach().requires_grad_();
  Tensor y = f(x);
  Tensor y32 = f(x32);
  ASSERT_EQ(y.dtype(), dt) << what;
  EXPECT_TRUE(allclose(values(y), values(y32), tol)) << what << " forward";
  Tensor w = random16(y.shape(), dt);
  (y * w).sum().backward();
  (y32 * w.to(kFloat32)).sum().backward();
  ASSERT_TRUE(x.grad().defined()) << what;
  EXPECT_EQ(x.grad().dtype(), dt) << what;
  EXPECT_TRUE(allclose(values(x.grad()), values(x32.grad()), tol)) << what << " backward";
}

TEST_P(Half16, UnaryOpsAndActivations) {
  const DType dt = GetParam();
  manual_seed(1);
  const Tensor x = random16({5, 7}, dt);
  const Tensor pos = random16({5, 7}, dt, 0.5, 3.0);
  check_against_float32([](const Tensor& t) { return neg(t); }, x, "neg");
  check_against_float32([](const Tensor& t) { return exp(t); }, x, "exp");
  check_against_float32([](const Tensor& t) { return log(t); }, pos, "log");
  check_against_float32([](const Tensor& t) { return sqrt(t); }, pos, "sqrt");
  check_against_float32([](const Tensor& t) { return abs(t); }, x, "abs");
  check_against_float32([](const Tensor& t) { return pow(t, 3.0); }, x, "pow", 2.0);
  check_against_float32([](const Tensor& t) { return clamp(t, -0.5, 0.7); }, x, "clamp");
  check_against_float32([](const Tensor& t) { return relu(t); }, x, "relu");
  check_against_float32([](const Tensor& t) { return leaky_relu(t, 0.1); }, x, "leaky_relu");
  check_against_float32([](const Tensor& t) { return sigmoid(t); }, x, "sigmoid");
  check_against_float32([](const Tensor& t) { return tanh(t); }, x, "tanh");
  check_against_float32([](const Tensor& t) { return gelu(t); }, x, "gelu");
  check_against_float32([](const Tensor& t) { return add(mul(t, 1.5), 0.25); }, x, "scalar");
}

TEST_P(Half16, BinaryOpsBroadcastAndCompare) {
  const DType dt = GetParam();
  manual_seed(2);
  const Tensor b = random16({1, 7}, dt, 0.5, 2.0);
  for (const auto& [name, fn] : std::vector<std::pair<std::string, UnaryFn>>{
           {"add", [&](const Tensor& t) { return add(t, b.to(t.dtype())); }},
           {"sub", [&](const Tensor& t) { return sub(b.to(t.dtype()), t); }},
           {"mul", [&](const Tensor& t) { return mul(t, b.to(t.dtype())); }},
           {"div", [&](const Tensor& t) { return div(t, b.to(t.dtype())); }},
           {"maximum", [&](const Tensor& t) { return maximum(t, b.to(t.dtype())); }},
           {"minimum", [&](const Tensor& t) { return minimum(t, b.to(t.dtype())); }}}) {
    check_against_float32(fn, random16({4, 7}, dt), name);
  }
  // The other operand in float32 for the float32 side.
  const Tensor a = random16({3, 7}, dt);
  Tensor y = mul(a, b);
  EXPECT_TRUE(allclose(values(y),
                                       values(mul(a.to(kFloat32), b.to(kFloat32))),
                                       tolerance(dt)));
  EXPECT_EQ(values(lt(a, b)), values(lt(a.to(kFloat32),
                                                                        b.to(kFloat32))));
  EXPECT_EQ(values(eq(a, a)), std::vector<double>(21, 1.0));
  EXPECT_TRUE(contains(error_of<DTypeError>([&] { add(a, a.to(kFloat32)); }), "dtypes differ"));
}

TEST_P(Half16, ReductionsAccumulateInMoreThan16Bits) {
  const DType dt = GetParam();
  manual_seed(3);
  const Tensor x = random16({6, 5, 4}, dt);
  check_against_float32([](const Tensor& t) { return sum(t); }, x, "sum");
  check_against_float32([](const Tensor& t) { return sum(t, {1}); }, x, "sum(1)");
  check_against_float32([](const Tensor& t) { return mean(t, {0, 2}, true); }, x, "mean");
  check_against_float32([](const Tensor& t) { return max(t); }, x, "max");
  check_against_float32([](const Tensor& t) { return max(t, 1).values; }, x, "max(1)");
  check_against_float32([](const Tensor& t) { return min(t, 2).values; }, x, "min(2)");
  EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), argmax(x.to(kFloat32), 1).to_vector<int64_t>());
  // 4096 ones: a 16-bit running sum would stop at 2048 (float16) or 256 (bfloat16).
  EXPECT_EQ(ones({4096}, {.dtype = dt}).sum().item(), 4096.0);
  EXPECT_EQ(ones({4096}, {.dtype = dt}).mean().item(), 1.0);
  // NaN propagates through max.
  Tensor n = Tensor::from_vector<float>({1, NAN, 3}, {3}).to(dt);
  EXPECT_TRUE(std::isnan(max(n).item()));
}

TEST_P(Half16, SoftmaxAndLogSoftmax) {
  const DType dt = GetParam();
  manual_seed(4);
  const Tensor x = random16({4, 9}, dt, -4.0, 4.0);
  check_against_float32([](const Tensor& t) { return softmax(t, -1); }, x, "softmax");
  check_against_float32([](const Tensor& t) { return softmax(t, 0); }, x, "softmax(0)");
  check_against_float32([](const Tensor& t) { return log_softmax(t, 1); }, x, "log_softmax");
}

TEST_P(Half16, MatmulAndLinear) {
  const DType dt = GetParam();
  manual_seed(5);
  const Tensor b = random16({9, 6}, dt);
  // Sums of 9 products: relative to the largest term rather than to the (cancelling) result.
  check_against_float32([&](const Tensor& t) { return matmul(t, b.to(t.dtype())); },
                        random16({5, 9}, dt), "matmul", 4.0);
  check_against_float32(
      [&](const Tensor& t) { return matmul(t, b.to(t.dtype()).t().contiguous().t()); },
      random16({5, 9}, dt), "matmul (transposed B)", 4.0);
  const Tensor bb = random16({3, 7, 4}, dt);
  check_against_float32([&](const Tensor& t) { return matmul(t, bb.to(t.dtype())); },
                        random16({3, 2, 7}, dt), "batched matmul", 4.0);
  const Tensor w = random16({6, 9}, dt), bias = random16({6}, dt);
  check_against_float32([&](const Tensor& t) {
    return linear(t, w.to(t.dtype()), bias.to(t.dtype()));
  },
                        random16({4, 9}, dt), "linear", 4.0);
  // Gradients reach the weight in 16 bits too.
  Tensor wl = w.detach().requires_grad_();
  linear(random16({4, 9}, dt), wl, bias).sum().backward();
  EXPECT_EQ(wl.grad().dtype(), dt);
}

TEST_P(Half16, ViewsJoinsAndCopies) {
  const DType dt = GetParam();
  manual_seed(6);
  const Tensor x = random16({4, 6}, dt);
  const std::vector<double> v = values(x);
  Tensor t = x.t().contiguous();
  EXPECT_EQ(t.dtype(), dt);
  EXPECT_EQ(values(t.t()), v);
  EXPECT_EQ(values(x.reshape({24})), v);
  EXPECT_EQ(values(cat({x, x}, 0).narrow(0, 4, 4)), v);
  EXPECT_EQ(values(stack({x, x}, 1).select(1, 1)), v);
  EXPECT_EQ(values(split(x, {2, 4}, 1)[0]),
            values(x.slice(1, 0, 2)));
  Tensor y = zeros({6, 4}, {.dtype = dt});
  y.t().copy_(x);
  EXPECT_EQ(values(y.t()), v);
  check_against_float32([](const Tensor& a) { return cat({a, a * 2.0}, 1).slice(1, 1, 9, 2); },
                        x, "cat/slice");
}

}  // namespace
