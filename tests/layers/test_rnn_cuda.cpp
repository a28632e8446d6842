// The sequence layers on the GPU (cuDNN's RNN) against the same layers on the CPU (the
// cells composed of ops): a layer is built on the CPU, a twin gets its state_dict and is
// moved with module.to(cuda:0), and both run the same input, initial state and lengths
// forward and backward. Outputs, final states, and the gradients of the input, the
// initial state and every parameter must agree for every cell, 1 and 2 layers, one and
// two directions, sequence- and batch-major layouts, with and without (unsorted) lengths.
// Also: the parameters become views into one flat buffer that optimizer steps update in
// place; separate weights passed to rnn() directly are packed; and Embedding, cat, stack
// and split match the CPU. Skipped, with the reason, without a GPU.
#include <ember/ember.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ember/core/cuda_context.h"
#include "layers/layer_test_util.h"

using namespace ember;

namespace {

using ember::testing::random_f32;
using ember::testing::expect_gpu_matches_cpu;

// Tolerance, stated once, relative to the largest magnitude of the CPU result: cuDNN (FMA
// math, TF32 off) differs from the CPU's composition only in float summation order, which
// compounds a little over the steps and layers of a sequence.
constexpr double kTol = 2e-4;

Device gpu() { return Device::cuda(0); }

class RnnCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
  }
};

struct Case {
  RnnMode mode;
  int64_t layers;
  bool bidirectional;
  bool batch_first;
  bool with_lengths;
  bool with_state;
  bool bias = true;
};

std::string describe(const Case& c) {
  const char* names[] = {"RNN tanh", "RNN relu", "LSTM", "GRU"};
  return std::string(names[static_cast<int>(c.mode)]) + ", " + std::to_string(c.layers) +
         " layer(s)" + (c.bidirectional ? ", bidirectional" : "") +
         (c.batch_first ? ", batch_first" : "") + (c.with_lengths ? ", lengths" : "") +
         (c.with_state ? ", h0" : "") + (c.bias ? "" : ", no bias");
}

std::unique_ptr<nn::RNNBase> make_layer(const Case& c, int64_t in, int64_t hidden) {
  const nn::LSTMOptions o{c.layers, c.bias, c.batch_first, 0.0, c.bidirectional};
  switch (c.mode) {
    case RnnMode::RnnTanh:
    case RnnMode::RnnRelu:
      return std::make_unique<nn::RNN>(
          in, hidden,
          nn::RNNOptions{c.layers, c.mode == RnnMode::RnnRelu ? "relu" : "tanh", c.bias,
                         c.batch_first, 0.0, c.bidirectional});
    case RnnMode::Lstm: return std::make_unique<nn::LSTM>(in, hidden, o);
    case RnnMode::Gru: return std::make_unique<nn::GRU>(in, hidden, o);
  }
  return nullptr;
}

struct Outputs {
  Tensor out, h, c;
};

Outputs run(nn::RNNBase& layer, const Tensor& x, const Tensor& h0, const Tensor& c0,
            const std::vector<int64_t>& lengths) {
  if (auto* l = dynamic_cast<nn::LSTM*>(&layer)) {
    auto r = l->forward(x, {h0, c0}, lengths);
    return {r.output, r.h_n, r.c_n};
  }
  if (auto* g = dynamic_cast<nn::GRU*>(&layer)) {
    auto r = g->forward(x, h0, lengths);
    return {r.output, r.h_n, Tensor()};
  }
  auto r = dynamic_cast<nn::RNN&>(layer).forward(x, h0, lengths);
  return {r.output, r.h_n, Tensor()};
}

