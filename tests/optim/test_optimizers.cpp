// SGD, Adam, AdamW and RMSprop: step sequences against PyTorch's update rules computed
// here in double, and clip_grad_norm, on every device (float64 and float32 on the CPU,
// float32 on CUDA); parameter groups, skipped parameters, state_dict round trips, set_lr,
// bad options and bad parameters on the CPU. (test_optimizers_cuda.cpp holds what only
// CUDA has: the multi-tensor launch tables and parity on many odd-sized tensors.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <ember/ember.h>
#include "ember/optim/optim.h"
#include "support/allclose.h"
#include "support/device.h"

using namespace ember;

namespace {

using namespace ember::testing;
using Vec = std::vector<double>;

// Against the double reference: float64 parameters to rounding (the shared reference
// tolerance); float32 ones to float precision, tighter than an op's float32 reference
// tolerance because each element goes through only a few steps of a few roundings.
constexpr Tolerance kTolF64 = kFloat64RefTol;
constexpr Tolerance kTolF32{2e-6, 2e-6};

Tolerance tolerance_for(DType dtype) { return dtype == kFloat64 ? kTolF64 : kTolF32; }

const Vec kInit = {1.0, -2.0, 3.0};
// Three steps of gradients; the last entry shrinks sharply so amsgrad's max matters.
const std::vector<Vec> kGrads = {{0.5, -1.0, 4.0}, {-0.3, 0.8, 0.5}, {0.1, -0.2, -0.1}};

// A leaf parameter of `dtype` on `device`.
Tensor param(const Vec& v, DType dtype = kFloat64, Device device = Device::cpu()) {
  Tensor p = Tensor::from_vector<double>(v, {static_cast<int64_t>(v.size())}).to(dtype).to(device);
  p.requires_grad_();
  return p;
}

// A gradient of p's dtype on p's device.
void set_grad(Tensor& p, const Vec& g) {
  p.set_grad(Tensor::from_vector<double>(g, {static_cast<int64_t>(g.size())})
                 .to(p.dtype())
                 .to(p.device()));
}

// --- references: PyTorch's single-tensor rules, element by element, in double ----------

struct SgdRef {
  explicit SgdRef(optim::SGDOptions opts) : o(opts) {}
  optim::SGDOptions o;
  Vec buf;
  bool has_buf = false;
  void step(Vec& p, Vec g) {
    if (!has_buf) buf.assign(p.size(), 0.0);
    for (size_t i = 0; i < p.size(); ++i) {
      if (o.weight_decay != 0) g[i] += o.weight_decay * p[i];
      if (o.momentum != 0) {
        buf[i] = has_buf ? o.momentum * buf[i] + (1 - o.dampening) * g[i] : g[i];
        g[i] = o.nesterov ? g[i] + o.momentum * buf[i] : buf[i];
      }
      p[i] -= o.lr * g[i];
    }
    has_buf = true;
  }
};

struct AdamRef {
  explicit AdamRef(optim::AdamOptions opts) : o(opts) {}
  optim::AdamOptions o;
  Vec m, v, vmax;
  int t = 0;
  void step(Vec& p, Vec g) {
    if (t == 0) m = v = vmax = Vec(p.size(), 0.0);
    ++t;
    const double b1 = o.betas[0], b2 = o.betas[1];
    for (size_t i = 0; i < p.size(); ++i) {
      if (o.weight_decay != 0) {
        if (o.decoupled_weight_decay) {
          p[i] *= 1 - o.lr * o.weight_decay;
        } else {
          g[i] += o.weight_decay * p[i];
        }
      }
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      vmax[i] = std::max(vmax[i], v[i]);
      const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
      const double second = o.amsgrad ? vmax[i] : v[i];
      const double denom = std::sqrt(second) / std::sqrt(bc2) + o.eps;
      p[i] -= o.lr / bc1 * m[i] / denom;
    }
  }
};

struct RmspropRef {
  explicit RmspropRef(optim::RMSpropOptions opts) : o(opts) {}
  optim::RMSpropOptions o;
  Vec sq, buf, ga;
  bool init = false;
  void step(Vec& p, Vec g) {
    if (!init) sq = buf = ga = Vec(p.size(), 0.0);
    init = true;
    for (size_t i = 0; i < p.size(); ++i) {
      if (o.weight_decay != 0) g[i] += o.weight_decay * p[i];
      sq[i] = o.alpha * sq[i] + (1 - o.alpha) * g[i] * g[i];
      double avg;
      if (o.centered) {
        ga[i] = o.alpha * ga[i] + (1 - o.alpha) * g[i];
        avg = std::sqrt(sq[i] - ga[i] * ga[i]) + o.eps;
      } else {
        avg = std::sqrt(sq[i]) + o.eps;
      }
      if (o.momentum > 0) {
        buf[i] = o.momentum * buf[i] + g[i] / avg;
        p[i] -= o.lr * buf[i];
      } else {
        p[i] -= o.lr * g[i] / avg;
      }
    }
  }
};

// Runs kGrads through `Opt` (built from `options`) on a [3] parameter of `dtype` on
// `device` and through the reference `Ref`, comparing after every step.
template <typename Opt, typename Options, typename Ref>
void check_against_reference(const Options& options, Ref ref, DType dtype, Device device,
                             const std::string& what) {
  Tensor p = param(kInit, dtype, device);
  Opt opt({p}, options);
  Vec expected = kInit;
  for (size_t s = 0; s < kGrads.size(); ++s) {
    set_grad(p, kGrads[s]);
    opt.step();
    ref.step(expected, kGrads[s]);
    EXPECT_TRUE(allclose(p, expected, tolerance_for(dtype))) << what << " step " << s + 1;
  }
  EXPECT_EQ(opt.steps(), static_cast<int64_t>(kGrads.size()));
}

// check_against_reference in every floating dtype `device` computes in.
template <typename Opt, typename Options, typename Ref>
void check_on(Device device, const Options& options, const Ref& ref, const std::string& what) {
  for (DType dtype : floating_dtypes(device)) {
    check_against_reference<Opt>(options, ref, dtype, device,
                                 what + " (" + dtype_name(dtype) + ")");
  }
}

class SGDOnDevice : public OnDevice {};
class AdamOnDevice : public OnDevice {};
class AdamWOnDevice : public OnDevice {};
class RMSpropOnDevice : public OnDevice {};
class ClipGradNormOnDevice : public OnDevice {};

}  // namespace

