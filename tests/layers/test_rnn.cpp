// The sequence layers on the CPU: Embedding, and RNN, LSTM and GRU. Each cell's first step
// against values worked out by hand; whole stacks (layers, directions, lengths,
// batch-first) against a plain-loop reimplementation written from PyTorch's equations;
// float64 finite-difference gradients of the input, the initial state and every parameter;
// the shapes; padding (ignored, final state at each sequence's own end, the same as running
// that sequence alone); PyTorch's parameter names, shapes and init; state_dict round trips;
// and the errors, which name the layer and the shapes involved.
#include <ember/ember.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/check.h"
#include "layers/layer_test_util.h"

using namespace ember;
using ember::testing::error_of;

namespace {

using ember::testing::Float64;
using ember::testing::expect_close;
using ember::testing::f32;
using ember::testing::random_f64;
using ember::testing::set_state;
using ember::testing::values;

// Tolerances, stated once, relative to 1 + |expected|: float32 layers against values
// computed in double; float64 layers against the float64 plain loops.
constexpr double kTolF32 = 1e-5;
constexpr double kTolF64 = 1e-10;

void expect_same(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_TRUE(got.defined() && want.defined()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  expect_close(got, values(want), tol, what);
}

double sigmoid_d(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// ---- a plain-loop reference written from PyTorch's equations ----------------------------------

// Everything in double, row-major. x[t][n][i] is read at the layer's layout.
struct LoopRnn {
  RnnMode mode;
  int64_t in, hidden, layers;
  bool bidirectional, bias, batch_first;
  std::vector<std::vector<double>> w;  // named_parameters() order

  int64_t dirs() const { return bidirectional ? 2 : 1; }
  int64_t gates() const { return rnn_gate_count(mode); }

  // out: [T][N][D*H] (time-major), h_n/c_n: [L*D][N][H]
  void run(const std::vector<double>& x_in, int64_t t_len, int64_t n,
           const std::vector<int64_t>& lengths, std::vector<double>* out,
           std::vector<double>* h_n, std::vector<double>* c_n) const {
    const int64_t hs = hidden, g = gates();
    // Time-major copy of the input.
    std::vector<double> layer_in(static_cast<size_t>(t_len * n * in));
    for (int64_t t = 0; t < t_len; ++t)
      for (int64_t b = 0; b < n; ++b)
        for (int64_t i = 0; i < in; ++i)
          layer_in[(t * n + b) * in + i] =
              x_in[batch_first ? (b * t_len + t) * in + i : (t * n + b) * in + i];
    int64_t width = in;
    h_n->assign(static_cast<size_t>(layers * dirs() * n * hs), 0.0);
    c_n->assign(h_n->size(), 0.0);
    const int64_t per = bias ? 4 : 2;
    for (int64_t l = 0; l < layers; ++l) {
      std::vector<double> layer_out(static_cast<size_t>(t_len * n * dirs() * hs), 0.0);
      for (int64_t d = 0; d < dirs(); ++d) {
        const size_t base = static_cast<size_t>((l * dirs() + d) * per);
        const auto& wih = w[base];
        const auto& whh = w[base + 1];
        for (int64_t b = 0; b < n; ++b) {
          const int64_t len = lengths.empty() ? t_len : lengths[static_cast<size_t>(b)];
          std::vector<double> h(static_cast<size_t>(hs), 0.0), c(static_cast<size_t>(hs), 0.0);
          for (int64_t s = 0; s < len; ++s) {
            const int64_t t = d == 0 ? s : len - 1 - s;
            std::vector<double> gi(static_cast<size_t>(g * hs)), gh(static_cast<size_t>(g * hs));
            for (int64_t r = 0; r < g * hs; ++r) {
              double a = bias ? w[base + 2][r] : 0.0, e = bias ? w[base + 3][r] : 0.0;
              for (int64_t i = 0; i < width; ++i) a += wih[r * width + i] * layer_in[(t * n + b) * width + i];
              for (int64_t i = 0; i < hs; ++i) e += whh[r * hs + i] * h[i];
              gi[r] = a;
              gh[r] = e;
            }
            std::vector<double> h2(static_cast<size_t>(hs));
            for (int64_t j = 0; j < hs; ++j) {
              switch (mode) {
                case RnnMode::RnnTanh: h2[j] = std::tanh(gi[j] + gh[j]); break;
                case RnnMode::RnnRelu: h2[j] = std::max(0.0, gi[j] + gh[j]); break;
                case RnnMode::Lstm: {
                  const double ig = sigmoid_d(gi[j] + gh[j]);
                  const double fg = sigmoid_d(gi[hs + j] + gh[hs + j]);
                  const double cg = std::tanh(gi[2 * hs + j] + gh[2 * hs + j]);
                  const double og = sigmoid_d(gi[3 * hs + j] + gh[3 * hs + j]);
                  c[j] = fg * c[j] + ig * cg;
                  h2[j] = og * std::tanh(c[j]);
                  break;
                }
                case RnnMode::Gru: {
                  const double rg = sigmoid_d(gi[j] + gh[j]);
                  const double zg = sigmoid_d(gi[hs + j] + gh[hs + j]);
                  const double ng = std::tanh(gi[2 * hs + j] + rg * gh[2 * hs + j]);
                  h2[j] = (1 - zg) * ng + zg * h[j];
                  break;
                }
              }
            }
            h = h2;
            for (int64_t j = 0; j < hs; ++j) layer_out[(t * n + b) * dirs() * hs + d * hs + j] = h[j];
          }
          for (int64_t j = 0; j < hs; ++j) {
            (*h_n)[((l * dirs() + d) * n + b) * hs + j] = h[j];
            (*c_n)[((l * dirs() + d) * n + b) * hs + j] = c[j];
          }
        }
      }
      layer_in = layer_out;
      width = dirs() * hs;
    }
    // Back to the caller's layout.
    out->assign(layer_in.size(), 0.0);
    for (int64_t t = 0; t < t_len; ++t)
      for (int64_t b = 0; b < n; ++b)
        for (int64_t j = 0; j < width; ++j)
          (*out)[batch_first ? (b * t_len + t) * width + j : (t * n + b) * width + j] =
              layer_in[(t * n + b) * width + j];
  }
};

LoopRnn loop_of(const nn::RNNBase& layer, RnnMode mode, bool bias) {
  LoopRnn r{mode, layer.input_size(), layer.hidden_size(), layer.num_layers(),
            layer.bidirectional(), bias, layer.batch_first(), {}};
  for (const auto& [n, t] : layer.named_parameters()) r.w.push_back(values(t));
  return r;
}

// Checks the layer (float64) against the loops on a random batch.
template <typename Layer>
void expect_matches_loops(Layer& layer, RnnMode mode, bool bias, int64_t t_len, int64_t n,
                          const std::vector<int64_t>& lengths, uint64_t seed,
                          const std::string& what) {
  const Shape xs = layer.batch_first() ? Shape{n, t_len, layer.input_size()}
                                       : Shape{t_len, n, layer.input_size()};
  const Tensor x = random_f64(xs, seed);
  std::vector<double> out, h_n, c_n;
  loop_of(layer, mode, bias).run(values(x), t_len, n, lengths, &out, &h_n, &c_n);
  Tensor y, h, c;
  if constexpr (std::is_base_of_v<nn::LSTM, Layer>) {
    auto r = layer.forward(x, {}, lengths);
    y = r.output;
    h = r.h_n;
    c = r.c_n;
  } else {
    auto r = layer.forward(x, Tensor(), lengths);
    y = r.output;
    h = r.h_n;
  }
  expect_close(y, out, kTolF64, what + ": output");
  expect_close(h, h_n, kTolF64, what + ": h_n");
  if (c.defined()) expect_close(c, c_n, kTolF64, what + ": c_n");
}

// d(all outputs)/d(x, h0, c0, every parameter) against central differences.
void expect_gradients_match(nn::RNNBase& layer, bool lstm, const Shape& x_shape,
                            const std::vector<int64_t>& lengths, bool with_state,
                            const std::string& what) {
  const int64_t n = x_shape[layer.batch_first() ? 0 : 1];
  const Shape state{layer.num_layers() * (layer.bidirectional() ? 2 : 1), n, layer.hidden_size()};
  std::vector<Tensor> inputs{random_f64(x_shape, 7).requires_grad_()};
  if (with_state) {
    inputs.push_back(random_f64(state, 8).requires_grad_());
    if (lstm) inputs.push_back(random_f64(state, 9).requires_grad_());
  }
  for (const Tensor& p : layer.parameters()) inputs.push_back(p);
  auto fn = [&](const std::vector<Tensor>& in) {
    Tensor h0 = with_state ? in[1] : Tensor();
    Tensor c0 = with_state && lstm ? in[2] : Tensor();
    Tensor out, h_n, c_n;
    if (lstm) {
      auto r = dynamic_cast<nn::LSTM&>(layer).forward(in[0], {h0, c0}, lengths);
      out = r.output;
      h_n = r.h_n;
      c_n = r.c_n;
    } else if (auto* gru = dynamic_cast<nn::GRU*>(&layer)) {
      auto r = gru->forward(in[0], h0, lengths);
      out = r.output;
      h_n = r.h_n;
    } else {
      auto r = dynamic_cast<nn::RNN&>(layer).forward(in[0], h0, lengths);
      out = r.output;
      h_n = r.h_n;
    }
    std::vector<Tensor> parts{out.flatten(), h_n.flatten()};
    if (c_n.defined()) parts.push_back(c_n.flatten());
    return cat(parts, 0);
  };
  const GradCheckResult r = gradcheck(fn, inputs);
  EXPECT_TRUE(r.ok) << what << "\n" << r.report;
}

std::vector<std::string> names_of(const nn::Module& m) {
  std::vector<std::string> out;
  for (const auto& [n, t] : m.named_parameters()) out.push_back(n);
  return out;
}

}  // namespace

// ---- one step by hand ----------------------------------------------------------------------------

TEST(RNNLayer, OneStepIsTanhOfBothProjectionsAndBiases) {
  nn::RNN rnn(2, 1);
  set_state(rnn, {{"weight_ih_l0", f32({0.5f, -0.25f}, {1, 2})},
                  {"weight_hh_l0", f32({0.75f}, {1, 1})},
                  {"bias_ih_l0", f32({0.1f}, {1})},
                  {"bias_hh_l0", f32({-0.2f}, {1})}});
  // x = [1, 2], h0 = 0.4: 0.5 - 0.5 + 0.1 + 0.75 * 0.4 - 0.2 = 0.2
  auto r = rnn.forward(f32({1, 2}, {1, 1, 2}), f32({0.4f}, {1, 1, 1}));
  EXPECT_EQ(r.output.shape(), (Shape{1, 1, 1}));
  EXPECT_EQ(r.h_n.shape(), (Shape{1, 1, 1}));
  expect_close(r.output, {std::tanh(0.2)}, kTolF32);
  expect_close(r.h_n, {std::tanh(0.2)}, kTolF32);

  nn::RNN relu(2, 1, {.nonlinearity = "relu"});
  set_state(relu, {{"weight_ih_l0", f32({0.5f, -0.25f}, {1, 2})},
                   {"weight_hh_l0", f32({0.75f}, {1, 1})},
                   {"bias_ih_l0", f32({0.1f}, {1})},
                   {"bias_hh_l0", f32({-0.2f}, {1})}});
  expect_close(relu.forward(f32({1, 2}, {1, 1, 2}), f32({0.4f}, {1, 1, 1})).output, {0.2}, kTolF32);
  // -0.5 - 1 + 0.1 - 0.2 < 0
  expect_close(relu(f32({-1, 4}, {1, 1, 2})), {0.0}, kTolF32);
}

TEST(LSTMLayer, OneStepFollowsTheGatesInOrderIFGO) {
  nn::LSTM lstm(1, 1);
  // Gate rows i, f, g, o.
  set_state(lstm, {{"weight_ih_l0", f32({0.5f, -1.0f, 2.0f, 0.25f}, {4, 1})},
                   {"weight_hh_l0", f32({1.0f, 0.5f, -0.5f, 2.0f}, {4, 1})},
                   {"bias_ih_l0", f32({0.1f, 0.2f, 0.3f, 0.4f}, {4})},
                   {"bias_hh_l0", f32({0.0f, -0.1f, 0.1f, -0.2f}, {4})}});
  const double x = 0.8, h0 = -0.5, c0 = 0.3;
  const double i = sigmoid_d(0.5 * x + 1.0 * h0 + 0.1);
  const double f = sigmoid_d(-1.0 * x + 0.5 * h0 + 0.2 - 0.1);
  const double g = std::tanh(2.0 * x - 0.5 * h0 + 0.3 + 0.1);
  const double o = sigmoid_d(0.25 * x + 2.0 * h0 + 0.4 - 0.2);
  const double c1 = f * c0 + i * g, h1 = o * std::tanh(c1);
  auto r = lstm.forward(f32({0.8f}, {1, 1, 1}), {f32({-0.5f}, {1, 1, 1}), f32({0.3f}, {1, 1, 1})});
  expect_close(r.output, {h1}, kTolF32, "output");
  expect_close(r.h_n, {h1}, kTolF32, "h_n");
  expect_close(r.c_n, {c1}, kTolF32, "c_n");
}

TEST(GRULayer, OneStepAppliesTheResetGateToTheRecurrentCandidateWithItsBias) {
  nn::GRU gru(1, 1);
  // Gate rows r, z, n; b_hn = 0.6 sits inside r * (W_hn h + b_hn).
  set_state(gru, {{"weight_ih_l0", f32({0.5f, -1.0f, 2.0f}, {3, 1})},
                  {"weight_hh_l0", f32({1.0f, 0.5f, -1.5f}, {3, 1})},
                  {"bias_ih_l0", f32({0.1f, 0.2f, 0.3f}, {3})},
                  {"bias_hh_l0", f32({-0.2f, 0.1f, 0.6f}, {3})}});
  const double x = 0.7, h0 = 0.4;
  const double r = sigmoid_d(0.5 * x + 0.1 + 1.0 * h0 - 0.2);
  const double z = sigmoid_d(-1.0 * x + 0.2 + 0.5 * h0 + 0.1);
  const double n = std::tanh(2.0 * x + 0.3 + r * (-1.5 * h0 + 0.6));
  const double h1 = (1 - z) * n + z * h0;
  auto out = gru.forward(f32({0.7f}, {1, 1, 1}), f32({0.4f}, {1, 1, 1}));
  expect_close(out.output, {h1}, kTolF32, "output");
  expect_close(out.h_n, {h1}, kTolF32, "h_n");
}

TEST(LSTMLayer, ZeroInitialStateWhenNoneIsGiven) {
  manual_seed(3);
  nn::LSTM lstm(3, 4);
  const Tensor x = random_f64({5, 2, 3}, 1).to(kFloat32);
  auto a = lstm.forward(x, {});
  auto b = lstm.forward(x, {zeros({1, 2, 4}), zeros({1, 2, 4})});
  expect_same(a.output, b.output, kTolF32, "output");
  expect_same(a.c_n, b.c_n, kTolF32, "c_n");
}

// ---- whole stacks against the plain loops -------------------------------------------------------

TEST(RNNLayer, StacksMatchPlainLoops) {
  manual_seed(4);
  Float64<nn::RNN> one(3, 4);
  expect_matches_loops(one, RnnMode::RnnTanh, true, 5, 2, {}, 1, "RNN(3, 4)");
  Float64<nn::RNN> deep(3, 4, nn::RNNOptions{.num_layers = 2, .nonlinearity = "relu",
                                              .bidirectional = true});
  expect_matches_loops(deep, RnnMode::RnnRelu, true, 4, 3, {4, 1, 3}, 2, "RNN relu 2 layers bidi");
  Float64<nn::RNN> no_bias(2, 3, nn::RNNOptions{.bias = false, .batch_first = true});
  expect_matches_loops(no_bias, RnnMode::RnnTanh, false, 3, 2, {}, 3, "RNN no bias batch_first");
}

TEST(LSTMLayer, StacksMatchPlainLoops) {
  manual_seed(5);
  Float64<nn::LSTM> one(3, 4);
  expect_matches_loops(one, RnnMode::Lstm, true, 5, 2, {}, 4, "LSTM(3, 4)");
  Float64<nn::LSTM> deep(3, 2, nn::LSTMOptions{.num_layers = 3, .bidirectional = true});
  expect_matches_loops(deep, RnnMode::Lstm, true, 6, 3, {2, 6, 5}, 5, "LSTM 3 layers bidi lengths");
  Float64<nn::LSTM> bf(2, 3, nn::LSTMOptions{.num_layers = 2, .bias = false, .batch_first = true});
  expect_matches_loops(bf, RnnMode::Lstm, false, 4, 3, {1, 4, 2}, 6, "LSTM no bias batch_first");
}

TEST(GRULayer, StacksMatchPlainLoops) {
  manual_seed(6);
  Float64<nn::GRU> one(3, 4);
  expect_matches_loops(one, RnnMode::Gru, true, 5, 2, {}, 7, "GRU(3, 4)");
  Float64<nn::GRU> deep(2, 3, nn::GRUOptions{.num_layers = 2, .batch_first = true,
                                             .bidirectional = true});
  expect_matches_loops(deep, RnnMode::Gru, true, 5, 4, {5, 2, 1, 3}, 8, "GRU 2 layers bidi bf");
}

// ---- gradients -------------------------------------------------------------------------------------

TEST(RNNLayer, GradientsMatchFiniteDifferences) {
  manual_seed(10);
  Float64<nn::RNN> rnn(3, 2);
  expect_gradients_match(rnn, false, {4, 2, 3}, {}, true, "RNN(3, 2) with h0");
  Float64<nn::RNN> bidi(2, 2, nn::RNNOptions{.num_layers = 2, .nonlinearity = "relu",
                                             .bidirectional = true});
  expect_gradients_match(bidi, false, {3, 3, 2}, {3, 1, 2}, true, "RNN relu 2 layers bidi lengths");
}

TEST(LSTMLayer, GradientsMatchFiniteDifferences) {
  manual_seed(11);
  Float64<nn::LSTM> lstm(3, 2);
  expect_gradients_match(lstm, true, {4, 2, 3}, {}, true, "LSTM(3, 2) with h0, c0");
  Float64<nn::LSTM> deep(2, 2, nn::LSTMOptions{.num_layers = 2, .bidirectional = true});
  expect_gradients_match(deep, true, {4, 3, 2}, {2, 4, 3}, true, "LSTM 2 layers bidi lengths");
  Float64<nn::LSTM> bf(2, 3, nn::LSTMOptions{.bias = false, .batch_first = true});
  expect_gradients_match(bf, true, {2, 3, 2}, {1, 3}, false, "LSTM no bias batch_first");
}

TEST(GRULayer, GradientsMatchFiniteDifferences) {
  manual_seed(12);
  Float64<nn::GRU> gru(3, 2);
  expect_gradients_match(gru, false, {4, 2, 3}, {}, true, "GRU(3, 2) with h0");
  Float64<nn::GRU> deep(2, 2, nn::GRUOptions{.num_layers = 2, .batch_first = true,
                                             .bidirectional = true});
  expect_gradients_match(deep, false, {3, 4, 2}, {4, 1, 2}, true, "GRU 2 layers bidi bf lengths");
}

// ---- shapes, layouts and padding ------------------------------------------------------------------

TEST(RecurrentLayers, OutputAndStateShapesArePyTorchs) {
  const Tensor x = zeros({7, 5, 3});  // [T, N, in]
  nn::LSTM lstm(3, 4, {.num_layers = 2, .bidirectional = true});
  auto r = lstm.forward(x, {});
  EXPECT_EQ(r.output.shape(), (Shape{7, 5, 8}));
  EXPECT_EQ(r.h_n.shape(), (Shape{4, 5, 4}));
  EXPECT_EQ(r.c_n.shape(), (Shape{4, 5, 4}));
  nn::GRU gru(3, 6, {.num_layers = 3, .batch_first = true});
  auto g = gru.forward(zeros({5, 7, 3}), Tensor());
  EXPECT_EQ(g.output.shape(), (Shape{5, 7, 6}));
  EXPECT_EQ(g.h_n.shape(), (Shape{3, 5, 6}));
  nn::RNN rnn(3, 2);
  auto s = rnn.forward(x, Tensor());
  EXPECT_EQ(s.output.shape(), (Shape{7, 5, 2}));
  EXPECT_EQ(s.h_n.shape(), (Shape{1, 5, 2}));
  EXPECT_EQ(rnn(x).shape(), (Shape{7, 5, 2}));  // the Module call gives the output only
}

TEST(RecurrentLayers, BatchFirstIsTheSameComputationTransposed) {
  manual_seed(13);
  nn::LSTM seq(3, 4, {.num_layers = 2, .bidirectional = true});
  nn::LSTM bf(3, 4, {.num_layers = 2, .batch_first = true, .bidirectional = true});
  bf.load_state_dict(seq.state_dict());
  const Tensor x = random_f64({6, 3, 3}, 14).to(kFloat32);
  const std::vector<int64_t> lengths{6, 2, 4};
  auto a = seq.forward(x, {}, lengths);
  auto b = bf.forward(x.transpose(0, 1).contiguous(), {}, lengths);
  expect_same(b.output.transpose(0, 1), a.output, kTolF32, "output");
  expect_same(b.h_n, a.h_n, kTolF32, "h_n");
  expect_same(b.c_n, a.c_n, kTolF32, "c_n");
}

TEST(RecurrentLayers, PaddingIsIgnoredAndEachSequenceEndsAtItsOwnLength) {
  manual_seed(15);
  for (bool bidirectional : {false, true}) {
    nn::GRU gru(2, 3, {.num_layers = 2, .batch_first = true, .bidirectional = bidirectional});
    const int64_t t_len = 5;
    const std::vector<int64_t> lengths{3, 5, 1};  // unsorted
    const Tensor x = random_f64({3, t_len, 2}, 16).to(kFloat32);
    auto r = gru.forward(x, Tensor(), lengths);
    // Garbage in the padding changes nothing.
    Tensor noisy = x.clone();
    {
      NoGradGuard no_grad;
      noisy.narrow(0, 0, 1).narrow(1, 3, 2).fill_(1e3);
      noisy.narrow(0, 2, 1).narrow(1, 1, 4).fill_(-7.0);
    }
    auto rn = gru.forward(noisy, Tensor(), lengths);
    expect_same(rn.output, r.output, kTolF32, "output with garbage padding");
    expect_same(rn.h_n, r.h_n, kTolF32, "h_n with garbage padding");
    const int64_t width = bidirectional ? 6 : 3;
    for (int64_t b = 0; b < 3; ++b) {
      const int64_t len = lengths[static_cast<size_t>(b)];
      // Padded steps output zero.
      if (len < t_len) {
        for (double v : values(r.output.select(0, b).narrow(0, len, t_len - len)))
          EXPECT_EQ(v, 0.0) << "sequence " << b;
      }
      // The same sequence alone, unpadded.
      auto alone = gru.forward(x.narrow(0, b, 1).narrow(1, 0, len), Tensor());
      expect_same(r.output.narrow(0, b, 1).narrow(1, 0, len), alone.output, kTolF32,
                  "sequence " + std::to_string(b) + " output, bidirectional " +
                      std::to_string(bidirectional));
      expect_same(r.h_n.narrow(1, b, 1), alone.h_n, kTolF32,
                  "sequence " + std::to_string(b) + " h_n");
      EXPECT_EQ(r.output.size(2), width);
    }
  }
}

TEST(LSTMLayer, LengthsAsATensorOrAVectorAgree) {
  manual_seed(17);
  nn::LSTM lstm(2, 3, {.bidirectional = true});
  const Tensor x = random_f64({4, 3, 2}, 18).to(kFloat32);
  auto a = lstm.forward(x, {}, Tensor::from_vector(std::vector<int64_t>{2, 4, 3}, {3}));
  auto b = lstm.forward(x, {}, {2, 4, 3});
  expect_same(a.output, b.output, 0.0, "output");
  expect_same(a.c_n, b.c_n, 0.0, "c_n");
  // Full lengths are the unpadded computation.
  auto full = lstm.forward(x, {}, {4, 4, 4});
  auto none = lstm.forward(x, {});
  expect_same(full.output, none.output, kTolF32, "full lengths");
}

TEST(RecurrentLayers, DropoutActsBetweenLayersInTrainingOnly) {
  manual_seed(19);
  nn::LSTM with(3, 4, {.num_layers = 2, .dropout = 0.5});
  nn::LSTM without(3, 4, {.num_layers = 2});
  without.load_state_dict(with.state_dict());
  const Tensor x = random_f64({5, 2, 3}, 20).to(kFloat32);
  with.eval();
  without.eval();
  expect_same(with(x), without(x), 0.0, "eval");
  with.train();
  without.train();
  const auto a = values(with(x)), b = values(without(x));
  double diff = 0.0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::fabs(a[i] - b[i]));
  EXPECT_GT(diff, 1e-3) << "training mode with dropout 0.5 should differ";
  // One layer: nothing to drop between.
  nn::GRU single(3, 4, {.dropout = 0.5});
  nn::GRU plain(3, 4);
  plain.load_state_dict(single.state_dict());
  expect_same(single(x), plain(x), 0.0, "one layer");
}

// ---- parameters ------------------------------------------------------------------------------------

TEST(RecurrentLayers, ParametersAreNamedAndShapedAsInPyTorch) {
  nn::LSTM lstm(10, 20, {.num_layers = 2, .bidirectional = true});
  const std::vector<std::string> lstm_names{
      "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
      "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
      "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
      "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse"};
  EXPECT_EQ(names_of(lstm), lstm_names);
  const auto p = lstm.named_parameters();
  EXPECT_EQ(p[0].second.shape(), (Shape{80, 10}));
  EXPECT_EQ(p[1].second.shape(), (Shape{80, 20}));
  EXPECT_EQ(p[2].second.shape(), (Shape{80}));
  EXPECT_EQ(p[8].second.shape(), (Shape{80, 40}));  // layer 1 reads both directions
  EXPECT_EQ(lstm.num_parameters(), 2 * (80 * 10 + 80 * 20 + 160) + 2 * (80 * 40 + 80 * 20 + 160));

  nn::GRU gru(5, 7);
  EXPECT_EQ(gru.named_parameters()[0].second.shape(), (Shape{21, 5}));
  EXPECT_EQ(gru.named_parameters()[1].second.shape(), (Shape{21, 7}));
  nn::RNN rnn(5, 7, {.num_layers = 2, .bias = false});
  EXPECT_EQ(names_of(rnn), (std::vector<std::string>{"weight_ih_l0", "weight_hh_l0",
                                                     "weight_ih_l1", "weight_hh_l1"}));
  EXPECT_EQ(rnn.named_parameters()[2].second.shape(), (Shape{7, 7}));
}

TEST(RecurrentLayers, InitIsUniformWithinOneOverSqrtHidden) {
  manual_seed(21);
  nn::LSTM lstm(30, 64);
  const double bound = 1.0 / std::sqrt(64.0);
  for (const auto& [n, t] : lstm.named_parameters()) {
    double max_abs = 0.0;
    for (float v : t.to_vector<float>()) max_abs = std::max(max_abs, std::fabs(double(v)));
    EXPECT_LE(max_abs, bound) << n;
    EXPECT_GT(max_abs, 0.9 * bound) << n;
  }
}

TEST(RecurrentLayers, ReprReadsLikePyTorchs) {
  EXPECT_EQ(nn::LSTM(28, 128, {.num_layers = 2, .batch_first = true}).repr(),
            "LSTM(28, 128, num_layers=2, batch_first=True)");
  EXPECT_EQ(nn::GRU(3, 4, {.bias = false, .dropout = 0.25, .bidirectional = true}).repr(),
            "GRU(3, 4, bias=False, dropout=0.25, bidirectional=True)");
  EXPECT_EQ(nn::RNN(3, 4, {.nonlinearity = "relu"}).repr(), "RNN(3, 4, nonlinearity='relu')");
  EXPECT_EQ(nn::Embedding(10, 3, {.padding_idx = 0}).repr(), "Embedding(10, 3, padding_idx=0)");
}

TEST(RecurrentLayers, StateDictRoundTripGivesTheSameModel) {
  manual_seed(22);
  nn::LSTM a(3, 4, {.num_layers = 2, .bidirectional = true});
  manual_seed(23);
  nn::LSTM b(3, 4, {.num_layers = 2, .bidirectional = true});
  const Tensor x = random_f64({5, 2, 3}, 24).to(kFloat32);
  EXPECT_NE(values(a(x)), values(b(x)));
  b.load_state_dict(a.state_dict());
  expect_same(b(x), a(x), 0.0, "in memory");
  // Through a safetensors file, keys as PyTorch's state_dict has them.
  const std::string path = ::testing::TempDir() + "ember_lstm_roundtrip.safetensors";
  io::save(a, path);
  manual_seed(25);
  nn::LSTM c(3, 4, {.num_layers = 2, .bidirectional = true});
  io::load(c, path);
  expect_same(c(x), a(x), 0.0, "through a file");
  std::remove(path.c_str());
}

// ---- errors ---------------------------------------------------------------------------------------

TEST(RecurrentLayers, BadInputsAreShapeErrorsNamingTheLayerAndShapes) {
  nn::LSTM lstm(3, 4, {.num_layers = 2});
  const std::string features = error_of<ShapeError>([&] { lstm(zeros({5, 2, 7})); });
  EXPECT_NE(features.find("LSTM(3, 4, num_layers=2)"), std::string::npos) << features;
  EXPECT_NE(features.find("[5, 2, 7] has 7 features, expected 3"), std::string::npos) << features;

  const std::string rank = error_of<ShapeError>([&] { lstm(zeros({5, 3})); });
  EXPECT_NE(rank.find("expected input [seq_len, batch, 3], got [5, 3]"), std::string::npos) << rank;

  const std::string h0 = error_of<ShapeError>([&] {
    lstm.forward(zeros({5, 2, 3}), {zeros({1, 2, 4}), zeros({2, 2, 4})});
  });
  EXPECT_NE(h0.find("h0 has shape [1, 2, 4], expected [2, 2, 4]"), std::string::npos) << h0;
  const std::string c0 = error_of<ShapeError>([&] {
    lstm.forward(zeros({5, 2, 3}), {zeros({2, 2, 4}), zeros({2, 3, 4})});
  });
  EXPECT_NE(c0.find("c0 has shape [2, 3, 4], expected [2, 2, 4]"), std::string::npos) << c0;

  nn::GRU gru(3, 4, {.batch_first = true});
  const std::string longer = error_of<ShapeError>([&] {
    gru.forward(zeros({2, 5, 3}), Tensor(), {5, 6});
  });
  EXPECT_NE(longer.find("lengths[1] = 6 is longer than the sequence"), std::string::npos) << longer;
  EXPECT_NE(longer.find("GRU(3, 4, batch_first=True)"), std::string::npos) << longer;
  const std::string zero = error_of<ShapeError>([&] {
    gru.forward(zeros({2, 5, 3}), Tensor(), {0, 2});
  });
  EXPECT_NE(zero.find("lengths[0] = 0 is less than 1"), std::string::npos) << zero;
  const std::string count = error_of<ShapeError>([&] {
    gru.forward(zeros({2, 5, 3}), Tensor(), {5, 2, 1});
  });
  EXPECT_NE(count.find("got 3 sequence lengths for a batch of 2"), std::string::npos) << count;
  EXPECT_THROW(gru.forward(zeros({2, 5, 3}), Tensor(), Tensor::from_vector(std::vector<int32_t>{5, 2}, {2})),
               DTypeError);

  EXPECT_THROW(nn::RNN(3, 4, {.nonlinearity = "sigmoid"}), Error);
  EXPECT_THROW(nn::LSTM(3, 4, {.dropout = 1.5}), Error);
  EXPECT_THROW(nn::LSTM(0, 4), Error);
}

// ---- Embedding --------------------------------------------------------------------------------------

TEST(EmbeddingLayer, LooksUpRowsForIndicesOfAnyShape) {
  nn::Embedding emb(4, 2);
  EXPECT_EQ(emb.weight().shape(), (Shape{4, 2}));
  set_state(emb, {{"weight", f32({0, 1, 10, 11, 20, 21, 30, 31}, {4, 2})}});
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{3, 0, 3, 1, 2, 2}, {2, 3});
  const Tensor y = emb(idx);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 2}));
  expect_close(y, {30, 31, 0, 1, 30, 31, 10, 11, 20, 21, 20, 21}, 0.0);
}

