// The bundled samples' models, shared by the samples, the ONNX export tests and
// `ember export-onnx`: one function or class per sample, built exactly as the sample builds
// it, and a table of them with the input each takes (sample_models()).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ember/ember.h>

namespace samples {

using namespace ember;

// --- Sequential models -------------------------------------------------------------------

// binary_ffn: Flatten → Dense 10 ReLU → Dense 1 sigmoid (Keras's Dense init).
inline nn::Sequential binary_ffn_model() {
  const nn::LinearOptions dense{.init = "glorot_uniform"};
  return nn::Sequential{nn::Flatten(), nn::Linear(784, 10, dense), nn::ReLU(),
                        nn::Linear(10, 1, dense), nn::Sigmoid()};
}

// dense_classifier: Flatten → Dense 32 ReLU → Dense 10 softmax.
inline nn::Sequential dense_classifier_model() {
  const nn::LinearOptions dense{.init = "glorot_uniform"};
  return nn::Sequential{nn::Flatten(), nn::Linear(784, 32, dense), nn::ReLU(),
                        nn::Linear(32, 10, dense), nn::Softmax(1)};
}

// fashion_cnn_raw: the seed CNN as an nn::Sequential.
inline nn::Sequential fashion_cnn_raw_model() {
  return nn::Sequential{
      nn::Conv2d(1, 32, 3), nn::ReLU(), nn::MaxPool2d(2),
      nn::Conv2d(32, 64, 3), nn::ReLU(), nn::MaxPool2d(2),
      nn::Flatten(), nn::Linear(64 * 5 * 5, 128), nn::ReLU(), nn::Linear(128, 10)};
}

// fashion_mlp --trainer: the 784-256-10 MLP (the raw-API version holds bare tensors, not
// a module, and computes the same function).
inline nn::Sequential fashion_mlp_model() {
  return nn::Sequential{nn::Flatten(), nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 10)};
}

// image_folder_cnn: Keras's flow_from_directory CNN on 150x150 RGB images.
inline nn::Sequential image_folder_cnn_model(int64_t num_classes) {
  return nn::Sequential{
      nn::Conv2d(3, 32, 3),   nn::ReLU(), nn::MaxPool2d(2),   // [N, 32, 74, 74]
      nn::Conv2d(32, 64, 3),  nn::ReLU(), nn::MaxPool2d(2),   // [N, 64, 36, 36]
      nn::Conv2d(64, 128, 3), nn::ReLU(), nn::MaxPool2d(2),   // [N, 128, 17, 17]
      nn::Flatten(),
      nn::Linear(128 * 17 * 17, 512), nn::ReLU(),
      nn::Linear(512, num_classes), nn::Softmax()};
}

// sequential_cnn: the Keras Sequential CNN with a softmax output.
inline nn::Sequential sequential_cnn_model(int64_t num_classes = 10) {
  return nn::Sequential{
      nn::Conv2d(1, 32, 3),  nn::ReLU(), nn::MaxPool2d(2),   // [N, 32, 13, 13]
      nn::Conv2d(32, 64, 3), nn::ReLU(), nn::MaxPool2d(2),   // [N, 64, 5, 5]
      nn::Flatten(), nn::Linear(64 * 5 * 5, num_classes), nn::Softmax()};
}

// small_dense: Dense 64 ReLU (100 inputs) → Dense 10 softmax.
inline nn::Sequential small_dense_model(int64_t features = 100) {
  const nn::LinearOptions dense{.init = "glorot_uniform"};
  return nn::Sequential{nn::Linear(features, 64, dense), nn::ReLU(), nn::Linear(64, 10, dense),
                        nn::Softmax(1)};
}

// --- models with their own forward ----------------------------------------------------------

// fashion_cnn: the seed CNN by subclassing nn::Module.
class FashionCnn : public nn::Module {
 public:
  FashionCnn() {
    conv1_ = register_module("conv1", nn::Conv2d(1, 32, 3));
    conv2_ = register_module("conv2", nn::Conv2d(32, 64, 3));
    pool_ = register_module("pool", nn::MaxPool2d(2));
    // Dense 128 ReLU: on a GPU the bias and the ReLU run inside the GEMM (cuBLASLt).
    fc1_ = register_module("fc1", nn::Linear(64 * 5 * 5, 128, {.activation = "relu"}));
    fc2_ = register_module("fc2", nn::Linear(128, 10));
  }