// --- SGD --------------------------------------------------------------------------------------

TEST(SGD, PlainStepIsLrTimesGradient) {
  Tensor p = param({1.0, -2.0, 3.0});
  optim::SGD opt({p}, {.lr = 0.1});
  set_grad(p, {0.5, -1.0, 4.0});
  opt.step();
  EXPECT_TRUE(allclose(p, {0.95, -1.9, 2.6}, kTolF64)) << "sgd";
}

TEST(SGD, MomentumStartsFromTheFirstGradient) {
  // Hand-computed: lr 0.1, momentum 0.9, gradient 1 twice.
  // step 1: buf = 1, p = 1 - 0.1 = 0.9; step 2: buf = 0.9 + 1 = 1.9, p = 0.9 - 0.19 = 0.71.
  Tensor p = param({1.0});
  optim::SGD opt({p}, {.lr = 0.1, .momentum = 0.9});
  set_grad(p, {1.0});
  opt.step();
  EXPECT_TRUE(allclose(p, {0.9}, kTolF64)) << "step 1";
  set_grad(p, {1.0});
  opt.step();
  EXPECT_TRUE(allclose(p, {0.71}, kTolF64)) << "step 2";
}

TEST_P(SGDOnDevice, MatchesReferenceWithMomentumDampeningAndWeightDecay) {
  const optim::SGDOptions o{.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.01};
  check_on<optim::SGD>(device(), o, SgdRef{o}, "sgd momentum+dampening+wd");
}

