// The fused optimizer updates of core/fused_optim.h: the optimizers' steps equal the
// shared update rules (kernels/optim_math.h) bit for bit, lists mixing dtypes and devices
// are grouped, unused state may be undefined, versions are bumped, and bad lists are
// rejected with messages naming the list and entry.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <ember/ember.h>
#include "ember/core/fused_optim.h"
#include "ember/kernels/optim_math.h"
#include "ember/optim/optim.h"
#include "support/check.h"
#include "support/device.h"

using namespace ember;
namespace math = ember::kernels::math;

namespace {

using ember::testing::error_of;

const std::vector<double> kInit = {1.0, -2.0, 3.0, 0.25, -0.5};
const std::vector<std::vector<double>> kGrads = {
    {0.5, -1.0, 4.0, 0.01, -3.0}, {-0.3, 0.8, 0.5, 2.0, 0.1}, {0.1, -0.2, -0.1, -1.0, 0.7}};

Tensor vec(const std::vector<double>& v, DType dtype) {
  return Tensor::from_vector<double>(v, {static_cast<int64_t>(v.size())}).to(dtype);
}

Tensor param(const std::vector<double>& v, DType dtype) {
  Tensor p = vec(v, dtype);
  p.requires_grad_();
  return p;
}

template <typename T>
std::vector<T> as(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <typename T>
void expect_bits_equal(const Tensor& got, const std::vector<T>& want, const std::string& what) {
  const std::vector<T> g = got.detach().to_vector<T>();
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(g[i], want[i]) << what << " element " << i;
}

// Runs three Adam steps through optim::Adam and through math::adam_update with the
// hyper-parameters rounded to T from double (the rule of optim/adam.h).
template <typename T>
void check_adam_bits(const optim::AdamOptions& o, DType dtype) {
  Tensor p = param(kInit, dtype);
  optim::Adam opt({p}, o);
  std::vector<T> rp = as<T>(kInit), m(kInit.size(), T(0)), v(kInit.size(), T(0));
  std::vector<T> vmax(kInit.size(), T(0));
  for (size_t s = 0; s < kGrads.size(); ++s) {
    p.set_grad(vec(kGrads[s], dtype));
    opt.step();
    const double t = static_cast<double>(s + 1);
    math::AdamParams<T> h;
    h.lr = static_cast<T>(o.lr);
    h.beta1 = static_cast<T>(o.betas[0]);
    h.beta2 = static_cast<T>(o.betas[1]);
    h.eps = static_cast<T>(o.eps);
    h.weight_decay = static_cast<T>(o.weight_decay);
    h.step_size = static_cast<T>(o.lr / (1.0 - std::pow(o.betas[0], t)));
    h.bias_correction2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(o.betas[1], t)));
    h.amsgrad = o.amsgrad;
    h.decoupled_weight_decay = o.decoupled_weight_decay;
    const std::vector<T> g = as<T>(kGrads[s]);
    for (size_t i = 0; i < rp.size(); ++i) {
      math::adam_update(h, rp[i], g[i], m[i], v[i], vmax[i]);
    }
  }
  expect_bits_equal(p, rp, "Adam parameter");
  const StateDict sd = opt.state_dict();
  expect_bits_equal(sd.at("state.0.exp_avg"), m, "exp_avg");
  expect_bits_equal(sd.at("state.0.exp_avg_sq"), v, "exp_avg_sq");
  if (o.amsgrad) expect_bits_equal(sd.at("state.0.max_exp_avg_sq"), vmax, "max_exp_avg_sq");
}

template <typename T>
void check_sgd_bits(const optim::SGDOptions& o, DType dtype) {
  Tensor p = param(kInit, dtype);
  optim::SGD opt({p}, o);
  std::vector<T> rp = as<T>(kInit), buf(kInit.size(), T(0));
  for (size_t s = 0; s < kGrads.size(); ++s) {
    p.set_grad(vec(kGrads[s], dtype));
    opt.step();
    math::SgdParams<T> h;
    h.lr = static_cast<T>(o.lr);
    h.momentum = static_cast<T>(o.momentum);
    h.dampening = static_cast<T>(o.dampening);
    h.weight_decay = static_cast<T>(o.weight_decay);
    h.nesterov = o.nesterov;
    h.first_step = s == 0;
    const std::vector<T> g = as<T>(kGrads[s]);
    for (size_t i = 0; i < rp.size(); ++i) math::sgd_update(h, rp[i], g[i], buf[i]);
  }
  expect_bits_equal(p, rp, "SGD parameter");
}

