// Specification tests for the autograd tape (core/autograd.h) and the finite-difference
// checker (core/grad_check.h): gradients, accumulation, graph lifetime, grad mode, the
// version check on saved tensors, and a checker shown able to catch a wrong rule.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/grad_check.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"

#include "support/check.h"

namespace {

using namespace ember;

using ember::testing::contains;
using ember::testing::error_of;

Tensor leaf(const std::vector<float>& v) {
  Tensor t = Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
  t.requires_grad_();
  return t;
}

// A float64 leaf of `shape` with values drawn from a fixed seed, for gradcheck.
Tensor leaf64(const Shape& shape, uint64_t seed) {
  manual_seed(seed);
  Tensor t = randn(shape, {.dtype = kFloat64});
  t.requires_grad_();
  return t;
}

std::vector<float> grad_of(const Tensor& t) {
  EXPECT_TRUE(t.grad().defined());
  return t.grad().defined() ? t.grad().to_vector<float>() : std::vector<float>{};
}

// --- gradients ---------------------------------------------------------------------------

TEST(Autograd, BackwardGivesTheHandComputedGradient) {
  // loss = sum(x * w + x^2)  =>  dloss/dx = w + 2x, dloss/dw = x.
  Tensor x = leaf({1, 2, 3});
  Tensor w = leaf({4, 5, 6});
  Tensor loss = sum(x * w + x.pow(2));
  EXPECT_EQ(loss.item(), 4 + 10 + 18 + 1 + 4 + 9);
  loss.backward();
  EXPECT_EQ(grad_of(x), (std::vector<float>{6, 9, 12}));
  EXPECT_EQ(grad_of(w), (std::vector<float>{1, 2, 3}));
}

TEST(Autograd, BroadcastInputsReceiveSummedGradients) {
  Tensor b = leaf({1, 2, 3});
  Tensor x = ones({4, 3});
  Tensor loss = sum(mul(add(x, b), 2.0));
  loss.backward();
  EXPECT_EQ(grad_of(b), (std::vector<float>{8, 8, 8}));
  EXPECT_FALSE(x.grad().defined()) << "x does not require grad";
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({1, 2});
  sum(mul(x, 3.0)).backward();
  sum(mul(x, 3.0)).backward();
  EXPECT_EQ(grad_of(x), (std::vector<float>{6, 6}));
  // Resetting .grad starts over.
  x.set_grad(Tensor());
  sum(mul(x, 3.0)).backward();
  EXPECT_EQ(grad_of(x), (std::vector<float>{3, 3}));
}

TEST(Autograd, GradientsAccumulateAcrossUsesOfOneLeaf) {
  // y = x*x + x  =>  dy/dx = 2x + 1.
  Tensor x = leaf({1, 2, -3});
  Tensor y = x * x + x;
  y.sum().backward();
  EXPECT_EQ(grad_of(x), (std::vector<float>{3, 5, -5}));
  Tensor z = leaf({2});
  (z + z).sum().backward();
  EXPECT_EQ(grad_of(z), (std::vector<float>{2}));
}

TEST(Autograd, AccumulatedGradDoesNotAliasOtherTensors) {
  // Both inputs of add receive the same gradient tensor; each .grad must be its own.
  Tensor a = leaf({1, 2});
  Tensor b = leaf({3, 4});
  (a + b).sum().backward();
  Tensor ga = a.grad();
  ga.fill_(100);
  EXPECT_EQ(grad_of(b), (std::vector<float>{1, 1}));
  Tensor x = leaf({1, 2});
  Tensor g = Tensor::from_vector(std::vector<float>{5, 6}, {2});
  x.clone().backward(g);
  EXPECT_EQ(grad_of(x), (std::vector<float>{5, 6}));
  g.fill_(0);
  EXPECT_EQ(grad_of(x), (std::vector<float>{5, 6})) << ".grad must not be the caller's tensor";
}

TEST(Autograd, BackwardOnANonScalarWithoutAGradientIsShapeError) {
  Tensor x = leaf({1, 2, 3});
  Tensor y = x * 2.0;
  std::string msg = error_of<ShapeError>([&] { y.backward(); });
  EXPECT_TRUE(contains(msg, "one element")) << msg;
  EXPECT_TRUE(contains(msg, "[3]")) << msg;
}

TEST(Autograd, BackwardWithAnExplicitGradient) {
  Tensor x = leaf({1, 2, 3});
  Tensor y = x * 2.0;
  y.backward(Tensor::from_vector(std::vector<float>{1, 10, 100}, {3}));
  EXPECT_EQ(grad_of(x), (std::vector<float>{2, 20, 200}));
  Tensor y2 = x * 2.0;
  EXPECT_THROW(y2.backward(ones({4})), ShapeError);
}

TEST(Autograd, BackwardOnATensorWithoutGradIsAnError) {
  Tensor x = Tensor::from_vector(std::vector<float>{1}, {1});
  std::string msg = error_of<Error>([&] { (x * 2.0).backward(); });
  EXPECT_TRUE(contains(msg, "does not require grad")) << msg;
}

TEST(Autograd, SecondBackwardThroughFreedNodesIsAnError) {
  Tensor x = leaf({1, 2});
  Tensor y = sigmoid(x * x);
  Tensor loss = y.sum();
  loss.backward();
  const std::vector<float> first = grad_of(x);
  std::string msg = error_of<Error>([&] { loss.backward(); });
  EXPECT_TRUE(contains(msg, "retain_graph")) << msg;
  EXPECT_TRUE(contains(msg, "Backward")) << msg;
  // A new root over the same freed nodes fails the same way, and .grad is left alone.
  EXPECT_THROW((y * 2.0).sum().backward(), Error);
  EXPECT_EQ(grad_of(x), first);
}

TEST(Autograd, RetainGraphAllowsASecondBackward) {
  Tensor x = leaf({1, 2});
  Tensor loss = sum(x * x);
  loss.backward(Tensor(), /*retain_graph=*/true);
  loss.backward();
  EXPECT_EQ(grad_of(x), (std::vector<float>{4, 8}));
}

TEST(Autograd, ViewsAndConversionsBackpropagate) {
  Tensor x = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  x.requires_grad_();
  // Each view picks elements; their gradients land on the picked positions.
  Tensor loss = x.t().select(0, 1).sum() * 10.0 + x.slice(1, 0, 3, 2).sum() +
                x.reshape({3, 2}).narrow(0, 2, 1).sum() * 100.0 +
                x.to(kFloat64).sum().to(kFloat32) * 1000.0;
  loss.backward();
  EXPECT_EQ(grad_of(x), (std::vector<float>{1001, 1010, 1001, 1001, 1110, 1101}));
}

// --- grad mode and detach --------------------------------------------------------------------

TEST(Autograd, NoGradGuardStopsRecording) {
  Tensor x = leaf({1, 2});
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(grad_mode_enabled());
    Tensor y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    EXPECT_TRUE(y.is_leaf());
  }
  EXPECT_TRUE(grad_mode_enabled());
  EXPECT_NE((x * 2.0).grad_fn(), nullptr);
}