  // x: [N, 1, 28, 28] -> logits [N, 10]
  Tensor forward(const Tensor& x) override {
    Tensor h = pool_(relu(conv1_(x)));  // [N, 32, 13, 13]
    h = pool_(relu(conv2_(h)));         // [N, 64, 5, 5]
    h = fc1_(h.flatten(1));             // [N, 128]
    return fc2_(h);
  }
  // The same steps on ONNX graph values (io::export_onnx).
  nn::OnnxValue emit_onnx(nn::OnnxGraph& g, const nn::OnnxValue& x) override {
    nn::OnnxValue h = g.call(pool_, g.relu(g.call(conv1_, x)));
    h = g.call(pool_, g.relu(g.call(conv2_, h)));
    h = g.call(fc1_, g.flatten(h, 1));
    return g.call(fc2_, h);
  }
  // name() is "FashionCnn", the class's own name, as Module's default.

 private:
  // Shared handles to the registered layers, called like functions: conv1_(x).
  nn::ModuleHolder<nn::Conv2d> conv1_, conv2_;
  nn::ModuleHolder<nn::MaxPool2d> pool_;
  nn::ModuleHolder<nn::Linear> fc1_, fc2_;
};

// sequence_lstm: each image read as 28 rows of 28 pixels by a 2-layer LSTM, whose output
// at the last step goes to a Dense 10 head.
class RowLstm : public nn::Module {
 public:
  RowLstm() {
    lstm_ = register_module("lstm", nn::LSTM(28, 128, {.num_layers = 2, .batch_first = true}));
    head_ = register_module("head", nn::Linear(128, 10));
  }

  // x: [N, 1, 28, 28] -> logits [N, 10]
  Tensor forward(const Tensor& x) override {
    const Tensor rows = x.reshape({x.size(0), 28, 28});  // [N, 28 steps, 28 pixels]
    const Tensor out = lstm_(rows);                      // [N, 28, 128]
    return head_(out.select(1, 27));                     // the last step
  }
  nn::OnnxValue emit_onnx(nn::OnnxGraph& g, const nn::OnnxValue& x) override {
    const nn::OnnxValue rows = g.reshape(x, {x.example.size(0), 28, 28});
    const nn::OnnxValue out = g.call(lstm_, rows);
    return g.call(head_, g.select(out, 1, 27));
  }

 private:
  nn::ModuleHolder<nn::LSTM> lstm_;
  nn::ModuleHolder<nn::Linear> head_;
};

// char_rnn: Embedding → LSTM or GRU (batch-first) → Linear over the vocabulary.
class CharModel : public nn::Module {
 public:
  CharModel(int64_t vocab, int64_t embed, int64_t hidden, int64_t layers, bool gru) {
    embed_ = register_module("embed", nn::Embedding(vocab, embed));
    if (gru) {
      gru_ = register_module("rnn",
                             nn::GRU(embed, hidden, {.num_layers = layers, .batch_first = true}));
    } else {
      lstm_ = register_module("rnn",
                              nn::LSTM(embed, hidden, {.num_layers = layers, .batch_first = true}));
    }
    head_ = register_module("head", nn::Linear(hidden, vocab));
  }

  // ids [N, T] -> logits [N, T, vocab], from a zero state.
  Tensor forward(const Tensor& ids) override {
    State s;
    return step(ids, &s);
  }
  nn::OnnxValue emit_onnx(nn::OnnxGraph& g, const nn::OnnxValue& ids) override {
    const nn::OnnxValue e = g.call(embed_, ids);
    return g.call(head_, lstm_ ? g.call(lstm_, e) : g.call(gru_, e));
  }

  // The recurrent state carried between calls (undefined: zeros).
  struct State {
    Tensor h, c;
  };
  // ids [N, T] -> logits [N, T, vocab]; reads and updates *state.
  Tensor step(const Tensor& ids, State* state) {
    const Tensor e = embed_(ids);
    Tensor out;
    if (lstm_) {
      auto r = lstm_->forward(e, {state->h, state->c});
      out = r.output;
      *state = {r.h_n, r.c_n};
    } else {
      auto r = gru_->forward(e, state->h);
      out = r.output;
      state->h = r.h_n;
    }
    return head_(out);
  }