template <typename T>
void check_rmsprop_bits(const optim::RMSpropOptions& o, DType dtype) {
  Tensor p = param(kInit, dtype);
  optim::RMSprop opt({p}, o);
  // Reference state, one array per buffer: square_avg, momentum_buffer, grad_avg.
  std::vector<T> rp = as<T>(kInit);
  std::vector<std::vector<T>> st(3, std::vector<T>(kInit.size(), T(0)));
  for (size_t s = 0; s < kGrads.size(); ++s) {
    p.set_grad(vec(kGrads[s], dtype));
    opt.step();
    math::RmspropParams<T> h;
    h.lr = static_cast<T>(o.lr);
    h.alpha = static_cast<T>(o.alpha);
    h.eps = static_cast<T>(o.eps);
    h.weight_decay = static_cast<T>(o.weight_decay);
    h.momentum = static_cast<T>(o.momentum);
    h.centered = o.centered;
    const std::vector<T> g = as<T>(kGrads[s]);
    for (size_t i = 0; i < rp.size(); ++i) {
      math::rmsprop_update(h, rp[i], g[i], st[0][i], st[1][i], st[2][i]);
    }
  }
  expect_bits_equal(p, rp, "RMSprop parameter");
}

FusedSgdParams plain_sgd(double lr) {
  FusedSgdParams h;
  h.lr = lr;
  return h;
}

}  // namespace

TEST(FusedOptim, AdamStepsEqualTheSharedRuleBitForBit) {
  const optim::AdamOptions amsgrad{.lr = 0.01, .betas = {0.8, 0.95}, .weight_decay = 0.1,
                                   .amsgrad = true};
  const optim::AdamOptions adamw{.lr = 0.003, .weight_decay = 0.05,
                                 .decoupled_weight_decay = true};
  check_adam_bits<float>(amsgrad, kFloat32);
  check_adam_bits<double>(amsgrad, kFloat64);
  check_adam_bits<float>(adamw, kFloat32);
  check_adam_bits<double>(adamw, kFloat64);
}

TEST(FusedOptim, SgdAndRmspropStepsEqualTheSharedRuleBitForBit) {
  const optim::SGDOptions sgd{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01,
                              .nesterov = true};
  check_sgd_bits<float>(sgd, kFloat32);
  check_sgd_bits<double>(sgd, kFloat64);
  check_sgd_bits<float>({.lr = 0.3, .momentum = 0.7, .dampening = 0.1}, kFloat32);
  const optim::RMSpropOptions rms{.lr = 0.01, .alpha = 0.9, .eps = 1e-6, .weight_decay = 0.05,
                                  .momentum = 0.7, .centered = true};
  check_rmsprop_bits<float>(rms, kFloat32);
  check_rmsprop_bits<double>(rms, kFloat64);
  check_rmsprop_bits<float>({.lr = 0.02}, kFloat32);
}

TEST(FusedOptim, ListsMixingDtypesUpdateEveryTensor) {
  Tensor a = vec({1.0, 2.0}, kFloat32), b = vec({3.0}, kFloat64);
  Tensor c = vec({4.0, 5.0}, kFloat32);
  fused_sgd_({a, b, c},
             {vec({1.0, 1.0}, kFloat32), vec({1.0}, kFloat64), vec({2.0, 2.0}, kFloat32)},
             {Tensor(), Tensor(), Tensor()}, {plain_sgd(0.5), plain_sgd(1.0), plain_sgd(0.25)});
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{0.5f, 1.5f}));
  EXPECT_EQ(b.to_vector<double>(), (std::vector<double>{2.0}));
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{3.5f, 4.5f}));
}

TEST(FusedOptim, EmptyListsAndEmptyTensorsAreFine) {
  EXPECT_NO_THROW(fused_adam_({}, {}, {}, {}, {}, {}));
  Tensor p = vec({}, kFloat32), g = vec({}, kFloat32);
  EXPECT_NO_THROW(fused_sgd_({p}, {g}, {Tensor()}, {plain_sgd(0.1)}));
}

TEST(FusedOptim, ReadsANonContiguousGradient) {
  Tensor p = zeros({2, 3});
  const Tensor g = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2}).t();  // [2, 3] view
  ASSERT_FALSE(g.is_contiguous());
  fused_sgd_({p}, {g}, {Tensor()}, {plain_sgd(1.0)});
  EXPECT_EQ(p.to_vector<float>(), (std::vector<float>{-1, -3, -5, -2, -4, -6}));
}

