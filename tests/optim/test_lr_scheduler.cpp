// LR schedules: each schedule's lr sequence against its closed form (PyTorch's formulas),
// the step at construction, several groups, resuming with set_last_epoch / state_dict,
// OneCycleLR's momentum cycling and its step limit.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <ember/ember.h>
#include "ember/optim/optim.h"

using namespace ember;

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kTol = 1e-12;

Tensor param() {
  Tensor p = zeros({2}, {.dtype = kFloat64});
  p.requires_grad_();
  return p;
}

// Steps `sched` through epochs 0..epochs-1 (epoch 0 is the construction step) and checks
// the optimizer's lr and get_last_lr() against `expected(epoch)`.
template <typename F>
void check_sequence(optim::Optimizer& opt, optim::LRScheduler& sched, int64_t epochs,
                    F expected, const std::string& what) {
  for (int64_t e = 0; e < epochs; ++e) {
    if (e > 0) sched.step();
    ASSERT_EQ(sched.last_epoch(), e) << what;
    const double want = expected(e);
    EXPECT_NEAR(opt.lr(), want, kTol) << what << " epoch " << e;
    ASSERT_EQ(sched.get_last_lr().size(), opt.num_groups());
    EXPECT_NEAR(sched.get_last_lr()[0], want, kTol) << what << " epoch " << e;
  }
}

}  // namespace

TEST(StepLR, DecaysByGammaEveryStepSize) {
  optim::SGD opt({param()}, {.lr = 0.1});
  optim::StepLR sched(opt, 3, 0.5);
  check_sequence(opt, sched, 10, [](int64_t e) { return 0.1 * std::pow(0.5, e / 3); }, "StepLR");
  EXPECT_THROW(optim::StepLR(opt, 0), Error);
}

TEST(ExponentialLR, DecaysByGammaEveryEpoch) {
  optim::SGD opt({param()}, {.lr = 0.2});
  optim::ExponentialLR sched(opt, 0.9);
  check_sequence(opt, sched, 8, [](int64_t e) { return 0.2 * std::pow(0.9, e); }, "ExponentialLR");
}

TEST(CosineAnnealingLR, FollowsTheCosineAndIsPeriodicPastTMax) {
  optim::Adam opt({param()}, {.lr = 0.01});
  optim::CosineAnnealingLR sched(opt, 10, 1e-4);
  check_sequence(
      opt, sched, 25,
      [](int64_t e) { return 1e-4 + (0.01 - 1e-4) * (1 + std::cos(kPi * e / 10.0)) / 2; },
      "CosineAnnealingLR");
}

TEST(CosineAnnealingLR, ReachesEtaMinAtTMax) {
  optim::SGD opt({param()}, {.lr = 1.0});
  optim::CosineAnnealingLR sched(opt, 4);
  for (int i = 0; i < 4; ++i) sched.step();
  EXPECT_NEAR(opt.lr(), 0.0, kTol);
}

TEST(LinearLR, WarmsUpLinearlyThenHolds) {
  optim::SGD opt({param()}, {.lr = 0.5});
  optim::LinearLR sched(opt, 0.1, 1.0, 4);
  EXPECT_NEAR(opt.lr(), 0.05, kTol);  // the construction step applies start_factor
  check_sequence(
      opt, sched, 8,
      [](int64_t e) { return 0.5 * (0.1 + 0.9 * std::min<int64_t>(e, 4) / 4.0); }, "LinearLR");
  EXPECT_THROW(optim::LinearLR(opt, 0.0), Error);
}

TEST(LinearLR, PyTorchDefaults) {
  optim::SGD opt({param()}, {.lr = 0.3});
  optim::LinearLR sched(opt);  // start 1/3, end 1, 5 iterations
  check_sequence(
      opt, sched, 7,
      [](int64_t e) {
        return 0.3 * (1.0 / 3 + (1 - 1.0 / 3) * std::min<int64_t>(e, 5) / 5.0);
      },
      "LinearLR defaults");
}

TEST(LRScheduler, ScalesEveryGroupFromItsOwnBaseLr) {
  Tensor a = param(), b = param();
  optim::SGD opt(std::vector<optim::ParamGroup<optim::SGDOptions>>{{{a}, {.lr = 0.1}},
                                                                   {{b}, {.lr = 0.02}}});
  optim::StepLR sched(opt, 2, 0.1);
  for (int i = 0; i < 4; ++i) sched.step();
  EXPECT_NEAR(opt.lr(0), 0.1 * 0.01, kTol);
  EXPECT_NEAR(opt.lr(1), 0.02 * 0.01, kTol);
  EXPECT_EQ(sched.base_lrs(), (std::vector<double>{0.1, 0.02}));
}