TEST(EmbeddingLayer, BackwardSumsTheGradientsOfRepeatedIndices) {
  nn::Embedding emb(4, 2);
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{1, 3, 1, 1}, {4});
  const Tensor g = f32({1, 2, 3, 4, 5, 6, 7, 8}, {4, 2});
  sum(mul(emb(idx), g)).backward();
  expect_close(emb.weight().grad(), {0, 0, 1 + 5 + 7, 2 + 6 + 8, 0, 0, 3, 4}, 0.0);
}

TEST(EmbeddingLayer, PaddingRowStartsAtZeroAndGetsNoGradient) {
  manual_seed(26);
  nn::Embedding emb(5, 3, {.padding_idx = 2});
  EXPECT_EQ(emb.padding_idx(), 2);
  expect_close(emb.weight().select(0, 2), {0, 0, 0}, 0.0);
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{2, 0, 2, 4}, {4});
  expect_close(emb(idx).select(0, 0), {0, 0, 0}, 0.0);
  sum(emb(idx)).backward();
  const auto g = values(emb.weight().grad());
  EXPECT_EQ(std::vector<double>(g.begin() + 6, g.begin() + 9), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(std::vector<double>(g.begin(), g.begin() + 3), (std::vector<double>{1, 1, 1}));
  // A negative padding_idx counts from the end.
  nn::Embedding last(5, 3, {.padding_idx = -1});
  EXPECT_EQ(last.padding_idx(), 4);
  expect_close(last.weight().select(0, 4), {0, 0, 0}, 0.0);
}