TEST(Autograd, NoGradGuardsNestAndRestore) {
  {
    NoGradGuard outer;
    {
      NoGradGuard inner;
      EXPECT_FALSE(grad_mode_enabled());
    }
    EXPECT_FALSE(grad_mode_enabled()) << "the inner guard restores the outer's state";
    set_grad_mode(true);
    {
      NoGradGuard inner;
      EXPECT_FALSE(grad_mode_enabled());
    }
    EXPECT_TRUE(grad_mode_enabled());
  }
  EXPECT_TRUE(grad_mode_enabled()) << "the outer guard restores grad mode";
}

TEST(Autograd, DetachCutsTheGraphAndSharesStorage) {
  Tensor x = leaf({1, 2});
  Tensor y = x * 3.0;
  Tensor d = y.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.grad_fn(), nullptr);
  EXPECT_EQ(d.data_ptr(), y.data_ptr());
  d.fill_(7);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{7, 7}));
  Tensor z = d * x;
  z.sum().backward();
  EXPECT_EQ(grad_of(x), (std::vector<float>{7, 7})) << "no gradient flows through d";
}

// --- in-place and versions -------------------------------------------------------------------

TEST(Autograd, ModifyingASavedTensorInPlaceFailsBackwardNamingTheOp) {
  Tensor x = leaf({0, 1});
  Tensor c = full({2}, 2.0);
  Tensor y = sigmoid(x);
  Tensor z = mul(y, c);  // mul saves c for dz/dy
  c.fill_(3);
  std::string msg = error_of<Error>([&] { z.sum().backward(); });
  EXPECT_TRUE(contains(msg, "mul")) << msg;
  EXPECT_TRUE(contains(msg, "modified by an in-place operation")) << msg;
  EXPECT_TRUE(contains(msg, "version")) << msg;
}

TEST(Autograd, ModifyingASavedOutputThroughADetachedAliasFailsBackward) {
  Tensor x = leaf({0, 1});
  Tensor y = sigmoid(x);  // sigmoid saves its output
  y.detach().zero_();
  std::string msg = error_of<Error>([&] { y.sum().backward(); });
  EXPECT_TRUE(contains(msg, "sigmoid")) << msg;
}