TEST(FusedOptim, BumpsTheVersionsOfWhatItWrites) {
  Tensor p = vec({1.0}, kFloat32), g = vec({1.0}, kFloat32);
  Tensor m = zeros({1}), v = zeros({1}), unused = zeros({1});
  const uint64_t pv = p.version(), mv = m.version(), vv = v.version();
  const uint64_t uv = unused.version(), gv = g.version();
  FusedAdamParams h;
  h.lr = h.step_size = 0.1;
  fused_adam_({p}, {g}, {m}, {v}, {unused}, {h});  // no amsgrad: `unused` is not written
  EXPECT_GT(p.version(), pv);
  EXPECT_GT(m.version(), mv);
  EXPECT_GT(v.version(), vv);
  EXPECT_EQ(unused.version(), uv);
  EXPECT_EQ(g.version(), gv);
}

TEST(FusedOptim, RejectsListsOfDifferentLengths) {
  Tensor p = vec({1.0}, kFloat32), g = vec({1.0}, kFloat32);
  EXPECT_EQ(error_of([&] { fused_sgd_({p}, {}, {Tensor()}, {plain_sgd(0.1)}); }),
            "fused_sgd_: grads has 0 entries but params has 1 (every list has one entry per "
            "parameter)");
  EXPECT_EQ(error_of([&] { fused_sgd_({p}, {g}, {}, {plain_sgd(0.1)}); }),
            "fused_sgd_: momentum_buffers has 0 entries but params has 1 (every list has one "
            "entry per parameter)");
  EXPECT_EQ(error_of([&] { fused_sgd_({p}, {g}, {Tensor()}, {}); }),
            "fused_sgd_: hyper_params has 0 entries but params has 1 (every list has one entry "
            "per parameter)");
}

TEST(FusedOptim, RejectsMismatchedTensors) {
  Tensor p = vec({1.0, 2.0}, kFloat32);
  FusedSgdParams momentum = plain_sgd(0.1);
  momentum.momentum = 0.9;
  EXPECT_THROW(fused_sgd_({p}, {vec({1.0}, kFloat32)}, {Tensor()}, {plain_sgd(0.1)}),
               ShapeError);
  EXPECT_EQ(error_of([&] {
              fused_sgd_({p}, {vec({1.0, 1.0}, kFloat64)}, {Tensor()}, {plain_sgd(0.1)});
            }),
            "fused_sgd_: grads[0] is [2] float64 cpu but params[0] is [2] float32 cpu");
  EXPECT_THROW(fused_sgd_({p}, {vec({1.0, 1.0}, kFloat64)}, {Tensor()}, {plain_sgd(0.1)}),
               DTypeError);
  // A state the update uses must be there; one it does not use may be anything.
  EXPECT_EQ(error_of([&] {
              fused_sgd_({p}, {vec({1.0, 1.0}, kFloat32)}, {Tensor()}, {momentum});
            }),
            "fused_sgd_: momentum_buffers[0] is undefined (params[0] is [2] float32 cpu)");
  EXPECT_NO_THROW(
      fused_sgd_({p}, {vec({1.0, 1.0}, kFloat32)}, {vec({1.0}, kInt64)}, {plain_sgd(0.1)}));
  EXPECT_THROW(fused_sgd_({vec({1.0}, kInt64)}, {vec({1.0}, kInt64)}, {Tensor()},
                          {plain_sgd(0.1)}),
               DTypeError);
  Tensor wide = zeros({2, 2});
  EXPECT_EQ(error_of([&] {
              fused_sgd_({wide.t()}, {zeros({2, 2})}, {Tensor()}, {plain_sgd(0.1)});
            }),
            "fused_sgd_: params[0] ([2, 2] float32 cpu) is not contiguous; updates run over "
            "flat memory");
}

TEST(FusedOptim, GroupsCpuAndCudaTensorsByDevice) {
  EMBER_SKIP_WITHOUT_GPU();
  const Device gpu = Device::cuda(0);
  Tensor a = vec({1.0, 2.0}, kFloat32), b = vec({3.0}, kFloat32).to(gpu);
  Tensor c = vec({4.0}, kFloat64);
  fused_sgd_({a, b, c},
             {vec({1.0, 1.0}, kFloat32), vec({2.0}, kFloat32).to(gpu), vec({1.0}, kFloat64)},
             {Tensor(), Tensor(), Tensor()}, {plain_sgd(0.5), plain_sgd(0.5), plain_sgd(2.0)});
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{0.5f, 1.5f}));
  EXPECT_EQ(b.cpu().to_vector<float>(), (std::vector<float>{2.0f}));
  EXPECT_EQ(c.to_vector<double>(), (std::vector<double>{2.0}));
  EXPECT_THROW(fused_sgd_({vec({1.0}, kFloat32)}, {vec({1.0}, kFloat32).to(gpu)}, {Tensor()},
                          {plain_sgd(0.1)}),
               DeviceError);
}