TEST(EmbeddingLayer, GradientsMatchFiniteDifferences) {
  manual_seed(27);
  Float64<nn::Embedding> emb(6, 3);
  // Repeated indices, and a row (1) that is never looked up.
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{0, 2, 5, 0, 3, 4, 0}, {7});
  const GradCheckResult r = gradcheck(
      [&](const std::vector<Tensor>& in) { return embedding(in[0], idx); }, {emb.weight()});
  EXPECT_TRUE(r.ok) << r.report;
  // With padding: the padding row is left out of the lookup here (its gradient is zero by
  // definition, see PaddingRowStartsAtZeroAndGetsNoGradient).
  const GradCheckResult p = gradcheck(
      [&](const std::vector<Tensor>& in) { return embedding(in[0], idx.reshape({1, 7}), 1); },
      {emb.weight()});
  EXPECT_TRUE(p.ok) << p.report;
}

TEST(EmbeddingLayer, BadIndicesAreErrors) {
  nn::Embedding emb(4, 2);
  const std::string range = error_of<ShapeError>([&] {
    emb(Tensor::from_vector(std::vector<int64_t>{0, 4}, {2}));
  });
  EXPECT_NE(range.find("index 4 is out of range for a table of 4 rows"), std::string::npos) << range;
  EXPECT_THROW(emb(Tensor::from_vector(std::vector<int64_t>{-1}, {1})), ShapeError);
  EXPECT_THROW(emb(zeros({2})), DTypeError);
  EXPECT_THROW(nn::Embedding(4, 2, {.padding_idx = 4}), Error);
}