// Forward and backward of the same case on both devices, then every comparison.
void compare_case(const Case& k, std::mt19937_64& gen) {
  const std::string what = describe(k);
  const int64_t in = 5, hidden = 6, t_len = 7, n = 4;
  auto cpu_layer = make_layer(k, in, hidden);
  auto gpu_layer = make_layer(k, in, hidden);
  gpu_layer->load_state_dict(cpu_layer->state_dict());
  gpu_layer->to(gpu());

  const Shape xs = k.batch_first ? Shape{n, t_len, in} : Shape{t_len, n, in};
  const Shape ss{k.layers * (k.bidirectional ? 2 : 1), n, hidden};
  const std::vector<int64_t> lengths = k.with_lengths ? std::vector<int64_t>{3, 7, 1, 5}
                                                      : std::vector<int64_t>{};
  const Tensor x = random_f32(xs, gen);
  const Tensor h0 = k.with_state ? random_f32(ss, gen) : Tensor();
  const bool lstm = k.mode == RnnMode::Lstm;
  const Tensor c0 = k.with_state && lstm ? random_f32(ss, gen) : Tensor();

  auto leaf = [](const Tensor& t, Device d) {
    return t.defined() ? t.to(d).detach().requires_grad_() : Tensor();
  };
  Tensor xc = leaf(x, Device::cpu()), hc = leaf(h0, Device::cpu()), cc = leaf(c0, Device::cpu());
  Tensor xg = leaf(x, gpu()), hg = leaf(h0, gpu()), cg = leaf(c0, gpu());
  const Outputs oc = run(*cpu_layer, xc, hc, cc, lengths);
  const Outputs og = run(*gpu_layer, xg, hg, cg, lengths);

  // sum(out * r1) + sum(h_n * r2) (+ sum(c_n * r3)): every output element its own weight.
  const Tensor r1 = random_f32(oc.out.shape(), gen), r2 = random_f32(oc.h.shape(), gen);
  const Tensor r3 = lstm ? random_f32(oc.c.shape(), gen) : Tensor();
  Tensor loss_c = add(sum(mul(oc.out, r1)), sum(mul(oc.h, r2)));
  Tensor loss_g = add(sum(mul(og.out, r1.to(gpu()))), sum(mul(og.h, r2.to(gpu()))));
  if (lstm) {
    loss_c = add(loss_c, sum(mul(oc.c, r3)));
    loss_g = add(loss_g, sum(mul(og.c, r3.to(gpu()))));
  }
  loss_c.backward();
  {
    // Blocks of x's size go back to the pool full of NaN, so a padded step of dx that
    // cuDNN left unwritten would show below (rnn_cudnn.cpp zero-fills dx when padded).
    std::vector<Tensor> junk;
    for (int i = 0; i < 16; ++i) {
      junk.push_back(full(xs, std::numeric_limits<double>::quiet_NaN(), {.device = gpu()}));
    }
  }
  loss_g.backward();

  expect_gpu_matches_cpu(og.out, oc.out, kTol, what + ": output");
  expect_gpu_matches_cpu(og.h, oc.h, kTol, what + ": h_n");
  if (lstm) expect_gpu_matches_cpu(og.c, oc.c, kTol, what + ": c_n");
  // Padded steps are exactly zero on both devices.
  if (k.with_lengths) {
    const auto g = og.out.cpu().contiguous().to_vector<float>();
    const int64_t width = og.out.size(2);
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t t = lengths[static_cast<size_t>(b)]; t < t_len; ++t) {
        for (int64_t j = 0; j < width; ++j) {
          const int64_t idx = k.batch_first ? (b * t_len + t) * width + j : (t * n + b) * width + j;
          ASSERT_EQ(g[static_cast<size_t>(idx)], 0.0f) << what << ": padding at step " << t;
        }
      }
    }
  }
  expect_gpu_matches_cpu(xg.grad(), xc.grad(), kTol, what + ": grad x");
  // The gradient of x at padded steps is exactly zero too.
  if (k.with_lengths) {
    const auto g = xg.grad().cpu().contiguous().to_vector<float>();
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t t = lengths[static_cast<size_t>(b)]; t < t_len; ++t) {
        for (int64_t j = 0; j < in; ++j) {
          const int64_t idx = k.batch_first ? (b * t_len + t) * in + j : (t * n + b) * in + j;
          ASSERT_EQ(g[static_cast<size_t>(idx)], 0.0f) << what << ": grad x at padded step " << t;
        }
      }
    }
  }
  if (k.with_state) {
    expect_gpu_matches_cpu(hg.grad(), hc.grad(), kTol, what + ": grad h0");
    if (lstm) expect_gpu_matches_cpu(cg.grad(), cc.grad(), kTol, what + ": grad c0");
  }
  const auto pc = cpu_layer->named_parameters(), pg = gpu_layer->named_parameters();
  ASSERT_EQ(pc.size(), pg.size()) << what;
  for (size_t i = 0; i < pc.size(); ++i) {
    ASSERT_EQ(pc[i].first, pg[i].first) << what;
    expect_gpu_matches_cpu(pg[i].second.grad(), pc[i].second.grad(), kTol, what + ": grad " + pc[i].first);
  }
}

}  // namespace

