// Mixed precision: optimizers on float16/bfloat16 parameters (with and without float32
// master weights), the gradient scaler, autocast regions, and the Trainer's precision
// option.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/fused_optim.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"
#include "ember/layers/layers.h"
#include "ember/layers/rnn.h"
#include "ember/optim/optim.h"
#include "ember/python_free_api/callbacks.h"
#include "ember/python_free_api/io/safetensors.h"
#include "ember/python_free_api/trainer.h"

#include "support/allclose.h"
#include "support/check.h"
#include "support/device.h"
#include "support/temp_dir.h"

namespace {

using namespace ember;
using ember::testing::allclose;
using ember::testing::contains;
using ember::testing::error_of;
using ember::testing::values;

class Half16Optim : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(Dtypes, Half16Optim, ::testing::Values(kFloat16, kBFloat16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// --- optimizers ------------------------------------------------------------------------------

// Three steps of each optimizer on a 16-bit parameter track the same steps in float32
// (each step computed in float and rounded once).
TEST_P(Half16Optim, OptimizersUpdate16BitParametersInFloat) {
  const DType dt = GetParam();
  const double tol = dt == kFloat16 ? 4e-3 : 3e-2;
  manual_seed(21);
  const Tensor init = (rand({40}) * 2.0 - 1.0).to(dt);
  const Tensor grad = (rand({40}) * 2.0 - 1.0).to(dt);
  auto run = [&](DType d, auto make) {
    // A copy: init.to(dt) is init itself, and the steps below update p in place (the
    // runs are arguments of one call, evaluated in either order).
    Tensor p = init.to(d).clone().detach().requires_grad_();
    auto opt = make(p);
    for (int i = 0; i < 3; ++i) {
      p.set_grad(grad.to(d));
      opt.step();
    }
    EXPECT_EQ(p.dtype(), d);
    return values(p);
  };
  auto sgd = [](Tensor p) { return optim::SGD({p}, {.lr = 0.1, .momentum = 0.9}); };
  auto adam = [](Tensor p) { return optim::Adam({p}, {.lr = 0.01, .weight_decay = 0.01}); };
  auto rms = [](Tensor p) { return optim::RMSprop({p}, {.lr = 0.01, .centered = true}); };
  EXPECT_TRUE(allclose(run(dt, sgd), run(kFloat32, sgd), {tol, tol})) << "SGD";
  EXPECT_TRUE(allclose(run(dt, adam), run(kFloat32, adam), {tol, tol})) << "Adam";
  EXPECT_TRUE(allclose(run(dt, rms), run(kFloat32, rms), {tol, tol})) << "RMSprop";
}

// Updates far below the parameter's resolution are rounded away in 16 bits, and
// accumulate in the float32 master copy, which also goes into the state dict.
TEST_P(Half16Optim, MasterWeightsAccumulateSmallUpdates) {
  const DType dt = GetParam();
  Tensor plain = ones({4}, {.dtype = dt}).requires_grad_();
  Tensor mastered = ones({4}, {.dtype = dt}).requires_grad_();
  optim::SGD a({plain}, {.lr = 1e-4});
  optim::SGD b({mastered}, {.lr = 1e-4});
  b.set_master_weights(true);
  EXPECT_TRUE(b.master_weights());
  for (int i = 0; i < 100; ++i) {
    plain.set_grad(ones({4}, {.dtype = dt}));
    mastered.set_grad(ones({4}, {.dtype = dt}));
    a.step();
    b.step();
  }
  EXPECT_EQ(plain.to(kFloat32).to_vector<float>()[0], 1.0f);  // 1 - 1e-4 rounds to 1
  EXPECT_NEAR(mastered.to(kFloat32).to_vector<float>()[0], 0.99, dt == kFloat16 ? 1e-3 : 4e-3);
  EXPECT_EQ(mastered.dtype(), dt);
  const StateDict sd = b.state_dict();
  ASSERT_TRUE(sd.contains("state.0.master"));
  EXPECT_EQ(sd.at("state.0.master").dtype(), kFloat32);
  EXPECT_NEAR(sd.at("state.0.master").to_vector<float>()[0], 0.99, 1e-5);  // float32 sums
  // Restored into a new optimizer, the master copy carries on.
  Tensor again = mastered.detach().clone().requires_grad_();
  optim::SGD c({again}, {.lr = 1e-4});
  c.set_master_weights(true);
  c.load_state_dict(sd);
  again.set_grad(ones({4}, {.dtype = dt}));
  c.step();
  EXPECT_NEAR(c.state_dict().at("state.0.master").to_vector<float>()[0], 0.9899, 1e-5);
}

TEST(Half16Optim, Adam16BitStateAndMasterState) {
  Tensor p = ones({3}, {.dtype = kBFloat16}).requires_grad_();
  optim::Adam adam({p}, {.lr = 1e-3});
  p.set_grad(ones({3}, {.dtype = kBFloat16}));
  adam.step();
  EXPECT_EQ(adam.state_dict().at("state.0.exp_avg").dtype(), kBFloat16);
  Tensor q = ones({3}, {.dtype = kBFloat16}).requires_grad_();
  optim::Adam master({q}, {.lr = 1e-3});
  master.set_master_weights(true);
  q.set_grad(ones({3}, {.dtype = kBFloat16}));
  master.step();
  EXPECT_EQ(master.state_dict().at("state.0.exp_avg").dtype(), kFloat32);
}

// --- the gradient scaler ----------------------------------------------------------------------

TEST(GradScaler, UnscalesInOneFusedPassAndFlagsInfAndNaN) {
  Tensor a = Tensor::from_vector<float>({2, 4}, {2});
  Tensor b = Tensor::from_vector<float>({8, 6}, {2}).to(kFloat16);
  Tensor found = zeros({1});
  amp_unscale_and_check_({a, b}, found, full({1}, 0.5));
  EXPECT_EQ(values(a), (std::vector<double>{1, 2}));
  EXPECT_EQ(values(b), (std::vector<double>{4, 3}));
  EXPECT_EQ(found.item(), 0.0);
  Tensor c = Tensor::from_vector<float>({1, INFINITY}, {2}).to(kBFloat16);
  amp_unscale_and_check_({a, c}, found, full({1}, 0.5));
  EXPECT_EQ(found.item(), 1.0);
  Tensor d = Tensor::from_vector<float>({NAN}, {1});
  Tensor found2 = zeros({1});
  amp_unscale_and_check_({d}, found2, full({1}, 1.0));
  EXPECT_EQ(found2.item(), 1.0);
}

// A float16 gradient that overflows skips the step and halves the scale; clean steps then
// grow it back after growth_interval of them. On the CPU and, where there is one, a GPU.
void scaler_skips_and_recovers(Device device) {
  Tensor w = ones({2}, {.dtype = kFloat16, .device = device}).requires_grad_();
  optim::SGD opt({w}, {.lr = 0.1});
  optim::GradScaler scaler({.init_scale = 65536.0, .growth_interval = 3});
  // d(sum(w * 2))/dw = 2, times 65536 = 131072: inf in float16.
  auto iteration = [&] {
    opt.zero_grad();
    scaler.scale(sum(mul(w, 2.0))).backward();
    const bool stepped = scaler.step(opt);
    scaler.update();
    return stepped;
  };
  EXPECT_FALSE(iteration());
  EXPECT_EQ(scaler.get_scale(), 32768.0);
  EXPECT_EQ(values(w), (std::vector<double>{1, 1}));  // untouched
  EXPECT_EQ(opt.steps(), 0);
  // 2 * 32768 = 65536: still past float16's largest finite value (65504).
  EXPECT_FALSE(iteration());
  EXPECT_EQ(scaler.get_scale(), 16384.0);
  EXPECT_TRUE(iteration());
  // Unscaled, the gradient is exactly 2: w = 1 - 0.1 * 2.
  EXPECT_NEAR(w.cpu().to(kFloat32).to_vector<float>()[0], 0.8, 1e-3);
  EXPECT_TRUE(iteration());
  EXPECT_TRUE(iteration());
  EXPECT_EQ(scaler.growth_tracker(), 0);
  EXPECT_EQ(scaler.get_scale(), 32768.0);  // grown after 3 clean steps
  // The state round-trips.
  optim::GradScaler other;
  other.load_state_dict(scaler.state_dict());
  EXPECT_EQ(other.get_scale(), 32768.0);
  EXPECT_EQ(other.options().growth_interval, 3);
}

TEST(GradScaler, SkipsAStepOnOverflowAndTheScaleRecovers) {
  scaler_skips_and_recovers(Device::cpu());
}

TEST(GradScaler, SkipsAStepOnOverflowAndTheScaleRecoversOnCuda) {
  EMBER_SKIP_WITHOUT_GPU();
  scaler_skips_and_recovers(Device::cuda());
  // A NaN anywhere among several gradients is found by the one fused pass.
  Tensor a = ones({1000}, {.device = Device::cuda()});
  Tensor b = full({3}, NAN, {.dtype = kFloat16, .device = Device::cuda()});
  Tensor found = zeros({1}, {.device = Device::cuda()});
  amp_unscale_and_check_({a, b}, found, full({1}, 0.5, {.device = Device::cuda()}));
  EXPECT_EQ(found.item(), 1.0);
  EXPECT_EQ(a.cpu().to_vector<float>()[999], 0.5f);
}

// Many gradients of mixed sizes and dtypes (more than one launch table holds on a GPU: 700
// tensors): each unscaled exactly, the flag left alone while all are finite, and one inf in
// the last tensor of one dtype found.
void unscale_many(Device device) {
  std::vector<Tensor> grads;
  for (int i = 0; i < 700; ++i) {
    const DType dt = i % 3 == 0 ? kFloat16 : (i % 3 == 1 ? kBFloat16 : kFloat32);
    grads.push_back(full({(i * 37) % 9001}, 4.0, {.dtype = dt, .device = device}));
  }
  Tensor found = zeros({1}, {.device = device});
  amp_unscale_and_check_(grads, found, full({1}, 0.25, {.device = device}));
  EXPECT_EQ(found.item(), 0.0);
  for (size_t i = 0; i < grads.size(); ++i) {
    const std::vector<double> v = values(grads[i].to(kFloat64));
    ASSERT_TRUE(std::all_of(v.begin(), v.end(), [](double x) { return x == 1.0; })) << i;
  }
  grads.back().narrow(0, grads.back().size(0) - 1, 1).fill_(INFINITY);
  amp_unscale_and_check_(grads, found, full({1}, 1.0, {.device = device}));
  EXPECT_EQ(found.item(), 1.0);
}

TEST(GradScaler, OneFusedPassOverManyGradients) { unscale_many(Device::cpu()); }

TEST(GradScaler, OneFusedPassOverManyGradientsOnCuda) {
  EMBER_SKIP_WITHOUT_GPU();
  unscale_many(Device::cuda());
}

TEST(GradScaler, UnscaleBeforeClippingThenStep) {
  Tensor w = ones({2}).requires_grad_();
  optim::SGD opt({w}, {.lr = 1.0});
  optim::GradScaler scaler({.init_scale = 1024.0});
  scaler.scale(sum(mul(w, 3.0))).backward();
  scaler.unscale_(opt);
  EXPECT_EQ(values(w.grad()), (std::vector<double>{3, 3}));
  EXPECT_TRUE(contains(error_of<Error>([&] { scaler.unscale_(opt); }), "already"));
  EXPECT_TRUE(scaler.step(opt));  // not unscaled twice
  EXPECT_EQ(values(w), (std::vector<double>{-2, -2}));
  scaler.update();
}

TEST(GradScaler, SaysBFloat16NeedsNoScaling) {
  Tensor w = ones({2}, {.dtype = kBFloat16}).requires_grad_();
  optim::SGD opt({w});
  optim::GradScaler scaler;
  w.set_grad(ones({2}, {.dtype = kBFloat16}));
  EXPECT_TRUE(contains(error_of<DTypeError>([&] { scaler.step(opt); }), "bfloat16"));
  {
    AutocastGuard guard(kBFloat16);
    EXPECT_TRUE(contains(error_of<DTypeError>([&] { scaler.scale(ones({})); }),
                         "enabled = false"));
  }
  optim::GradScaler off({.enabled = false});
  EXPECT_EQ(off.scale(full({}, 3.0)).item(), 3.0);
  EXPECT_TRUE(off.step(opt));
  EXPECT_TRUE(off.state_dict().size() == 0);
}

// --- autocast ----------------------------------------------------------------------------------

TEST(Autocast, LowersMatmulsAndKeepsSensitiveOpsInFloat32) {
  manual_seed(22);
  nn::Linear fc(5, 3);
  Tensor x = rand({4, 5});
  Tensor ref = fc(x);
  for (DType dt : {kBFloat16, kFloat16}) {
    AutocastGuard guard(dt);
    EXPECT_TRUE(autocast_enabled());
    EXPECT_EQ(autocast_dtype(), dt);
    Tensor y = fc(x);
    EXPECT_EQ(y.dtype(), dt);
    EXPECT_TRUE(allclose(values(y), values(ref), {2e-2, 2e-2}));
    EXPECT_EQ(matmul(x, x.t()).dtype(), dt);
    EXPECT_EQ(softmax(y, 1).dtype(), kFloat32);
    EXPECT_EQ(log_softmax(y, 1).dtype(), kFloat32);
    EXPECT_EQ(sum(y).dtype(), kFloat32);
    EXPECT_EQ(mean(y).dtype(), kFloat32);
    EXPECT_EQ(exp(y).dtype(), kFloat32);
    EXPECT_EQ(layer_norm(y, {3}).dtype(), kFloat32);
    EXPECT_EQ(cross_entropy(y, zeros({4}, {.dtype = kInt64})).dtype(), kFloat32);
    EXPECT_EQ(mse_loss(y, zeros({4, 3})).dtype(), kFloat32);
    // Mixed inputs promote to the widest; same-dtype ops stay as they are.
    EXPECT_EQ(add(y, ones({4, 3})).dtype(), kFloat32);
    EXPECT_EQ(mul(y, y).dtype(), dt);
    EXPECT_EQ(relu(y).dtype(), dt);
    EXPECT_EQ(cat({y, ones({4, 3})}, 0).dtype(), kFloat32);
    // The weight itself stays float32.
    EXPECT_EQ(fc.weight().dtype(), kFloat32);
  }
  EXPECT_FALSE(autocast_enabled());
  EXPECT_EQ(fc(x).dtype(), kFloat32);
}

TEST(Autocast, NestsAndTurnsOffInside) {
  AutocastGuard outer(kBFloat16);
  {
    AutocastGuard inner(kFloat16);
    EXPECT_EQ(autocast_dtype(), kFloat16);
    {
      AutocastGuard off(kFloat16, false);
      EXPECT_FALSE(autocast_enabled());
      EXPECT_EQ(matmul(ones({2, 2}), ones({2, 2})).dtype(), kFloat32);
    }
    EXPECT_TRUE(autocast_enabled());
  }
  EXPECT_EQ(autocast_dtype(), kBFloat16);
  EXPECT_TRUE(contains(error_of<DTypeError>([] { AutocastGuard g(kFloat64); }), "float64"));
}

TEST(Autocast, GradientsReachFloat32WeightsAndCastsAreCached) {
  manual_seed(23);
  nn::Linear fc(6, 4);
  Tensor x = rand({3, 6});
  Tensor loss32 = cross_entropy(fc(x), Tensor::from_vector<int64_t>({0, 3, 1}, {3}));
  loss32.backward();
  const std::vector<double> g32 = values(fc.weight().grad());
  fc.weight().set_grad(Tensor());
  fc.bias().set_grad(Tensor());
  Tensor loss;
  {
    AutocastGuard guard(kBFloat16);
    // A weight is cast once per region: every use gets the same cast tensor.
    const auto c1 = autocast::to_lower({fc.weight()});
    const auto c2 = autocast::to_lower({fc.weight()});
    ASSERT_TRUE(c1 && c2);
    EXPECT_TRUE((*c1)[0].is_same((*c2)[0]));
    EXPECT_FALSE(autocast::to_lower({(*c1)[0]}));  // already bfloat16: nothing to do
    loss = cross_entropy(fc(x), Tensor::from_vector<int64_t>({0, 3, 1}, {3}));
    EXPECT_EQ(loss.dtype(), kFloat32);
  }
  loss.backward();
  ASSERT_TRUE(fc.weight().grad().defined());
  EXPECT_EQ(fc.weight().grad().dtype(), kFloat32);
  EXPECT_TRUE(allclose(values(fc.weight().grad()), g32, {3e-2, 3e-2}));
}

TEST(Autocast, RecurrentStacksRunInTheRegionsDtype) {
  manual_seed(26);
  nn::LSTM lstm(3, 5);
  const Tensor x = rand({4, 2, 3});
  const Tensor ref = lstm(x);
  for (DType dt : {kBFloat16, kFloat16}) {
    lstm.zero_grad();
    Tensor y;
    {
      AutocastGuard guard(dt);
      y = lstm(x);
    }
    EXPECT_EQ(y.dtype(), dt);
    EXPECT_TRUE(allclose(values(y), values(ref), {3e-2, 3e-2}));
    y.sum().backward();
    for (const Tensor& w : lstm.parameters()) {
      ASSERT_TRUE(w.grad().defined());
      EXPECT_EQ(w.grad().dtype(), kFloat32);
    }
    EXPECT_EQ(lstm.parameters()[0].dtype(), kFloat32);
  }
}

// --- Trainer ----------------------------------------------------------------------------------

TEST(TrainerPrecision, MixedPrecisionTrainsAndUnknownNamesAreErrors) {
  for (const std::string precision : {"32", "bf16-mixed", "16-mixed"}) {
    manual_seed(24);
    Tensor x = rand({64, 4});
    Tensor y = argmax(x, 1);
    data::TensorDataset ds(x, y);
    nn::Sequential model{nn::Linear(4, 16), nn::ReLU(), nn::Linear(16, 4)};
    optim::Adam opt(model.parameters(), {.lr = 1e-2});
    Trainer trainer(model, opt, loss::CrossEntropy(), {}, Device::cpu());
    const History h = trainer.fit(ds, {.epochs = 5, .batch_size = 16, .verbose = 0,
                                       .precision = precision});
    EXPECT_LT(h["loss"].back(), h["loss"].front()) << precision;
    EXPECT_EQ(trainer.grad_scaler() != nullptr, precision == "16-mixed");
    EXPECT_EQ(model.parameters()[0].dtype(), kFloat32);
    const Logs logs = trainer.evaluate(ds, {.precision = precision});
    EXPECT_TRUE(std::isfinite(logs.front().second)) << precision;
  }
  nn::Linear fc(2, 2);
  optim::SGD opt(fc.parameters());
  Trainer trainer(fc, opt, loss::MSE(), {}, Device::cpu());
  data::TensorDataset ds(rand({4, 2}), rand({4, 2}));
  const std::string msg = error_of<ValueError>([&] { trainer.fit(ds, {.precision = "fp16"}); });
  EXPECT_TRUE(contains(msg, "'fp16'")) << msg;
  EXPECT_TRUE(contains(msg, "bf16-mixed")) << msg;
}

// --- the scaler in training checkpoints ----------------------------------------------------------

// A scaler after an overflow (scale halved) and one clean step (tracker 1).
optim::GradScaler scaler_in_use(optim::SGD& opt, Tensor& w) {
  optim::GradScaler scaler({.init_scale = 65536.0, .growth_interval = 5});
  for (double factor : {2.0, 0.5}) {  // 2 * 65536 overflows float16; 0.5 * 32768 does not
    opt.zero_grad();
    scaler.scale(sum(mul(w, factor))).backward();
    scaler.step(opt);
    scaler.update();
  }
  return scaler;
}

TEST(GradScalerCheckpoint, TheScaleAndTrackerTravelWithTheCheckpoint) {
  ember::testing::TempDir dir("ember_scaler_ckpt");
  nn::Linear fc(2, 2);
  Tensor w = ones({2}, {.dtype = kFloat16}).requires_grad_();
  optim::SGD opt({w}, {.lr = 0.1});
  const optim::GradScaler scaler = scaler_in_use(opt, w);
  ASSERT_EQ(scaler.get_scale(), 32768.0);
  ASSERT_EQ(scaler.growth_tracker(), 1);
  const std::string path = dir.file("ckpt.safetensors");
  io::save_checkpoint(path, fc, nullptr, {.epoch = 3}, &scaler);

  optim::GradScaler fresh({.init_scale = 8.0});
  EXPECT_EQ(io::load_checkpoint(path, fc, nullptr, &fresh).epoch, 3);
  EXPECT_EQ(fresh.get_scale(), 32768.0);
  EXPECT_EQ(fresh.growth_tracker(), 1);
  EXPECT_EQ(fresh.options().growth_interval, 5);

  // A checkpoint without a scaler section leaves a given scaler as it was.
  const std::string plain = dir.file("plain.safetensors");
  io::save_checkpoint(plain, fc, nullptr, {});
  optim::GradScaler other({.init_scale = 8.0});
  io::load_checkpoint(plain, fc, nullptr, &other);
  EXPECT_EQ(other.get_scale(), 8.0);

  // A bad scale is refused before anything changes: the model keeps its weights.
  io::SafetensorsFile f = io::load_safetensors(path);
  f.tensors.insert("grad_scaler.scale", scalar_tensor(-1.0, {.dtype = kFloat64}));
  const std::string bad = dir.file("bad.safetensors");
  io::save_safetensors(bad, f.tensors, f.metadata);
  nn::Linear target(2, 2);
  const std::vector<double> before = values(target.weight());
  optim::GradScaler untouched({.init_scale = 8.0});
  const std::string msg =
      error_of<Error>([&] { io::load_checkpoint(bad, target, nullptr, &untouched); });
  EXPECT_TRUE(contains(msg, "load_checkpoint: " + bad)) << msg;
  EXPECT_TRUE(contains(msg, "scale")) << msg;
  EXPECT_EQ(values(target.weight()), before);
  EXPECT_EQ(untouched.get_scale(), 8.0);
}

// A "16-mixed" run's training checkpoints hold its scaler, and resuming restores it.
TEST(GradScalerCheckpoint, TrainerResumesTheScaler) {
  ember::testing::TempDir dir("ember_scaler_resume");
  manual_seed(25);
  Tensor x = rand({32, 4});
  data::TensorDataset ds(x, argmax(x, 1));
  nn::Sequential model{nn::Linear(4, 8), nn::ReLU(), nn::Linear(8, 4)};
  optim::Adam opt(model.parameters(), {.lr = 1e-2});
  Trainer trainer(model, opt, loss::CrossEntropy(), {}, Device::cpu());
  const std::string path = dir.file("ckpt.safetensors");
  auto ckpt = std::make_shared<callbacks::ModelCheckpoint>(
      path, callbacks::ModelCheckpointOptions{.monitor = "loss", .training_state = true});
  trainer.fit(ds, {.epochs = 2, .batch_size = 8, .callbacks = {ckpt}, .verbose = 0,
                   .precision = "16-mixed"});
  const Tensor saved = io::load_safetensors(path).tensors.at("grad_scaler.scale");
  EXPECT_EQ(saved.item(), trainer.grad_scaler()->get_scale());
  Trainer resumed(model, opt, loss::CrossEntropy(), {}, Device::cpu());
  resumed.fit(ds, {.epochs = 2, .batch_size = 8, .verbose = 0, .resume_from = path,
                   .precision = "16-mixed"});
  ASSERT_NE(resumed.grad_scaler(), nullptr);
  EXPECT_EQ(resumed.grad_scaler()->get_scale(), saved.item());
}

}  // namespace