// ---- a model made of them ---------------------------------------------------------------------------

TEST(RecurrentLayers, EmbeddingIntoLSTMIntoLinearTrains) {
  manual_seed(28);
  // Predict the previous token: needs the recurrence.
  nn::Embedding emb(5, 8);
  nn::LSTM lstm(8, 16, {.batch_first = true});
  nn::Linear head(16, 5);
  std::vector<Tensor> params;
  for (nn::Module* m : std::vector<nn::Module*>{&emb, &lstm, &head})
    for (const Tensor& p : m->parameters()) params.push_back(p);
  optim::Adam opt(params, {.lr = 0.02});
  std::mt19937_64 gen(29);
  std::uniform_int_distribution<int64_t> tok(0, 4);
  double first = 0.0, last = 0.0;
  for (int step = 0; step < 60; ++step) {
    std::vector<int64_t> seq(8 * 6), target(8 * 6);
    for (size_t i = 0; i < seq.size(); ++i) seq[i] = tok(gen);
    for (size_t i = 0; i < seq.size(); ++i) target[i] = i % 6 == 0 ? 0 : seq[i - 1];
    const Tensor x = Tensor::from_vector(seq, {8, 6});
    const Tensor y = Tensor::from_vector(target, {48});
    Tensor logits = head(lstm(emb(x))).reshape({48, 5});
    Tensor loss = cross_entropy(logits, y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item();
    last = loss.item();
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << ", last " << last;
}