TEST_P(SGDOnDevice, MatchesReferenceWithNesterov) {
  const optim::SGDOptions o{.lr = 0.1, .momentum = 0.8, .weight_decay = 0.05, .nesterov = true};
  check_on<optim::SGD>(device(), o, SgdRef{o}, "sgd nesterov");
}

EMBER_INSTANTIATE_ON_DEVICES(SGDOnDevice);

TEST(SGD, NesterovRequiresMomentumAndZeroDampening) {
  Tensor p = param(kInit);
  EXPECT_THROW(optim::SGD({p}, {.lr = 0.1, .nesterov = true}), Error);
  EXPECT_THROW(optim::SGD({p}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
               Error);
  EXPECT_NO_THROW(optim::SGD({p}, {.lr = 0.1, .momentum = 0.9, .nesterov = true}));
}

TEST(SGD, RejectsNegativeOptions) {
  Tensor p = param(kInit);
  EXPECT_THROW(optim::SGD({p}, {.lr = -1.0}), Error);
  EXPECT_THROW(optim::SGD({p}, {.lr = 0.1, .momentum = -0.5}), Error);
  EXPECT_THROW(optim::SGD({p}, {.lr = 0.1, .weight_decay = -1e-4}), Error);
}

// --- Adam / AdamW -------------------------------------------------------------------------------

TEST(Adam, FirstStepMovesEachElementByLr) {
  // With bias correction, step 1 is p -= lr * g / (|g| + eps') for any gradient.
  Tensor p = param(kInit);
  optim::Adam opt({p}, {.lr = 0.01});
  set_grad(p, {0.5, -1.0, 4.0});
  opt.step();
  EXPECT_TRUE(allclose(p, {0.99, -1.99, 2.99}, Tolerance{1e-7, 1e-7})) << "adam step 1";
}

TEST_P(AdamOnDevice, MatchesReference) {
  const optim::AdamOptions o{.lr = 0.01};
  check_on<optim::Adam>(device(), o, AdamRef{o}, "adam");
}

TEST_P(AdamOnDevice, MatchesReferenceWithWeightDecayAndCustomBetas) {
  const optim::AdamOptions o{.lr = 0.02, .betas = {0.8, 0.9}, .eps = 1e-6, .weight_decay = 0.1};
  check_on<optim::Adam>(device(), o, AdamRef{o}, "adam wd");
}

TEST_P(AdamOnDevice, MatchesReferenceWithAmsgrad) {
  const optim::AdamOptions o{.lr = 0.05, .betas = {0.9, 0.5}, .amsgrad = true};
  check_on<optim::Adam>(device(), o, AdamRef{o}, "adam amsgrad");
  // The gradients shrink, so the running max differs from the plain second moment.
  const DType dt = floating_dtypes(device()).front();
  Tensor a = param(kInit, dt, device()), b = param(kInit, dt, device());
  optim::Adam with({a}, o);
  optim::Adam without({b}, {.lr = 0.05, .betas = {0.9, 0.5}});
  for (const Vec& g : kGrads) {
    set_grad(a, g);
    set_grad(b, g);
    with.step();
    without.step();
  }
  EXPECT_GT(std::fabs(values(a)[2] - values(b)[2]), 1e-4);
}

EMBER_INSTANTIATE_ON_DEVICES(AdamOnDevice);

TEST_P(AdamWOnDevice, DecaysTheWeightsDecoupledFromTheGradient) {
  const optim::AdamWOptions w{.lr = 0.01, .weight_decay = 0.1};
  optim::AdamOptions o{.lr = 0.01, .weight_decay = 0.1, .decoupled_weight_decay = true};
  check_on<optim::AdamW>(device(), w, AdamRef{o}, "adamw");
  o.amsgrad = true;
  check_on<optim::AdamW>(device(),
                         optim::AdamWOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true},
                         AdamRef{o}, "adamw amsgrad");
}

EMBER_INSTANTIATE_ON_DEVICES(AdamWOnDevice);

