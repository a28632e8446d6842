// Sequence layers: Embedding, and the recurrent RNN (tanh or ReLU), LSTM and GRU over padded
// variable-length batches, with PyTorch's options, shapes, parameter names and init:
// nn::LSTM(28, 128, {.num_layers = 2, .batch_first = true}).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "ember/core/ops.h"
#include "ember/layers/module.h"

namespace ember::nn {

// --- Embedding --------------------------------------------------------------------------------
struct EmbeddingOptions {
  // This row is initialised to zeros and receives no gradient (a negative index counts
  // from the end, as in PyTorch).
  std::optional<int64_t> padding_idx;
};

// int64 indices [*] -> [*, embedding_dim]; weight [num_embeddings, embedding_dim] ~ N(0, 1).
class EMBER_API Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, EmbeddingOptions options = {});
  Tensor forward(const Tensor& indices) override;
  std::string name() const override { return "Embedding"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;
  void reset_parameters();
  Tensor& weight() { return parameter_slot("weight"); }
  // The padding row, or -1 when there is none.
  int64_t padding_idx() const { return padding_idx_; }

 private:
  int64_t num_, dim_;
  int64_t padding_idx_ = -1;
};

// --- recurrent layers ---------------------------------------------------------------------------

// The length of every sequence of a padded batch, given as an int64 tensor [N] (on any
// device) or as numbers: lstm.forward(x, {}, {5, 3, 4}). Any order: sorting is not needed.
class EMBER_API SequenceLengths {
 public:
  SequenceLengths() = default;
  SequenceLengths(std::vector<int64_t> lengths) : values_(std::move(lengths)) {}  // NOLINT
  SequenceLengths(std::initializer_list<int64_t> lengths) : values_(lengths) {}    // NOLINT
  SequenceLengths(const Tensor& lengths);                                          // NOLINT
  bool empty() const { return values_.empty(); }
  const std::vector<int64_t>& values() const { return values_; }

 private:
  std::vector<int64_t> values_;
};

struct RNNOptions {
  int64_t num_layers = 1;
  std::string nonlinearity = "tanh";  // or "relu"
  bool bias = true;
  bool batch_first = false;  // input and output [N, T, *] instead of [T, N, *]
  double dropout = 0.0;      // on the outputs of every layer but the last, in training
  bool bidirectional = false;
};

struct LSTMOptions {
  int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;
  double dropout = 0.0;
  bool bidirectional = false;
};
using GRUOptions = LSTMOptions;

struct RNNOutput {
  Tensor output;  // [T, N, D * H] ([N, T, D * H] batch-first), zero at padded steps
  Tensor h_n;     // [num_layers * D, N, H]: each sequence's state at its last valid step
};

struct LSTMState {
  Tensor h;  // [num_layers * D, N, H], or undefined for zeros
  Tensor c;
};

struct LSTMOutput {
  Tensor output;
  Tensor h_n;
  Tensor c_n;
};

// What RNN, LSTM and GRU share: the parameters, named as PyTorch names them
// (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, then "_reverse" for the second
// direction, then layer 1...), with gates stacked in PyTorch's order (LSTM: i, f, g, o;
// GRU: r, z, n), PyTorch's init U(-1/sqrt(H), 1/sqrt(H)), and the forward pass.
//
// On a GPU the forward is one cuDNN call, and the parameters live as views in one flat
// buffer in cuDNN's layout (made on the first forward there, or by flatten_parameters()),
// so optimizers update that buffer in place.
class EMBER_API RNNBase : public Module {
 public:
  // The output sequence only (for nn::Sequential and the Trainer).
  Tensor forward(const Tensor& x) override;
  // ONNX's own RNN, LSTM or GRU node per layer, gates reordered to ONNX's order.
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;
  void reset_parameters();
  // Puts the parameters into cuDNN's flat buffer (CUDA only; a no-op elsewhere or when
  // they already are).
  void flatten_parameters();

  int64_t input_size() const { return params_.input_size; }
  int64_t hidden_size() const { return params_.hidden_size; }
  int64_t num_layers() const { return params_.num_layers; }
  bool bidirectional() const { return params_.bidirectional; }
  bool batch_first() const { return params_.batch_first; }

 protected:
  RNNBase(RnnMode mode, int64_t input_size, int64_t hidden_size, const LSTMOptions& options);
  RnnResult run(const Tensor& x, const Tensor& h0, const Tensor& c0,
                const SequenceLengths& lengths);

 private:
  std::vector<Tensor> weights();
  RnnParams params_;
  std::vector<std::string> weight_names_;
  bool flatten_refused_ = false;  // cuDNN's layout cannot hold the weights as views
};

// Elman RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or ReLU).
class EMBER_API RNN : public RNNBase {
 public:
  RNN(int64_t input_size, int64_t hidden_size, RNNOptions options = {});
  using RNNBase::forward;
  // h0: [num_layers * D, N, H] or undefined for zeros.
  RNNOutput forward(const Tensor& x, const Tensor& h0, const SequenceLengths& lengths = {});
  std::string name() const override { return "RNN"; }
  std::string extra_repr() const override;

 private:
  bool relu_;
};

class EMBER_API LSTM : public RNNBase {
 public:
  LSTM(int64_t input_size, int64_t hidden_size, LSTMOptions options = {});
  using RNNBase::forward;
  LSTMOutput forward(const Tensor& x, const LSTMState& state, const SequenceLengths& lengths = {});
  std::string name() const override { return "LSTM"; }
};

// n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.
class EMBER_API GRU : public RNNBase {
 public:
  GRU(int64_t input_size, int64_t hidden_size, GRUOptions options = {});
  using RNNBase::forward;
  RNNOutput forward(const Tensor& x, const Tensor& h0, const SequenceLengths& lengths = {});
  std::string name() const override { return "GRU"; }
};

}  // namespace ember::nn
