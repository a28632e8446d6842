// The models the ONNX export tests export: every bundled sample's model (samples/models.h)
// and AllLayers, one model with every layer ember exports, in a forward of its own.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include <ember/ember.h>

#include "models.h"  // samples/models.h

namespace ember::interop {

// x [N, 3, 12, 12] -> log-probabilities [N, 5], through convolutions (padding, "same",
// dilation, groups, stride), batch and layer norm, every activation, the three pools, a
// residual add, reshapes, transpose, split and cat, and the three recurrent layers.
class AllLayers : public nn::Module {
 public:
  AllLayers() {
    c1_ = register_module("c1", nn::Conv2d(3, 8, 3, {.padding = 1}));
    bn2_ = register_module("bn2", nn::BatchNorm2d(8));
    c2_ =
        register_module("c2", nn::Conv2d(8, 8, 3, {.padding = "same", .dilation = 2, .groups = 4}));
    pool_ = register_module("pool", nn::MaxPool2d(2));
    c3_ = register_module(
        "c3", nn::Conv2d(8, 16, {3, 2}, {.stride = {2, 1}, .padding = {1, 0}, .bias = false}));
    avg_ = register_module(
        "avg", nn::AvgPool2d(3, {.stride = 1, .padding = 1, .count_include_pad = false}));
    gap_ = register_module("gap", nn::AdaptiveAvgPool2d(1));
    ln_ = register_module("ln", nn::LayerNorm({16}));
    lstm_ = register_module(
        "lstm", nn::LSTM(16, 12, {.num_layers = 2, .batch_first = true, .bidirectional = true}));
    gru_ = register_module("gru", nn::GRU(24, 8, {.batch_first = true}));
    rnn_ = register_module("rnn", nn::RNN(8, 6, {.nonlinearity = "relu"}));
    head_ = register_module(
        "head", nn::Sequential{nn::Linear(16, 10, {.activation = "gelu_tanh"}),
                               nn::BatchNorm1d(10), nn::LeakyReLU(0.1), nn::Dropout(0.3),
                               nn::Linear(10, 8, {.activation = "relu"}), nn::GELU("tanh"),
                               nn::Linear(8, 5, {.bias = false})});
    out_ = register_module("out", nn::LogSoftmax(1));
  }

  Tensor forward(const Tensor& x) override {
    Tensor h = gelu(bn2_(c1_(x)));                                      // [N, 8, 12, 12]
    h = relu(h + c2_(h));                                               // residual
    h = tanh(c3_(pool_(h)));                                            // [N, 16, 3, 5]
    h = sigmoid(avg_(h));                                               // [N, 16, 3, 5]
    const Tensor pooled = gap_(h).flatten(1);                           // [N, 16]
    Tensor seq = h.permute({0, 2, 3, 1}).reshape({h.size(0), 15, 16});  // [N, 15, 16]
    seq = gru_(lstm_(ln_(seq)));                                        // [N, 15, 8]
    const Tensor last = rnn_(seq.transpose(0, 1)).select(0, 14);        // [N, 6]
    const std::vector<Tensor> parts = split(pooled, {10, 6}, 1);
    Tensor z = head_(cat({parts[0], last}, 1));  // [N, 5]
    z = z * softmax(z, 1);
    return out_(z);
  }

  nn::OnnxValue emit_onnx(nn::OnnxGraph& g, const nn::OnnxValue& x) override {
    nn::OnnxValue h = g.gelu(g.call(bn2_, g.call(c1_, x)));
    h = g.relu(g.add(h, g.call(c2_, h)));
    h = g.tanh(g.call(c3_, g.call(pool_, h)));
    h = g.sigmoid(g.call(avg_, h));
    const nn::OnnxValue pooled = g.flatten(g.call(gap_, h), 1);
    nn::OnnxValue seq = g.reshape(g.permute(h, {0, 2, 3, 1}), {h.example.size(0), 15, 16});
    seq = g.call(gru_, g.call(lstm_, g.call(ln_, seq)));
    const nn::OnnxValue last = g.select(g.call(rnn_, g.transpose(seq, 0, 1)), 0, 14);
    const std::vector<nn::OnnxValue> parts = g.split(pooled, {10, 6}, 1);
    nn::OnnxValue z = g.call(head_, g.cat({parts[0], last}, 1));
    z = g.mul(z, g.softmax(z, 1));
    return g.call(out_, z);
  }

 private:
  nn::ModuleHolder<nn::Conv2d> c1_, c2_, c3_;
  nn::ModuleHolder<nn::BatchNorm2d> bn2_;
  nn::ModuleHolder<nn::MaxPool2d> pool_;
  nn::ModuleHolder<nn::AvgPool2d> avg_;
  nn::ModuleHolder<nn::AdaptiveAvgPool2d> gap_;
  nn::ModuleHolder<nn::LayerNorm> ln_;
  nn::ModuleHolder<nn::LSTM> lstm_;
  nn::ModuleHolder<nn::GRU> gru_;
  nn::ModuleHolder<nn::RNN> rnn_;
  nn::ModuleHolder<nn::Sequential> head_;
  nn::ModuleHolder<nn::LogSoftmax> out_;
};

// A model to export and the input it takes.
struct ExportCase {
  std::string name;
  std::shared_ptr<nn::Module> model;
  Shape input_shape;  // without the batch
  DType input_dtype = kFloat32;
  int64_t max_index = 0;
};

// A random input of `batch` rows: N(0, 1) floats, or ids in [0, max_index).
inline Tensor random_input(const ExportCase& c, int64_t batch, uint64_t seed) {
  Shape shape{batch};
  shape.insert(shape.end(), c.input_shape.begin(), c.input_shape.end());
  if (c.input_dtype == kInt64) {
    std::mt19937_64 gen(seed);
    std::uniform_int_distribution<int64_t> pick(0, c.max_index - 1);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<int64_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = pick(gen);
    return Tensor::from_vector(ids, shape);
  }
  manual_seed(seed);
  return randn(shape);
}

// Every sample's model, a GRU char_rnn, and AllLayers with running statistics that are not
// the initial ones (a few training-mode passes).
inline std::vector<ExportCase> export_cases() {
  manual_seed(1234);
  std::vector<ExportCase> cases;
  for (const auto& s : samples::sample_models()) {
    cases.push_back({s.name, s.make(nullptr), s.input_shape, s.input_dtype, s.max_index});
  }
  cases.push_back({"char_rnn_gru",
                   std::make_shared<samples::CharModel>(40, 16, 24, 2, true),
                   {12},
                   kInt64,
                   40});
  auto all = std::make_shared<AllLayers>();
  {
    NoGradGuard no_grad;
    all->train();
    for (int i = 0; i < 3; ++i) (*all)(randn({8, 3, 12, 12}) * 2.0 + 0.5);
  }
  cases.push_back({"all_layers", all, {3, 12, 12}});
  return cases;
}

}  // namespace ember::interop