TEST(Autograd, InPlaceOnALeafThatRequiresGradThrowsInGradMode) {
  Tensor x = leaf({1, 2});
  std::string msg = error_of<Error>([&] { x.fill_(0); });
  EXPECT_TRUE(contains(msg, "leaf")) << msg;
  EXPECT_TRUE(contains(msg, "fill_")) << msg;
  EXPECT_THROW(x.add_(ones({2})), Error);
  EXPECT_THROW(x.mul_(2), Error);
  EXPECT_THROW(x.copy_(ones({2})), Error);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1, 2})) << "a refused update changes nothing";
  {
    NoGradGuard no_grad;  // as an optimizer step does
    x.add_(ones({2}), -0.5);
  }
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{0.5, 1.5}));
}

TEST(Autograd, InPlaceOnATensorInTheGraphThrows) {
  Tensor x = leaf({1, 2});
  Tensor y = x * 2.0;
  EXPECT_THROW(y.mul_(2), Error);
  EXPECT_THROW(x.narrow(0, 0, 1).fill_(0), Error);
}

TEST(Autograd, RequiresGradOnAnIntegerTensorIsDTypeError) {
  Tensor i = arange(3);
  std::string msg = error_of<DTypeError>([&] { i.requires_grad_(); });
  EXPECT_TRUE(contains(msg, "int64")) << msg;
  EXPECT_THROW(zeros({2}, {.dtype = kInt32, .requires_grad = true}), DTypeError);
  EXPECT_NO_THROW(i.requires_grad_(false));
}

TEST(Autograd, RequiresGradOffIsOnlyForLeaves) {
  Tensor x = leaf({1});
  Tensor y = x * 2.0;
  EXPECT_THROW(y.requires_grad_(false), Error);
  x.requires_grad_(false);
  EXPECT_FALSE((x * 2.0).requires_grad());
}

// --- non-leaf grads and autograd::grad -----------------------------------------------------------

TEST(Autograd, RetainGradKeepsGradOnANonLeaf) {
  Tensor x = leaf({1, 2});
  Tensor y = x * 3.0;
  Tensor h = y + 1.0;
  y.retain_grad();
  sum(y * y + h).backward();
  // d/dy (y^2 + y + 1) = 2y + 1, with y = [3, 6].
  EXPECT_EQ(grad_of(y), (std::vector<float>{7, 13}));
  EXPECT_FALSE(h.grad().defined()) << "only retained non-leaves keep .grad";
  EXPECT_EQ(grad_of(x), (std::vector<float>{21, 39}));
}

TEST(Autograd, GradReturnsGradientsWithoutTouchingDotGrad) {
  Tensor x = leaf({1, 2});
  Tensor w = leaf({3, 4});
  Tensor u = leaf({5});  // not part of the graph
  Tensor y = x * w;
  Tensor loss = y.sum();
  std::vector<Tensor> g = autograd::grad({loss}, {x, y, u});
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0].to_vector<float>(), (std::vector<float>{3, 4}));
  EXPECT_EQ(g[1].to_vector<float>(), (std::vector<float>{1, 1}));
  EXPECT_FALSE(g[2].defined()) << "an unreachable input gets no gradient";
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_THROW(autograd::grad({loss}, {arange(2)}), Error);
}

TEST(Autograd, IndependentGraphsDoNotInterfere) {
  Tensor x = leaf({1, 2});
  Tensor a = leaf({3});
  Tensor loss1 = sum(x * x);
  Tensor loss2 = sum(x * a);
  loss1.backward();
  EXPECT_EQ(grad_of(x), (std::vector<float>{2, 4}));
  EXPECT_FALSE(a.grad().defined());
  // loss2's nodes were not run or freed by loss1's backward.
  loss2.backward();
  EXPECT_EQ(grad_of(x), (std::vector<float>{5, 7}));
  EXPECT_EQ(grad_of(a), (std::vector<float>{3}));
}

TEST(Autograd, GradFnNamesTheOp) {
  Tensor x = leaf({1, 2});
  ASSERT_NE((x * x).grad_fn(), nullptr);
  EXPECT_EQ((x * x).grad_fn()->name(), "MulBackward");
  EXPECT_EQ(x.view({1, 2}).grad_fn()->name(), "ViewBackward");
  EXPECT_TRUE(x.is_leaf());
  EXPECT_FALSE((x * x).is_leaf());
}

TEST(Autograd, GraphIsFreedWhenItsOutputsDie) {
  Tensor x = leaf({1});
  std::weak_ptr<autograd::Node> node;
  {
    Tensor y = sigmoid(x);
    node = y.grad_fn();
    EXPECT_FALSE(node.expired());
  }
  EXPECT_TRUE(node.expired()) << "no tensor refers to the graph any more";
}