TEST(AdamW, DefaultsMatchPyTorch) {
  Tensor p = param(kInit);
  optim::AdamW opt({p});
  EXPECT_DOUBLE_EQ(opt.options().weight_decay, 1e-2);
  EXPECT_DOUBLE_EQ(opt.lr(), 1e-3);
  EXPECT_TRUE(opt.options().decoupled_weight_decay);
  EXPECT_STREQ(opt.name(), "AdamW");
  optim::Adam adam({param(kInit)});
  EXPECT_DOUBLE_EQ(adam.options().weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(adam.options().betas[1], 0.999);
}

TEST(Adam, RejectsBadBetasAndEps) {
  Tensor p = param(kInit);
  EXPECT_THROW(optim::Adam({p}, {.betas = {1.0, 0.999}}), Error);
  EXPECT_THROW(optim::Adam({p}, {.betas = {0.9, -0.1}}), Error);
  EXPECT_THROW(optim::Adam({p}, {.eps = -1.0}), Error);
  EXPECT_THROW(optim::AdamW({p}, {.weight_decay = -1.0}), Error);
}

// --- RMSprop ----------------------------------------------------------------------------------

TEST_P(RMSpropOnDevice, MatchesReference) {
  const optim::RMSpropOptions o{.lr = 0.01};
  check_on<optim::RMSprop>(device(), o, RmspropRef{o}, "rmsprop");
}

TEST_P(RMSpropOnDevice, MatchesReferenceCenteredWithMomentumAndWeightDecay) {
  const optim::RMSpropOptions o{
      .lr = 0.01, .alpha = 0.9, .eps = 1e-6, .weight_decay = 0.05, .momentum = 0.7,
      .centered = true};
  check_on<optim::RMSprop>(device(), o, RmspropRef{o}, "rmsprop centered+momentum");
  const optim::RMSpropOptions c{.lr = 0.01, .alpha = 0.95, .centered = true};
  check_on<optim::RMSprop>(device(), c, RmspropRef{c}, "rmsprop centered");
  const optim::RMSpropOptions m{.lr = 0.01, .momentum = 0.5};
  check_on<optim::RMSprop>(device(), m, RmspropRef{m}, "rmsprop momentum");
}

EMBER_INSTANTIATE_ON_DEVICES(RMSpropOnDevice);

TEST(RMSprop, DefaultsMatchPyTorch) {
  optim::RMSprop opt({param(kInit)});
  EXPECT_DOUBLE_EQ(opt.lr(), 1e-2);
  EXPECT_DOUBLE_EQ(opt.options().alpha, 0.99);
  EXPECT_DOUBLE_EQ(opt.options().eps, 1e-8);
  EXPECT_THROW(optim::RMSprop({param(kInit)}, {.alpha = -0.1}), Error);
}

// --- groups, skipping, set_lr ------------------------------------------------------------------

TEST(Optimizer, ParamGroupsUseTheirOwnOptions) {
  Tensor a = param(kInit), b = param(kInit);
  optim::SGD opt(std::vector<optim::ParamGroup<optim::SGDOptions>>{
      {{a}, {.lr = 0.1}}, {{b}, {.lr = 0.01, .momentum = 0.9}}});
  EXPECT_EQ(opt.num_groups(), 2u);
  EXPECT_DOUBLE_EQ(opt.lr(0), 0.1);
  EXPECT_DOUBLE_EQ(opt.lr(1), 0.01);
  SgdRef ra({.lr = 0.1}), rb({.lr = 0.01, .momentum = 0.9});
  Vec ea = kInit, eb = kInit;
  for (const Vec& g : kGrads) {
    set_grad(a, g);
    set_grad(b, g);
    opt.step();
    ra.step(ea, g);
    rb.step(eb, g);
  }
  EXPECT_TRUE(allclose(a, ea, kTolF64)) << "group 0";
  EXPECT_TRUE(allclose(b, eb, kTolF64)) << "group 1";
}

TEST(Optimizer, AdamGroupsWithDifferentLrAndWeightDecay) {
  Tensor a = param(kInit), b = param(kInit);
  optim::Adam opt(std::vector<optim::ParamGroup<optim::AdamOptions>>{
      {{a}, {.lr = 0.01, .weight_decay = 0.1}}, {{b}, {.lr = 0.001}}});
  AdamRef ra({.lr = 0.01, .weight_decay = 0.1}), rb({.lr = 0.001});
  Vec ea = kInit, eb = kInit;
  for (const Vec& g : kGrads) {
    set_grad(a, g);
    set_grad(b, g);
    opt.step();
    ra.step(ea, g);
    rb.step(eb, g);
  }
  EXPECT_TRUE(allclose(a, ea, kTolF64)) << "group 0";
  EXPECT_TRUE(allclose(b, eb, kTolF64)) << "group 1";
}

TEST(Optimizer, ParametersWithoutGradientAreSkipped) {
  Tensor a = param(kInit), b = param(kInit);
  optim::Adam opt({a, b}, {.lr = 0.01});
  set_grad(a, kGrads[0]);
  opt.step();  // b has no gradient: untouched, no state
  EXPECT_TRUE(allclose(b, kInit, kExact)) << "b untouched";
  const nn::StateDict sd = opt.state_dict();
  EXPECT_TRUE(sd.contains("state.0.exp_avg"));
  EXPECT_FALSE(sd.contains("state.1.exp_avg"));
  EXPECT_FALSE(sd.contains("state.1.step"));

  // b's first update is its own step 1 (bias corrections of t = 1), while a is at t = 2.
  AdamRef ra({.lr = 0.01}), rb({.lr = 0.01});
  Vec ea = kInit, eb = kInit;
  ra.step(ea, kGrads[0]);
  set_grad(a, kGrads[1]);
  set_grad(b, kGrads[1]);
  opt.step();
  ra.step(ea, kGrads[1]);
  rb.step(eb, kGrads[1]);
  EXPECT_TRUE(allclose(a, ea, kTolF64)) << "a";
  EXPECT_TRUE(allclose(b, eb, kTolF64)) << "b";
  EXPECT_EQ(opt.state_dict().at("state.1.step").item<int64_t>(), 1);
  EXPECT_EQ(opt.state_dict().at("state.0.step").item<int64_t>(), 2);
}

TEST(Optimizer, SetLrChangesTheNextStep) {
  Tensor a = param({1.0}), b = param({1.0});
  optim::SGD opt(std::vector<optim::ParamGroup<optim::SGDOptions>>{{{a}, {.lr = 0.1}},
                                                                   {{b}, {.lr = 0.1}}});
  opt.set_lr(0.5);
  EXPECT_DOUBLE_EQ(opt.lr(0), 0.5);
  EXPECT_DOUBLE_EQ(opt.lr(1), 0.5);
  opt.set_lr(1, 0.25);
  set_grad(a, {1.0});
  set_grad(b, {1.0});
  opt.step();
  EXPECT_TRUE(allclose(a, {0.5}, kTolF64)) << "group 0";
  EXPECT_TRUE(allclose(b, {0.75}, kTolF64)) << "group 1";
  EXPECT_THROW(opt.set_lr(2, 0.1), Error);
  EXPECT_THROW(opt.lr(5), Error);
  EXPECT_THROW(opt.set_lr(-1.0), Error);
}

TEST(Optimizer, ZeroGradClearsOrZeroesGradients) {
  Tensor p = param(kInit);
  optim::SGD opt({p}, {.lr = 0.1});
  set_grad(p, kGrads[0]);
  opt.zero_grad(false);
  ASSERT_TRUE(p.grad().defined());
  EXPECT_TRUE(allclose(p.grad(), {0, 0, 0}, kExact)) << "zeroed";
  opt.zero_grad();
  EXPECT_FALSE(p.grad().defined());
}

TEST(Optimizer, TrainsWithBackward) {
  // Minimise sum((w - 3)^2): the loop users write, through autograd.
  Tensor w = param({0.0, 1.0, 5.0}, kFloat32);
  optim::SGD opt({w}, {.lr = 0.1, .momentum = 0.5});
  for (int i = 0; i < 100; ++i) {
    opt.zero_grad();
    Tensor loss = sum(pow(w - 3.0, 2.0));
    loss.backward();
    opt.step();
  }
  EXPECT_TRUE(allclose(w, {3.0, 3.0, 3.0}, Tolerance{1e-4, 1e-4})) << "converged";
}

TEST(Optimizer, RejectsParametersThatCannotBeOptimized) {
  Tensor ints = Tensor::from_vector<int64_t>({1, 2}, {2});
  EXPECT_THROW(optim::SGD({ints}), DTypeError);
  Tensor frozen = Tensor::from_vector<float>({1.f, 2.f}, {2});
  try {
    optim::Adam opt({frozen});
    FAIL() << "expected an error for a parameter that does not require grad";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not require grad"), std::string::npos) << e.what();
  }
  Tensor p = param(kInit);
  Tensor non_leaf = mul(p, 2.0);
  EXPECT_THROW(optim::SGD({non_leaf}), Error);
  EXPECT_THROW(optim::SGD({p, p}), Error);
  EXPECT_THROW(optim::SGD(std::vector<optim::ParamGroup<optim::SGDOptions>>{{{p}, {}}, {{p}, {}}}),
               Error);
}

TEST(Optimizer, RejectsAGradientOfTheWrongDtype) {
  Tensor p = param(kInit, kFloat32);
  optim::SGD opt({p}, {.lr = 0.1});
  p.set_grad(Tensor::from_vector<double>(kGrads[0], {3}));
  EXPECT_THROW(opt.step(), DTypeError);
}

// --- state_dict ---------------------------------------------------------------------------------

namespace {

// Steps `a` twice, loads its state dict into `b` (built on copies of the parameters at
// that point), then steps both twice more with the same gradients: they must agree exactly.
template <typename Opt, typename Options>
void check_round_trip(const Options& options, const std::string& what) {
  Tensor pa = param(kInit), pa2 = param({0.5, 0.25});
  Opt a({pa, pa2}, options);
  for (int s = 0; s < 2; ++s) {
    set_grad(pa, kGrads[s]);
    set_grad(pa2, {0.1 * (s + 1), -0.3});
    a.step();
  }
  const nn::StateDict sd = a.state_dict();
  Tensor pb = param(values(pa)), pb2 = param(values(pa2));
  Opt b({pb, pb2}, Options{});  // different options: the state dict brings them
  b.load_state_dict(sd);
  EXPECT_EQ(b.steps(), 2) << what;
  EXPECT_DOUBLE_EQ(b.lr(), a.lr()) << what;
  for (int s = 2; s < 4; ++s) {
    const Vec g = kGrads[s % 3];
    set_grad(pa, g);
    set_grad(pb, g);
    set_grad(pa2, {0.2, 0.4});
    set_grad(pb2, {0.2, 0.4});
    a.step();
    b.step();
  }
  EXPECT_EQ(values(pa), values(pb)) << what;
  EXPECT_EQ(values(pa2), values(pb2)) << what;
}

}  // namespace

TEST(OptimizerStateDict, RoundTripContinuesExactly) {
  check_round_trip<optim::SGD>(
      optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}, "SGD");
  check_round_trip<optim::Adam>(
      optim::AdamOptions{.lr = 0.01, .betas = {0.8, 0.9}, .amsgrad = true}, "Adam");
  check_round_trip<optim::AdamW>(optim::AdamWOptions{.lr = 0.01, .weight_decay = 0.05}, "AdamW");
  check_round_trip<optim::RMSprop>(
      optim::RMSpropOptions{.lr = 0.01, .momentum = 0.5, .centered = true}, "RMSprop");
}