TEST_F(RnnCuda, EveryCellLayoutAndDirectionMatchesTheCpu) {
  std::mt19937_64 gen(1);
  for (RnnMode mode : {RnnMode::RnnTanh, RnnMode::RnnRelu, RnnMode::Lstm, RnnMode::Gru}) {
    for (int64_t layers : {1, 2}) {
      for (bool bidirectional : {false, true}) {
        for (bool batch_first : {false, true}) {
          for (bool with_lengths : {false, true}) {
            compare_case({mode, layers, bidirectional, batch_first, with_lengths,
                          /*with_state=*/with_lengths != batch_first},
                         gen);
          }
        }
      }
    }
  }
}

TEST_F(RnnCuda, WithoutBiasMatchesTheCpu) {
  std::mt19937_64 gen(2);
  compare_case({RnnMode::Lstm, 2, true, false, true, true, /*bias=*/false}, gen);
  compare_case({RnnMode::Gru, 1, false, true, false, true, /*bias=*/false}, gen);
  compare_case({RnnMode::RnnTanh, 2, false, false, true, false, /*bias=*/false}, gen);
}

TEST_F(RnnCuda, ParametersAreViewsOfOneFlatBufferThatOptimizersUpdateInPlace) {
  manual_seed(3);
  std::mt19937_64 gen(3);
  nn::LSTM cpu_layer(4, 8, {.num_layers = 2, .bidirectional = true});
  nn::LSTM gpu_layer(4, 8, {.num_layers = 2, .bidirectional = true});
  gpu_layer.load_state_dict(cpu_layer.state_dict());
  gpu_layer.to(gpu());
  optim::SGD opt_c(cpu_layer.parameters(), {.lr = 0.5});
  optim::SGD opt_g(gpu_layer.parameters(), {.lr = 0.5});  // holds the handles before flattening
  const Tensor x = random_f32({6, 3, 4}, gen);
  for (int step = 0; step < 3; ++step) {
    opt_c.zero_grad();
    opt_g.zero_grad();
    sum(cpu_layer(x)).backward();
    sum(gpu_layer(x.to(gpu()))).backward();
    if (step == 0) {
      // After the first GPU forward every parameter shares one storage.
      const auto params = gpu_layer.parameters();
      for (const Tensor& p : params) {
        EXPECT_EQ(p.impl().storage, params[0].impl().storage);
        EXPECT_TRUE(p.is_contiguous());
      }
      EXPECT_TRUE(rnn_weights_flat(params, RnnParams{RnnMode::Lstm, 4, 8, 2, true, false, 0.0,
                                                     true, true, "LSTM"}));
    }
    opt_c.step();
    opt_g.step();
  }
  expect_gpu_matches_cpu(gpu_layer(x.to(gpu())), cpu_layer(x), kTol, "after three SGD steps");
  const auto pc = cpu_layer.named_parameters(), pg = gpu_layer.named_parameters();
  for (size_t i = 0; i < pc.size(); ++i) {
    expect_gpu_matches_cpu(pg[i].second.detach(), pc[i].second.detach(), kTol, pc[i].first);
  }
  // Moving back to the CPU keeps the values (and the CPU path takes over).
  gpu_layer.to(Device::cpu());
  const Tensor back = gpu_layer(x);
  const auto want = cpu_layer(x).to_vector<float>(), got = back.to_vector<float>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], kTol);
}

TEST_F(RnnCuda, SeparateWeightsPassedToRnnArePackedEachCall) {
  std::mt19937_64 gen(4);
  RnnParams p;
  p.mode = RnnMode::Gru;
  p.input_size = 3;
  p.hidden_size = 5;
  p.num_layers = 2;
  p.bidirectional = true;
  std::vector<Tensor> wc, wg;
  for (const Shape& s : rnn_weight_shapes(p)) {
    wc.push_back(random_f32(s, gen, -0.4f, 0.4f).requires_grad_());
    wg.push_back(wc.back().to(gpu()).detach().requires_grad_());
  }
  EXPECT_FALSE(rnn_weights_flat(wg, p));
  const Tensor x = random_f32({4, 2, 3}, gen);
  const RnnResult rc = rnn(x, Tensor(), Tensor(), wc, {4, 2}, p);
  const RnnResult rg = rnn(x.to(gpu()), Tensor(), Tensor(), wg, {4, 2}, p);
  expect_gpu_matches_cpu(rg.output, rc.output, kTol, "output");
  expect_gpu_matches_cpu(rg.h_n, rc.h_n, kTol, "h_n");
  add(sum(rc.output), sum(rc.h_n)).backward();
  add(sum(rg.output), sum(rg.h_n)).backward();
  for (size_t i = 0; i < wc.size(); ++i) {
    expect_gpu_matches_cpu(wg[i].grad(), wc[i].grad(), kTol, "grad of weight " + std::to_string(i));
  }
}

