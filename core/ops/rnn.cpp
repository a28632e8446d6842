// rnn: multi-layer, optionally bidirectional RNN (tanh/ReLU), LSTM and GRU over padded
// variable-length batches. On the CPU the cells are composed from differentiable ops
// (autograd gives the backward); on the GPU one cuDNN call runs the whole stack
// (core/ops/rnn_cudnn.cpp). See Note [RNN backends].
//
// Note [RNN backends]
// The rnn family picks its backend in one way: dispatch::on_device runs an overload
// chosen by the context's type. The overloads taking kernels::cpu::Context are below
// (the composed ops; the CPU has no cuDNN weight buffer); the ones taking
// kernels::cuda::Context are cuDNN's (core/ops/rnn_cudnn.h). on_device calls a body with
// the CUDA context only in a build with CUDA, so a build without it needs nothing from
// rnn_cudnn.cpp, the one CUDA-only file of the family.
// cuDNN's RNNs take float32 and float16 but no bfloat16: a bfloat16 RNN on the GPU is
// composed from the ops like the CPU's (each of them a bfloat16 CUDA kernel or cuBLASLt
// GEMM), as PyTorch falls back to its native RNN where cuDNN cannot serve.
#include <algorithm>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/core/ops/rnn_cudnn.h"

namespace ember {

namespace {

int64_t directions(const RnnParams& p) { return p.bidirectional ? 2 : 1; }

// The weights of one direction of one layer (biases undefined without bias).
struct CellWeights {
  Tensor w_ih, w_hh, b_ih, b_hh;
};

CellWeights cell_weights(const std::vector<Tensor>& weights, const RnnParams& p, int64_t layer,
                         int64_t dir) {
  const int64_t per = p.bias ? 4 : 2;
  const size_t base = static_cast<size_t>((layer * directions(p) + dir) * per);
  CellWeights c;
  c.w_ih = weights[base];
  c.w_hh = weights[base + 1];
  if (p.bias) {
    c.b_ih = weights[base + 2];
    c.b_hh = weights[base + 3];
  }
  return c;
}

void check_state(const Tensor& s, const char* what, const Tensor& x, const Shape& want,
                 const RnnParams& p) {
  EMBER_CHECK_T(DTypeError, s.dtype() == x.dtype(), p.name, ": ", what, " has dtype ",
                dtype_name(s.dtype()), ", the input ", dtype_name(x.dtype()));
  EMBER_CHECK_T(DeviceError, s.device() == x.device(), p.name, ": ", what, " is on ",
                s.device().str(), ", the input on ", x.device().str());
  EMBER_CHECK_T(ShapeError, s.shape() == want, p.name, ": ", what, " has shape ",
                shape_str(s.shape()), ", expected ", shape_str(want),
                " (num_layers * num_directions, batch, hidden_size) for input ",
                shape_str(x.shape()));
}

void check_inputs(const Tensor& x, const Tensor& hx, const Tensor& cx,
                  const std::vector<Tensor>& weights, const std::vector<int64_t>& lengths,
                  const RnnParams& p) {
  EMBER_CHECK_T(ValueError, p.input_size > 0 && p.hidden_size > 0 && p.num_layers > 0, p.name,
                ": input_size, hidden_size and num_layers must be positive, got ", p.input_size,
                ", ", p.hidden_size, ", ", p.num_layers);
  EMBER_CHECK_T(ValueError, p.dropout >= 0.0 && p.dropout <= 1.0, p.name,
                ": dropout must be in [0, 1], got ", p.dropout);
  EMBER_CHECK_T(ValueError, x.defined(), p.name, ": input is an undefined tensor");
  detail::check_floating(x, p.name.c_str());
  const char* layout = p.batch_first ? "[batch, seq_len, " : "[seq_len, batch, ";
  EMBER_CHECK_T(ShapeError, x.dim() == 3, p.name, ": expected input ", layout, p.input_size,
                "], got ", shape_str(x.shape()));
  EMBER_CHECK_T(ShapeError, x.size(2) == p.input_size, p.name, ": input ", shape_str(x.shape()),
                " has ", x.size(2), " features, expected ", p.input_size, " (input ", layout,
                p.input_size, "])");
  const int64_t t = x.size(p.batch_first ? 1 : 0), n = x.size(p.batch_first ? 0 : 1);
  EMBER_CHECK_T(ShapeError, t > 0 && n > 0, p.name, ": input ", shape_str(x.shape()),
                " is empty; the sequence length and the batch must be at least 1");
  const Shape state{p.num_layers * directions(p), n, p.hidden_size};
  if (hx.defined()) check_state(hx, "h0", x, state, p);
  if (cx.defined()) {
    EMBER_CHECK_T(ValueError, p.mode == RnnMode::Lstm, p.name,
                  ": only an LSTM has a cell state (c0)");
    check_state(cx, "c0", x, state, p);
  }
  const std::vector<Shape> shapes = rnn_weight_shapes(p);
  EMBER_CHECK_T(ValueError, weights.size() == shapes.size(), p.name, ": expected ", shapes.size(),
                " weight tensors, got ", weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    const Tensor& w = weights[i];
    EMBER_CHECK_T(ValueError, w.defined(), p.name, ": weight ", i, " is undefined");
    EMBER_CHECK_T(ShapeError, w.shape() == shapes[i], p.name, ": weight ", i, " has shape ",
                  shape_str(w.shape()), ", expected ", shape_str(shapes[i]));
    EMBER_CHECK_T(DTypeError, w.dtype() == x.dtype(), p.name, ": weight ", i, " is ",
                  dtype_name(w.dtype()), ", the input ", dtype_name(x.dtype()));
    EMBER_CHECK_T(DeviceError, w.device() == x.device(), p.name, ": weight ", i, " is on ",
                  w.device().str(), ", the input on ", x.device().str(),
                  " (move the module with .to(device))");
  }
  if (lengths.empty()) return;
  EMBER_CHECK_T(ShapeError, static_cast<int64_t>(lengths.size()) == n, p.name, ": got ",
                lengths.size(), " sequence lengths for a batch of ", n, " (input ",
                shape_str(x.shape()), ")");
  for (size_t i = 0; i < lengths.size(); ++i) {
    EMBER_CHECK_T(ShapeError, lengths[i] >= 1 && lengths[i] <= t, p.name, ": lengths[", i,
                  "] = ", lengths[i], " is ", lengths[i] < 1 ? "less than 1" : "longer than",
                  lengths[i] < 1 ? "" : " the sequence", " (input ", shape_str(x.shape()),
                  ", seq_len ", t, "); each length must be in [1, ", t, "]");
  }
}

// --- the composed reference ------------------------------------------------------------------

// One step of one cell. gx: [N, G * H], this step's input projection (with b_ih, and for
// RNN/LSTM also b_hh, folded in); h, c: [N, H]. Returns h' (and sets *c_next for LSTM).
Tensor cell_step(RnnMode mode, const Tensor& gx, const Tensor& h, const Tensor& c,
                 const CellWeights& w, Tensor* c_next) {
  switch (mode) {
    case RnnMode::RnnTanh:
      return tanh(add(gx, linear(h, w.w_hh)));
    case RnnMode::RnnRelu:
      return relu(add(gx, linear(h, w.w_hh)));
    case RnnMode::Lstm: {
      // gates [N, 4H]: i, f, g, o
      const std::vector<Tensor> g = chunk(add(gx, linear(h, w.w_hh)), 4, 1);
      const Tensor i = sigmoid(g[0]), f = sigmoid(g[1]), cand = tanh(g[2]), o = sigmoid(g[3]);
      *c_next = add(mul(f, c), mul(i, cand));
      return mul(o, tanh(*c_next));
    }
    case RnnMode::Gru: {
      // r, z = sigmoid(x_rz + h_rz); n = tanh(x_n + r * (W_hn h + b_hn)); h' = n + z (h - n)
      const int64_t hs = h.size(1);
      const std::vector<Tensor> xs = split(gx, {2 * hs, hs}, 1);
      const std::vector<Tensor> hp = split(linear(h, w.w_hh, w.b_hh), {2 * hs, hs}, 1);
      const std::vector<Tensor> rz = chunk(sigmoid(add(xs[0], hp[0])), 2, 1);
      const Tensor n = tanh(add(xs[1], mul(rz[0], hp[1])));
      return add(n, mul(rz[1], sub(h, n)));
    }
  }
  EMBER_INTERNAL_ASSERT(false, "rnn: unknown mode");
  return Tensor();
}

// One direction of one layer over the whole sequence, time-major. in: [T, N, I];
// mask: [T, N, 1] (1 at valid steps) or undefined; h0/c0: [N, H] or undefined (zeros).
// Returns the outputs [T, N, H], zero at padded steps.
Tensor run_direction(const Tensor& in, const CellWeights& w, const RnnParams& p, bool reverse,
                     const Tensor& mask, const std::vector<int64_t>& valid_until, Tensor h0,
                     Tensor c0, Tensor* h_n, Tensor* c_n) {
  const int64_t t_len = in.size(0), n = in.size(1), hs = p.hidden_size;
  const TensorOptions opts{.dtype = in.dtype(), .device = in.device()};
  // The input projection of every step in one GEMM; the recurrent bias joins it except in
  // a GRU, where b_hn sits inside r * (W_hn h + b_hn).
  Tensor bias;
  if (p.bias) bias = p.mode == RnnMode::Gru ? w.b_ih : add(w.b_ih, w.b_hh);
  const Tensor proj = linear(in, w.w_ih, bias);  // [T, N, G * H]
  // Split once into steps: one backward node gathers the steps' gradients with one cat
  // (a select per step would give each its own full-size zero-filled gradient).
  const std::vector<Tensor> steps = split(proj, std::vector<int64_t>(static_cast<size_t>(t_len), 1), 0);
  Tensor h = h0.defined() ? h0 : zeros({n, hs}, opts);
  Tensor c;
  if (p.mode == RnnMode::Lstm) c = c0.defined() ? c0 : zeros({n, hs}, opts);
  std::vector<Tensor> outs(static_cast<size_t>(t_len));
  for (int64_t s = 0; s < t_len; ++s) {
    const int64_t t = reverse ? t_len - 1 - s : s;
    const Tensor gx = steps[static_cast<size_t>(t)].view({n, proj.size(2)});
    Tensor c_new;
    const Tensor h_new = cell_step(p.mode, gx, h, c, w, &c_new);
    // valid_until[t]: whether every sequence is still running at step t.
    if (!mask.defined() || valid_until[static_cast<size_t>(t)]) {
      h = h_new;
      c = c_new;
      outs[static_cast<size_t>(t)] = h_new;
      continue;
    }
    // Padded rows keep their state (so a reverse pass starts from h0 at each sequence's own
    // end, and the final state is the one at its last valid step) and output zero.
    const Tensor m = mask.select(0, t);  // [N, 1]
    h = add(h, mul(m, sub(h_new, h)));
    if (c.defined()) c = add(c, mul(m, sub(c_new, c)));
    outs[static_cast<size_t>(t)] = mul(h_new, m);
  }
  *h_n = h;
  if (c_n != nullptr) *c_n = c;
  return stack(outs, 0);
}

}  // namespace

int64_t rnn_gate_count(RnnMode mode) {
  switch (mode) {
    case RnnMode::RnnTanh:
    case RnnMode::RnnRelu: return 1;
    case RnnMode::Lstm: return 4;
    case RnnMode::Gru: return 3;
  }
  return 1;
}

std::vector<Shape> rnn_weight_shapes(const RnnParams& p) {
  const int64_t g = rnn_gate_count(p.mode) * p.hidden_size;
  std::vector<Shape> shapes;
  for (int64_t layer = 0; layer < p.num_layers; ++layer) {
    const int64_t in = layer == 0 ? p.input_size : p.hidden_size * directions(p);
    for (int64_t dir = 0; dir < directions(p); ++dir) {
      shapes.push_back({g, in});
      shapes.push_back({g, p.hidden_size});
      if (p.bias) {
        shapes.push_back({g});
        shapes.push_back({g});
      }
    }
  }
  return shapes;
}

namespace {

// rnn_reference after the checks.
RnnResult compose(const Tensor& x, const Tensor& hx, const Tensor& cx,
                  const std::vector<Tensor>& weights, const std::vector<int64_t>& lengths,
                  const RnnParams& p) {
  const int64_t td = p.batch_first ? 1 : 0;
  const int64_t t_len = x.size(td), n = x.size(1 - td);
  Tensor mask;
  std::vector<int64_t> valid_until(static_cast<size_t>(t_len), 1);
  if (!lengths.empty()) {
    const int64_t shortest = *std::min_element(lengths.begin(), lengths.end());
    if (shortest < t_len) {
      std::vector<double> m(static_cast<size_t>(t_len * n));
      for (int64_t t = 0; t < t_len; ++t) {
        valid_until[static_cast<size_t>(t)] = t < shortest;
        for (int64_t b = 0; b < n; ++b) {
          m[static_cast<size_t>(t * n + b)] = t < lengths[static_cast<size_t>(b)] ? 1.0 : 0.0;
        }
      }
      mask = Tensor::from_vector(m, {t_len, n, 1}).to(x.dtype()).to(x.device());
    }
  }
  const int64_t dirs = directions(p);
  std::vector<Tensor> h_n, c_n;
  // Time-major inside: each step's slice of the projections is then contiguous.
  Tensor layer_in = p.batch_first ? x.transpose(0, 1) : x;
  for (int64_t layer = 0; layer < p.num_layers; ++layer) {
    std::vector<Tensor> outs;
    for (int64_t dir = 0; dir < dirs; ++dir) {
      const int64_t k = layer * dirs + dir;
      Tensor h, c;
      outs.push_back(run_direction(layer_in, cell_weights(weights, p, layer, dir), p, dir == 1,
                                   mask, valid_until, hx.defined() ? hx.select(0, k) : Tensor(),
                                   cx.defined() ? cx.select(0, k) : Tensor(), &h,
                                   p.mode == RnnMode::Lstm ? &c : nullptr));
      h_n.push_back(h);
      if (c.defined()) c_n.push_back(c);
    }
    layer_in = dirs == 1 ? outs[0] : cat(outs, 2);
    if (p.training && p.dropout > 0.0 && layer + 1 < p.num_layers) {
      layer_in = dropout(layer_in, p.dropout, true);
    }
  }
  RnnResult r;
  r.output = p.batch_first ? layer_in.transpose(0, 1).contiguous() : layer_in;
  r.h_n = stack(h_n, 0);
  if (p.mode == RnnMode::Lstm) r.c_n = stack(c_n, 0);
  return r;
}

}  // namespace

// --- the CPU side of Note [RNN backends] -------------------------------------------------

namespace detail {

RnnResult rnn_on(kernels::cpu::Context, const Tensor& x, const Tensor& hx, const Tensor& cx,
                 const std::vector<Tensor>& weights, const std::vector<int64_t>& lengths,
                 const RnnParams& p) {
  return compose(x, hx, cx, weights, lengths, p);
}

bool rnn_weights_flat_on(kernels::cpu::Context, const std::vector<Tensor>&, const RnnParams&) {
  return false;
}

RnnFlatWeights rnn_flatten_weights_on(kernels::cpu::Context, const std::vector<Tensor>&,
                                      const RnnParams& p) {
  EMBER_INTERNAL_ASSERT(false, p.name, ": rnn_flatten_weights refuses CPU weights first");
  return RnnFlatWeights();
}

}  // namespace detail

RnnResult rnn_reference(const Tensor& x, const Tensor& hx, const Tensor& cx,
                        const std::vector<Tensor>& weights, const std::vector<int64_t>& lengths,
                        const RnnParams& p) {
  check_inputs(x, hx, cx, weights, lengths, p);
  return compose(x, hx, cx, weights, lengths, p);
}

RnnResult rnn(const Tensor& x, const Tensor& hx, const Tensor& cx,
              const std::vector<Tensor>& weights, const std::vector<int64_t>& lengths,
              const RnnParams& p) {
  check_inputs(x, hx, cx, weights, lengths, p);
  // Under autocast the whole stack runs in the region's dtype, as PyTorch's cuDNN and
  // oneDNN RNNs do (Note [Autocast] in core/autocast.h); the weights' casts are cached.
  std::vector<Tensor> all{x, hx, cx};
  all.insert(all.end(), weights.begin(), weights.end());
  if (auto c = autocast::to_lower(all)) {
    return rnn((*c)[0], (*c)[1], (*c)[2], std::vector<Tensor>(c->begin() + 3, c->end()), lengths,
               p);
  }
  RnnResult r;
  if (x.dtype() == kBFloat16) return compose(x, hx, cx, weights, lengths, p);
  dispatch::on_device(x.device(), [&](auto ctx) {
    r = detail::rnn_on(ctx, x, hx, cx, weights, lengths, p);
  });
  return r;
}

bool rnn_weights_flat(const std::vector<Tensor>& weights, const RnnParams& p) {
  if (weights.empty() || !weights[0].defined()) return false;
  bool flat = false;
  dispatch::on_device(weights[0].device(),
                      [&](auto ctx) { flat = detail::rnn_weights_flat_on(ctx, weights, p); });
  return flat;
}

RnnFlatWeights rnn_flatten_weights(const std::vector<Tensor>& weights, const RnnParams& p) {
  EMBER_CHECK_T(ValueError,
                !weights.empty() && weights[0].defined() && weights[0].is_cuda() &&
                    (weights[0].dtype() == kFloat32 || weights[0].dtype() == kFloat16),
                p.name, ": cuDNN's weight buffer is for float32 or float16 CUDA weights");
  RnnFlatWeights flat;
  dispatch::on_device(weights[0].device(),
                      [&](auto ctx) { flat = detail::rnn_flatten_weights_on(ctx, weights, p); });
  return flat;
}

}  // namespace ember