TEST(OptimizerStateDict, HoldsOnlyTensorsWithPyTorchStyleNames) {
  Tensor p = param(kInit);
  optim::Adam opt({p}, {.lr = 0.01, .betas = {0.8, 0.9}, .amsgrad = true});
  set_grad(p, kGrads[0]);
  opt.step();
  const nn::StateDict sd = opt.state_dict();
  const Tensor& step = sd.at("step");
  EXPECT_EQ(step.dim(), 0);
  EXPECT_EQ(step.dtype(), kInt64);
  EXPECT_EQ(step.item<int64_t>(), 1);
  EXPECT_EQ(sd.at("param_groups.0.lr").dim(), 0);
  EXPECT_EQ(sd.at("param_groups.0.lr").dtype(), kFloat64);
  EXPECT_DOUBLE_EQ(sd.at("param_groups.0.lr").item(), 0.01);
  EXPECT_EQ(sd.at("param_groups.0.betas").to_vector<double>(), (Vec{0.8, 0.9}));
  EXPECT_EQ(sd.at("param_groups.0.params").to_vector<int64_t>(), (std::vector<int64_t>{0}));
  EXPECT_EQ(sd.at("state.0.step").item<int64_t>(), 1);
  for (const char* name : {"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.max_exp_avg_sq"}) {
    ASSERT_TRUE(sd.contains(name)) << name;
    EXPECT_EQ(sd.at(name).shape(), p.shape()) << name;
  }
  // A snapshot: later steps do not change it.
  const Vec before = values(sd.at("state.0.exp_avg"));
  set_grad(p, kGrads[1]);
  opt.step();
  EXPECT_EQ(values(sd.at("state.0.exp_avg")), before);
}