TEST_F(RnnCuda, InferenceWithoutGradAndEvalDropoutMatchTheCpu) {
  manual_seed(5);
  std::mt19937_64 gen(5);
  nn::GRU cpu_layer(3, 4, {.num_layers = 3, .batch_first = true, .dropout = 0.3});
  nn::GRU gpu_layer(3, 4, {.num_layers = 3, .batch_first = true, .dropout = 0.3});
  gpu_layer.load_state_dict(cpu_layer.state_dict());
  gpu_layer.to(gpu());
  cpu_layer.eval();
  gpu_layer.eval();
  const Tensor x = random_f32({2, 6, 3}, gen);
  NoGradGuard no_grad;
  expect_gpu_matches_cpu(gpu_layer.forward(x.to(gpu()), Tensor(), {6, 3}).output,
               cpu_layer.forward(x, Tensor(), {6, 3}).output, kTol, "eval, no grad");
  // Training mode drops out between layers on the GPU too (cuDNN's own generator, so the
  // values differ from the CPU's): the output changes and stays finite.
  gpu_layer.train();
  const auto a = gpu_layer(x.to(gpu())).cpu().to_vector<float>();
  gpu_layer.eval();
  const auto b = gpu_layer(x.to(gpu())).cpu().to_vector<float>();
  double diff = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a[i]));
    diff = std::max(diff, std::fabs(double(a[i]) - b[i]));
  }
  EXPECT_GT(diff, 1e-4);
}

TEST_F(RnnCuda, EmbeddingMatchesTheCpuIncludingRepeatsAndPadding) {
  manual_seed(6);
  std::mt19937_64 gen(6);
  for (bool deterministic : {false, true}) {
    cuda::set_deterministic(deterministic);
    nn::Embedding cpu_emb(50, 7, {.padding_idx = 3});
    nn::Embedding gpu_emb(50, 7, {.padding_idx = 3});
    gpu_emb.load_state_dict(cpu_emb.state_dict());
    gpu_emb.to(gpu());
    std::uniform_int_distribution<int64_t> tok(0, 49);
    std::vector<int64_t> idx(300);
    for (auto& i : idx) i = tok(gen) % 10;  // many repeats, the padding row among them
    const Tensor ic = Tensor::from_vector(idx, {20, 15});
    const Tensor yc = cpu_emb(ic), yg = gpu_emb(ic.to(gpu()));
    expect_gpu_matches_cpu(yg, yc, 0.0, "forward");
    const Tensor r = random_f32(yc.shape(), gen);
    sum(mul(yc, r)).backward();
    sum(mul(yg, r.to(gpu()))).backward();
    expect_gpu_matches_cpu(gpu_emb.weight().grad(), cpu_emb.weight().grad(), 1e-5, "grad weight");
    EXPECT_THROW(gpu_emb(Tensor::from_vector(std::vector<int64_t>{0, 50}, {2}, gpu())), ShapeError);
  }
  cuda::set_deterministic(false);
}

TEST_F(RnnCuda, CatStackAndSplitMatchTheCpu) {
  std::mt19937_64 gen(7);
  const Tensor a = random_f32({3, 4}, gen), b = random_f32({3, 2}, gen);
  Tensor ac = a.clone().requires_grad_(), bc = b.clone().requires_grad_();
  Tensor ag = a.to(gpu()).detach().requires_grad_(), bg = b.to(gpu()).detach().requires_grad_();
  const Tensor yc = cat({ac, bc.t().contiguous().t()}, 1), yg = cat({ag, bg}, 1);
  expect_gpu_matches_cpu(yg, yc, 0.0, "cat");
  const auto pc = split(yc, {1, 5}, 1), pg = split(yg, {1, 5}, 1);
  const Tensor sc = stack({pc[1], mul(pc[1], 2.0)}, 0), sg = stack({pg[1], mul(pg[1], 2.0)}, 0);
  expect_gpu_matches_cpu(sg, sc, 0.0, "split then stack");
  const Tensor r = random_f32(sc.shape(), gen);
  sum(mul(sc, r)).backward();
  sum(mul(sg, r.to(gpu()))).backward();
  expect_gpu_matches_cpu(ag.grad(), ac.grad(), 1e-6, "grad a");
  expect_gpu_matches_cpu(bg.grad(), bc.grad(), 1e-6, "grad b");
}