 private:
  nn::ModuleHolder<nn::Embedding> embed_;
  nn::ModuleHolder<nn::LSTM> lstm_;  // one of the two is registered, the other stays empty
  nn::ModuleHolder<nn::GRU> gru_;
  nn::ModuleHolder<nn::Linear> head_;
};

// --- the table ------------------------------------------------------------------------------

// A bundled sample's model and the input it takes (the batch first, then `input_shape`).
struct SampleModel {
  std::string name;   // the sample's name: "fashion_cnn"
  Shape input_shape;  // without the batch
  DType input_dtype = kFloat32;
  int64_t max_index = 0;  // int64 inputs: ids in [0, max_index)
  // Builds the model; given a state dict, with the sizes it holds (class count, vocabulary,
  // hidden units, layers) where the sample lets them vary.
  std::function<std::shared_ptr<nn::Module>(const nn::StateDict*)> make;
};

namespace detail {

// The size of `key`'s dim `dim` in `weights`, or `fallback` without weights or key.
inline int64_t size_in(const nn::StateDict* weights, const std::string& key, int64_t dim,
                       int64_t fallback) {
  const Tensor* t = weights == nullptr ? nullptr : weights->find(key);
  return t != nullptr && t->defined() && t->dim() > dim ? t->size(dim) : fallback;
}

inline bool has_key(const nn::StateDict* weights, const std::string& key) {
  return weights != nullptr && weights->contains(key);
}

template <typename F>
std::function<std::shared_ptr<nn::Module>(const nn::StateDict*)> fixed(F make) {
  return [make](const nn::StateDict*) -> std::shared_ptr<nn::Module> {
    return std::make_shared<decltype(make())>(make());
  };
}

}  // namespace detail

inline std::vector<SampleModel> sample_models() {
  using detail::fixed;
  using detail::size_in;
  const Shape image{1, 28, 28};
  return {
      {"binary_ffn", image, kFloat32, 0, fixed(binary_ffn_model)},
      {"char_rnn",
       {16},
       kInt64,
       40,
       [](const nn::StateDict* w) -> std::shared_ptr<nn::Module> {
         // char_rnn's defaults: 32-wide embedding, 2 layers of 256 LSTM units.
         const int64_t vocab = size_in(w, "embed.weight", 0, 40);
         const int64_t embed = size_in(w, "embed.weight", 1, 32);
         const int64_t rows = size_in(w, "rnn.weight_hh_l0", 0, 4 * 256);
         const int64_t hidden = size_in(w, "rnn.weight_hh_l0", 1, 256);
         int64_t layers = w == nullptr ? 2 : 0;
         while (detail::has_key(w, "rnn.weight_hh_l" + std::to_string(layers))) ++layers;
         return std::make_shared<CharModel>(vocab, embed, hidden, std::max<int64_t>(layers, 1),
                                            rows == 3 * hidden);
       }},
      {"dense_classifier", image, kFloat32, 0, fixed(dense_classifier_model)},
      {"fashion_cnn", image, kFloat32, 0,
       [](const nn::StateDict*) -> std::shared_ptr<nn::Module> {
         return std::make_shared<FashionCnn>();
       }},
      {"fashion_cnn_raw", image, kFloat32, 0, fixed(fashion_cnn_raw_model)},
      {"fashion_mlp", image, kFloat32, 0, fixed(fashion_mlp_model)},
      {"image_folder_cnn",
       {3, 150, 150},
       kFloat32,
       0,
       [](const nn::StateDict* w) -> std::shared_ptr<nn::Module> {
         return std::make_shared<nn::Sequential>(
             image_folder_cnn_model(size_in(w, "12.bias", 0, 10)));
       }},
      {"sequence_lstm", image, kFloat32, 0,
       [](const nn::StateDict*) -> std::shared_ptr<nn::Module> {
         return std::make_shared<RowLstm>();
       }},
      {"sequential_cnn", image, kFloat32, 0, fixed([] { return sequential_cnn_model(); })},
      {"small_dense", {100}, kFloat32, 0, fixed([] { return small_dense_model(); })},
  };
}

}  // namespace samples