TEST(OptimizerStateDict, LoadRejectsMismatchesAndChangesNothing) {
  Tensor p = param(kInit), q = param({1.0, 2.0});
  optim::Adam adam({p, q}, {.lr = 0.01});
  set_grad(p, kGrads[0]);
  set_grad(q, {0.1, 0.2});
  adam.step();
  const nn::StateDict sd = adam.state_dict();

  // Another optimizer's state.
  optim::SGD sgd({param(kInit), param({1.0, 2.0})}, {.lr = 0.5});
  EXPECT_THROW(sgd.load_state_dict(sd), Error);
  EXPECT_DOUBLE_EQ(sgd.lr(), 0.5);

  // A different number of parameters.
  optim::Adam fewer({param(kInit)}, {.lr = 0.5});
  EXPECT_THROW(fewer.load_state_dict(sd), Error);
  EXPECT_DOUBLE_EQ(fewer.lr(), 0.5);

  // A parameter of another shape.
  optim::Adam reshaped({param(kInit), param({1.0, 2.0, 3.0})}, {.lr = 0.5});
  EXPECT_THROW(reshaped.load_state_dict(sd), Error);
  EXPECT_DOUBLE_EQ(reshaped.lr(), 0.5);
  EXPECT_EQ(reshaped.steps(), 0);

  // An unexpected key.
  nn::StateDict extra = sd;
  extra.insert("bogus", scalar_tensor(1.0));
  optim::Adam same({param(kInit), param({1.0, 2.0})}, {.lr = 0.5});
  EXPECT_THROW(same.load_state_dict(extra), Error);
  EXPECT_DOUBLE_EQ(same.lr(), 0.5);
  EXPECT_NO_THROW(same.load_state_dict(sd));
  EXPECT_DOUBLE_EQ(same.lr(), 0.01);
}