TEST(LRScheduler, ResumesFromLastEpochAndStateDict) {
  optim::SGD opt({param()}, {.lr = 0.1});
  optim::CosineAnnealingLR sched(opt, 20, 0.001);
  for (int i = 0; i < 7; ++i) sched.step();
  const nn::StateDict sd = sched.state_dict();
  EXPECT_EQ(sd.at("last_epoch").item<int64_t>(), 7);
  EXPECT_EQ(sd.at("last_epoch").dim(), 0);

  // A fresh run: optimizer and schedule rebuilt with the original lr, then restored.
  optim::SGD opt2({param()}, {.lr = 0.1});
  optim::CosineAnnealingLR sched2(opt2, 20, 0.001);
  sched2.load_state_dict(sd);
  EXPECT_EQ(sched2.last_epoch(), 7);
  EXPECT_NEAR(opt2.lr(), opt.lr(), kTol);
  sched.step();
  sched2.step();
  EXPECT_NEAR(opt2.lr(), opt.lr(), kTol);

  optim::SGD opt3({param()}, {.lr = 0.1});
  optim::CosineAnnealingLR sched3(opt3, 20, 0.001);
  sched3.set_last_epoch(8);
  EXPECT_NEAR(opt3.lr(), opt.lr(), kTol);
}

namespace {

// PyTorch's OneCycleLR, two phases, cosine annealing.
double one_cycle_lr(int64_t step, double max_lr, int64_t total, double pct, double div,
                    double final_div) {
  const double initial = max_lr / div, min_lr = initial / final_div;
  const double end1 = pct * total - 1, end2 = total - 1.0;
  auto cos_anneal = [](double a, double b, double t) {
    return b + (a - b) / 2 * (std::cos(kPi * t) + 1);
  };
  if (step <= end1) return cos_anneal(initial, max_lr, step / end1);
  return cos_anneal(max_lr, min_lr, (step - end1) / (end2 - end1));
}

}  // namespace

TEST(OneCycleLR, FollowsPyTorchsTwoPhaseCosineSchedule) {
  optim::SGD opt({param()}, {.lr = 0.5, .momentum = 0.9});
  optim::OneCycleLR sched(opt, {.max_lr = 0.1, .total_steps = 100});
  EXPECT_NEAR(opt.lr(), 0.1 / 25, kTol);
  check_sequence(
      opt, sched, 100,
      [](int64_t s) { return one_cycle_lr(s, 0.1, 100, 0.3, 25, 1e4); }, "OneCycleLR");
  EXPECT_NEAR(opt.lr(), 0.1 / 25 / 1e4, kTol);  // step 99 ends at min_lr
}

TEST(OneCycleLR, CyclesMomentumInverselyToTheLr) {
  optim::SGD opt({param()}, {.lr = 0.5, .momentum = 0.9});
  optim::OneCycleLR sched(opt, {.max_lr = 1.0, .total_steps = 10, .pct_start = 0.5});
  EXPECT_NEAR(*opt.momentum(), 0.95, kTol);  // max_momentum while the lr is lowest
  for (int i = 0; i < 4; ++i) sched.step();   // step 4 = end of the first phase
  EXPECT_NEAR(opt.lr(), 1.0, kTol);
  EXPECT_NEAR(*opt.momentum(), 0.85, kTol);

  optim::Adam adam({param()}, {.lr = 0.5});
  optim::OneCycleLR adam_sched(adam, {.max_lr = 1.0, .total_steps = 10});
  EXPECT_NEAR(adam.options().betas[0], 0.95, kTol);
  EXPECT_NEAR(adam.options().betas[1], 0.999, kTol);

  optim::SGD fixed({param()}, {.lr = 0.5, .momentum = 0.9});
  optim::OneCycleLR no_cycle(fixed, {.max_lr = 1.0, .total_steps = 10, .cycle_momentum = false});
  no_cycle.step();
  EXPECT_NEAR(*fixed.momentum(), 0.9, kTol);
}

TEST(OneCycleLR, LinearAndThreePhase) {
  optim::SGD opt({param()}, {.lr = 0.5});
  optim::OneCycleLR sched(opt, {.max_lr = 1.0,
                                .total_steps = 20,
                                .pct_start = 0.25,
                                .anneal_strategy = optim::AnnealStrategy::Linear,
                                .cycle_momentum = false,
                                .div_factor = 10.0,
                                .final_div_factor = 100.0,
                                .three_phase = true});
  // Phases end at steps 4 (0.1 -> 1), 8 (1 -> 0.1) and 19 (0.1 -> 0.001).
  auto expected = [](int64_t s) {
    if (s <= 4) return 0.1 + (1.0 - 0.1) * s / 4.0;
    if (s <= 8) return 1.0 + (0.1 - 1.0) * (s - 4) / 4.0;
    return 0.1 + (0.001 - 0.1) * (s - 8) / 11.0;
  };
  check_sequence(opt, sched, 20, expected, "OneCycleLR three-phase linear");
}

TEST(OneCycleLR, SteppingPastTotalStepsIsAnError) {
  optim::SGD opt({param()}, {.lr = 0.5});
  optim::OneCycleLR sched(opt, {.max_lr = 1.0, .total_steps = 5, .cycle_momentum = false});
  for (int i = 0; i < 5; ++i) sched.step();  // last_epoch == total_steps is still allowed
  const double lr = opt.lr();
  EXPECT_THROW(sched.step(), Error);
  EXPECT_EQ(sched.last_epoch(), 5);
  EXPECT_DOUBLE_EQ(opt.lr(), lr);
  EXPECT_THROW(optim::OneCycleLR(opt, {.max_lr = 1.0}), Error);  // no total_steps
}