TEST(Autograd, DeepChainBackwardDoesNotOverflowTheStack) {
  Tensor x = leaf({1});
  {
    Tensor y = x;
    for (int i = 0; i < 10000; ++i) y = y * 1.0 + 0.5;
    EXPECT_EQ(y.item(), 5001.0);
    y.backward();
  }
  EXPECT_EQ(grad_of(x), (std::vector<float>{1}));
}

TEST(Autograd, DeepChainIsTornDownWithoutRecursion) {
  // Dropping a long graph that never ran backward must not recurse once per node.
  Tensor x = leaf({1});
  Tensor y = x;
  for (int i = 0; i < 200000; ++i) y = y + 1.0;
  EXPECT_EQ(y.item(), 200001.0);
  y = Tensor();
  SUCCEED();
}

// --- gradcheck -------------------------------------------------------------------------------------

TEST(GradCheck, PassesOnACompositeExpression) {
  Tensor x = leaf64({3, 4}, 10);
  Tensor w = leaf64({4, 2}, 11);
  Tensor b = leaf64({2}, 12);
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor h = tanh(matmul(in[0], in[1]) + in[2]);        // [3, 2]
    Tensor s = sigmoid(in[0].t().narrow(0, 1, 2));        // [2, 3]
    return h * s.t() + exp(in[0].select(1, 0)).unsqueeze(1) / (h * h + 1.0);
  };
  GradCheckResult r = gradcheck(fn, {x, w, b});
  EXPECT_TRUE(r.ok) << r.report;
}

TEST(GradCheck, PassesThroughEveryView) {
  Tensor x = leaf64({2, 3, 4}, 20);
  auto fn = [](const std::vector<Tensor>& in) {
    const Tensor& t = in[0];
    Tensor a = t.permute({2, 0, 1}).reshape({4, 6});                 // copy through reshape
    Tensor b = t.transpose(0, 1).flatten(1).slice(1, 1, 8, 3);       // [3, 3]
    Tensor c = t.select(2, -1).unsqueeze(0).expand({4, 2, 3}).flatten(1);  // [4, 6]
    Tensor d = t.view({6, 4}).t().contiguous().squeeze();            // [4, 6]
    return a * c + d * d + sum(b * b) + t.narrow(1, 1, 2).clone().sum();
  };
  GradCheckResult r = gradcheck(fn, {x});
  EXPECT_TRUE(r.ok) << r.report;
}

TEST(GradCheck, ReportsAWrongBackwardRule) {
  // y = 2x recorded with a rule that claims dy/dx = 3: the checker must catch it.
  auto wrong_double = [](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    Tensor y;
    {
      NoGradGuard no_grad;
      y = mul(x, 2.0);
    }
    if (autograd::needs_grad({&x})) {
      autograd::record("wrong_double", {x}, {y}, [](std::vector<Tensor>& g) {
        return std::vector<Tensor>{mul(g[0], 3.0)};
      });
    }
    return y;
  };
  Tensor x = leaf64({3}, 30);
  GradCheckResult r = gradcheck(wrong_double, {x});
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(contains(r.report, "input 0")) << r.report;
  EXPECT_TRUE(contains(r.report, "analytic")) << r.report;
  EXPECT_TRUE(contains(r.report, "numeric")) << r.report;
}

TEST(GradCheck, AcceptsARightCustomBackwardRule) {
  auto right_double = [](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    Tensor y;
    {
      NoGradGuard no_grad;
      y = mul(x, 2.0);
    }
    if (autograd::needs_grad({&x})) {
      autograd::record("double", {x}, {y}, [](std::vector<Tensor>& g) {
        return std::vector<Tensor>{mul(g[0], 2.0)};
      });
    }
    return y;
  };
  Tensor x = leaf64({3}, 31);
  GradCheckResult r = gradcheck(right_double, {x});
  EXPECT_TRUE(r.ok) << r.report;
}

TEST(GradCheck, ReportsAnOutputThatDependsOnNoInput) {
  Tensor x = leaf64({2}, 32);
  GradCheckResult r = gradcheck([](const std::vector<Tensor>&) { return ones({2}, {.dtype = kFloat64}); },
                                {x});
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(contains(r.report, "does not depend")) << r.report;
}

TEST(GradCheck, RejectsInputsThatAreNotFloat64) {
  Tensor x = leaf({1, 2});
  EXPECT_THROW(gradcheck([](const std::vector<Tensor>& in) { return in[0]; }, {x}), Error);
}

TEST(GradCheck, LeavesTheInputsUnchanged) {
  Tensor x = leaf64({4}, 33);
  const std::vector<double> before = x.to_vector<double>();
  gradcheck([](const std::vector<Tensor>& in) { return exp(in[0]); }, {x});
  EXPECT_EQ(x.to_vector<double>(), before);
}

}  // namespace