TEST(OptimizerStateDict, LoadedOptionsAreValidated) {
  Tensor p = param(kInit);
  optim::SGD opt({p}, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
  nn::StateDict sd = opt.state_dict();
  sd.insert("param_groups.0.momentum", scalar_tensor(0.0, {.dtype = kFloat64}));
  optim::SGD other({param(kInit)}, {.lr = 0.3});
  EXPECT_THROW(other.load_state_dict(sd), Error);  // nesterov without momentum
  EXPECT_DOUBLE_EQ(other.lr(), 0.3);
}

// --- clip_grad_norm -----------------------------------------------------------------------------

// Each case in float64 and float32 on the CPU and float32 on CUDA, with the tolerances
// of the update-rule tests.

TEST_P(ClipGradNormOnDevice, ScalesGradientsToMaxNormAndReturnsTheTotal) {
  for (DType dt : floating_dtypes(device())) {
    SCOPED_TRACE(dtype_name(dt));
    const Tolerance tol = tolerance_for(dt);
    Tensor a = param({3.0, 0.0}, dt, device()), b = param({0.0}, dt, device());
    set_grad(a, {3.0, 0.0});
    set_grad(b, {4.0});
    Tensor total = optim::clip_grad_norm({a, b}, 1.0);
    EXPECT_EQ(total.dim(), 0);
    EXPECT_EQ(total.device(), device());
    EXPECT_TRUE(allclose(total, {5.0}, tol));
    const double coef = 1.0 / (5.0 + 1e-6);
    EXPECT_TRUE(allclose(a.grad(), {3.0 * coef, 0.0}, tol)) << "a";
    EXPECT_TRUE(allclose(b.grad(), {4.0 * coef}, tol)) << "b";
  }
}

TEST_P(ClipGradNormOnDevice, LeavesSmallGradientsUnchanged) {
  for (DType dt : floating_dtypes(device())) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor a = param({0.0, 0.0}, dt, device());
    set_grad(a, {0.3, -0.4});
    const Vec before = values(a.grad());
    EXPECT_TRUE(allclose(optim::clip_grad_norm({a}, 1.0), {0.5}, tolerance_for(dt)));
    EXPECT_EQ(values(a.grad()), before) << "unchanged";
  }
}

