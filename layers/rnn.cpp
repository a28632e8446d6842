// Embedding and the recurrent layers over the embedding and rnn ops.
#include "ember/layers/rnn.h"

#include <cmath>
#include <sstream>

#include "ember/core/autograd.h"
#include "ember/layers/init.h"

namespace ember::nn {

namespace {

std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Points `param`'s TensorImpl at `view`'s bytes, so every handle to the parameter (an
// optimizer's included) sees the new place; its gradient and requires_grad stay.
void repoint(Tensor& param, const Tensor& view) {
  auto& d = param.impl();
  const auto& s = view.impl();
  d.storage = s.storage;
  d.sizes = s.sizes;
  d.strides = s.strides;
  d.offset = s.offset;
}

}  // namespace

// --- Embedding ---------------------------------------------------------------------------------

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, EmbeddingOptions options)
    : num_(num_embeddings), dim_(embedding_dim) {
  EMBER_CHECK_T(ValueError, num_ > 0 && dim_ > 0,
                "Embedding: num_embeddings and embedding_dim must be "
                "positive, got ",
                num_, " and ", dim_);
  if (options.padding_idx.has_value()) {
    const int64_t p = *options.padding_idx;
    EMBER_CHECK_T(ValueError, p >= -num_ && p < num_, "Embedding(", num_, ", ", dim_,
                  "): padding_idx ", p, " must be within [", -num_, ", ", num_, ")");
    padding_idx_ = p < 0 ? p + num_ : p;
  }
  register_parameter("weight", empty({num_, dim_}));
  reset_parameters();
}

void Embedding::reset_parameters() {
  init::normal_(weight(), 0.0, 1.0);
  if (padding_idx_ >= 0) {
    NoGradGuard no_grad;
    weight().select(0, padding_idx_).zero_();
  }
}

Tensor Embedding::forward(const Tensor& indices) {
  EMBER_CHECK_T(ValueError, indices.defined(), "Embedding: input is an undefined tensor");
  EMBER_CHECK_T(DTypeError, indices.dtype() == kInt64, name(), "(", extra_repr(),
                "): expected int64 indices, got ", dtype_name(indices.dtype()), " ",
                shape_str(indices.shape()));
  return embedding(weight(), indices, padding_idx_);
}

std::string Embedding::extra_repr() const {
  std::string s = std::to_string(num_) + ", " + std::to_string(dim_);
  if (padding_idx_ >= 0) s += ", padding_idx=" + std::to_string(padding_idx_);
  return s;
}

// --- SequenceLengths ------------------------------------------------------------------------------

SequenceLengths::SequenceLengths(const Tensor& lengths) {
  if (!lengths.defined()) return;
  EMBER_CHECK_T(DTypeError, lengths.dtype() == kInt64,
                "sequence lengths must be an int64 tensor [N], got ", dtype_name(lengths.dtype()),
                " ", shape_str(lengths.shape()));
  EMBER_CHECK_T(ShapeError, lengths.dim() == 1, "sequence lengths must be an int64 tensor [N], "
                "got shape ", shape_str(lengths.shape()));
  values_ = lengths.contiguous().to_vector<int64_t>();
}

// --- RNNBase -------------------------------------------------------------------------------------

RNNBase::RNNBase(RnnMode mode, int64_t input_size, int64_t hidden_size,
                 const LSTMOptions& options) {
  params_.mode = mode;
  params_.input_size = input_size;
  params_.hidden_size = hidden_size;
  params_.num_layers = options.num_layers;
  params_.bias = options.bias;
  params_.batch_first = options.batch_first;
  params_.dropout = options.dropout;
  params_.bidirectional = options.bidirectional;
  // name() is not yet the derived class's here.
  const char* who = mode == RnnMode::Lstm ? "LSTM" : mode == RnnMode::Gru ? "GRU" : "RNN";
  EMBER_CHECK_T(ValueError, input_size > 0 && hidden_size > 0, who,
                ": input_size and hidden_size must be positive, got ", input_size, " and ",
                hidden_size);
  EMBER_CHECK_T(ValueError, options.num_layers > 0, who, ": num_layers must be positive, got ",
                options.num_layers);
  EMBER_CHECK_T(ValueError, options.dropout >= 0.0 && options.dropout <= 1.0, who,
                ": dropout must be in [0, 1], got ", options.dropout);
  const std::vector<Shape> shapes = rnn_weight_shapes(params_);
  size_t k = 0;
  for (int64_t layer = 0; layer < params_.num_layers; ++layer) {
    for (int64_t dir = 0; dir < (params_.bidirectional ? 2 : 1); ++dir) {
      const std::string suffix = "_l" + std::to_string(layer) + (dir == 1 ? "_reverse" : "");
      std::vector<std::string> names{"weight_ih" + suffix, "weight_hh" + suffix};
      if (params_.bias) {
        names.push_back("bias_ih" + suffix);
        names.push_back("bias_hh" + suffix);
      }
      for (const std::string& n : names) {
        register_parameter(n, empty(shapes[k++]));
        weight_names_.push_back(n);
      }
    }
  }
  reset_parameters();
}

void RNNBase::reset_parameters() {
  const double bound = 1.0 / std::sqrt(static_cast<double>(params_.hidden_size));
  for (const std::string& n : weight_names_) init::uniform_(parameter_slot(n), -bound, bound);
}

std::vector<Tensor> RNNBase::weights() {
  std::vector<Tensor> w;
  w.reserve(weight_names_.size());
  for (const std::string& n : weight_names_) w.push_back(parameter_slot(n));
  return w;
}

void RNNBase::flatten_parameters() {
  std::vector<Tensor> w = weights();
  // cuDNN's weight buffer holds float32 or float16 (bfloat16 RNNs are composed).
  const bool cudnn_dtype = w[0].dtype() == kFloat32 || w[0].dtype() == kFloat16;
  if (!w[0].is_cuda() || !cudnn_dtype || flatten_refused_) return;
  if (rnn_weights_flat(w, params_)) return;
  NoGradGuard no_grad;
  const RnnFlatWeights flat = rnn_flatten_weights(w, params_);
  if (flat.views.size() != w.size()) {
    flatten_refused_ = true;  // rnn() then packs the weights on every call
    return;
  }
  for (size_t i = 0; i < w.size(); ++i) repoint(parameter_slot(weight_names_[i]), flat.views[i]);
}

RnnResult RNNBase::run(const Tensor& x, const Tensor& h0, const Tensor& c0,
                       const SequenceLengths& lengths) {
  RnnParams p = params_;
  p.training = is_training();
  p.name = name() + "(" + extra_repr() + ")";
  if (x.defined() && x.is_cuda()) flatten_parameters();
  return rnn(x, h0, c0, weights(), lengths.values(), p);
}

Tensor RNNBase::forward(const Tensor& x) { return run(x, Tensor(), Tensor(), {}).output; }

std::string RNNBase::extra_repr() const {
  std::string s = std::to_string(params_.input_size) + ", " + std::to_string(params_.hidden_size);
  if (params_.num_layers != 1) s += ", num_layers=" + std::to_string(params_.num_layers);
  if (!params_.bias) s += ", bias=False";
  if (params_.batch_first) s += ", batch_first=True";
  if (params_.dropout != 0.0) s += ", dropout=" + fmt(params_.dropout);
  if (params_.bidirectional) s += ", bidirectional=True";
  return s;
}

// --- RNN, LSTM, GRU -----------------------------------------------------------------------------

namespace {

LSTMOptions common_options(const RNNOptions& o) {
  return LSTMOptions{o.num_layers, o.bias, o.batch_first, o.dropout, o.bidirectional};
}

RnnMode rnn_mode(const std::string& nonlinearity) {
  if (nonlinearity == "tanh") return RnnMode::RnnTanh;
  if (nonlinearity == "relu") return RnnMode::RnnRelu;
  throw ValueError("RNN: nonlinearity '" + nonlinearity + "' is not known (use \"tanh\" or \"relu\")");
}

}  // namespace

RNN::RNN(int64_t input_size, int64_t hidden_size, RNNOptions options)
    : RNNBase(rnn_mode(options.nonlinearity), input_size, hidden_size, common_options(options)),
      relu_(options.nonlinearity == "relu") {}

RNNOutput RNN::forward(const Tensor& x, const Tensor& h0, const SequenceLengths& lengths) {
  RnnResult r = run(x, h0, Tensor(), lengths);
  return {r.output, r.h_n};
}

std::string RNN::extra_repr() const {
  return RNNBase::extra_repr() + (relu_ ? ", nonlinearity='relu'" : "");
}

LSTM::LSTM(int64_t input_size, int64_t hidden_size, LSTMOptions options)
    : RNNBase(RnnMode::Lstm, input_size, hidden_size, options) {}

LSTMOutput LSTM::forward(const Tensor& x, const LSTMState& state, const SequenceLengths& lengths) {
  RnnResult r = run(x, state.h, state.c, lengths);
  return {r.output, r.h_n, r.c_n};
}

GRU::GRU(int64_t input_size, int64_t hidden_size, GRUOptions options)
    : RNNBase(RnnMode::Gru, input_size, hidden_size, options) {}

RNNOutput GRU::forward(const Tensor& x, const Tensor& h0, const SequenceLengths& lengths) {
  RnnResult r = run(x, h0, Tensor(), lengths);
  return {r.output, r.h_n};
}

}  // namespace ember::nn