TEST_P(ClipGradNormOnDevice, SupportsOtherNormsAndInfinity) {
  for (DType dt : floating_dtypes(device())) {
    SCOPED_TRACE(dtype_name(dt));
    const Tolerance tol = tolerance_for(dt);
    Tensor a = param({0.0, 0.0}, dt, device()), b = param({0.0}, dt, device());
    const Vec ga = {1.0, -2.0}, gb = {-4.0};
    set_grad(a, ga);
    set_grad(b, gb);
    EXPECT_TRUE(allclose(optim::clip_grad_norm({a, b}, 100.0, 1.0), {7.0}, tol)) << "norm 1";
    set_grad(a, ga);
    set_grad(b, gb);
    EXPECT_TRUE(
        allclose(optim::clip_grad_norm({a, b}, 100.0, 3.0), {std::cbrt(1.0 + 8.0 + 64.0)}, tol))
        << "norm 3";
    set_grad(a, ga);
    set_grad(b, gb);
    const double inf = std::numeric_limits<double>::infinity();
    Tensor total = optim::clip_grad_norm({a, b}, 2.0, inf);
    EXPECT_TRUE(allclose(total, {4.0}, tol)) << "max norm";
    const double coef = 2.0 / (4.0 + 1e-6);
    EXPECT_TRUE(allclose(a.grad(), {1.0 * coef, -2.0 * coef}, tol)) << "a";
    EXPECT_TRUE(allclose(b.grad(), {-4.0 * coef}, tol)) << "b";
    EXPECT_THROW(optim::clip_grad_norm({a}, 1.0, 0.0), Error);
    EXPECT_THROW(optim::clip_grad_norm({a}, 1.0, -2.0), Error);
  }
}

TEST_P(ClipGradNormOnDevice, SkipsParametersWithoutGradientAndHandlesNone) {
  for (DType dt : floating_dtypes(device())) {
    SCOPED_TRACE(dtype_name(dt));
    const Tolerance tol = tolerance_for(dt);
    Tensor a = param({1.0}, dt, device()), b = param({1.0}, dt, device());
    EXPECT_DOUBLE_EQ(optim::clip_grad_norm({a, b}, 1.0).item(), 0.0);
    set_grad(b, {2.0});
    EXPECT_TRUE(allclose(optim::clip_grad_norm({a, b}, 1.0), {2.0}, tol));
    EXPECT_FALSE(a.grad().defined());
    EXPECT_TRUE(allclose(b.grad(), {2.0 / (2.0 + 1e-6)}, tol));
  }
}

EMBER_INSTANTIATE_ON_DEVICES(ClipGradNormOnDevice);
