// The rnn op on the GPU: the whole stack as one cuDNN forward, and one backward node that
// runs cuDNN's backward data and backward weights (kernels/cudnn/rnn.h). CUDA-only: the
// CUDA side of Note [RNN backends] in rnn.cpp.
//
// Note [RNN weight buffer]
// cuDNN reads all weights from one flat buffer (the weight space) whose layout it decides:
// cudnnGetRNNWeightParams says where each gate's matrix and bias lies. The named
// parameters (weight_ih_l0 [G * H, in], ...) stack their G gates; when cuDNN puts a
// parameter's gates one after the other (it does for every cell and size we know of), the
// parameter can be a view into the buffer. nn::RNNBase makes that so on its first forward
// on a GPU (rnn_flatten_weights: a new buffer, the values copied in, every parameter
// re-pointed at its view), so optimizers update the buffer in place and each forward uses
// it as it is (rnn_weights_flat). Weights that are not such views (a direct call of rnn()
// with separate tensors, or a layout with gaps between gates) are packed into a fresh
// buffer on every call instead: correct, with one copy per parameter per call. The
// gradient of the buffer comes back from cuDNN in the same layout and is handed to each
// weight as its view (or, for packed weights, gathered gate by gate).
#include "ember/core/ops/rnn_cudnn.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <mutex>

#include "ember/core/autograd.h"
#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/ops/op_utils.h"
#include "ember/core/random.h"
#include "ember/kernels/cudnn/rnn.h"

namespace ember::detail {

namespace {

namespace kc = kernels::cudnn;

constexpr const char* kOp = "rnn";

int64_t directions(const RnnParams& p) { return p.bidirectional ? 2 : 1; }

kc::RnnCell cell_of(RnnMode mode) {
  switch (mode) {
    case RnnMode::RnnTanh: return kc::RnnCell::kTanh;
    case RnnMode::RnnRelu: return kc::RnnCell::kRelu;
    case RnnMode::Lstm: return kc::RnnCell::kLstm;
    case RnnMode::Gru: return kc::RnnCell::kGru;
  }
  return kc::RnnCell::kLstm;
}

// cuDNN's RNNs take float32 and float16 (bfloat16 is composed: Note [RNN backends]).
bool cudnn_rnn_dtype(DType dt) { return dt == kFloat32 || dt == kFloat16; }

kc::RnnConfig config_of(const RnnParams& p, DType dt, bool drop,
                        const kernels::cuda::Context& ctx) {
  kc::RnnConfig c;
  c.cell = cell_of(p.mode);
  c.input_size = p.input_size;
  c.hidden_size = p.hidden_size;
  c.num_layers = p.num_layers;
  c.bidirectional = p.bidirectional;
  c.bias = p.bias;
  c.dropout = drop ? static_cast<float>(p.dropout) : 0.0f;
  c.allow_tf32 = ctx.allow_tf32;
  c.half = dt == kFloat16;
  return c;
}

// Process-lifetime device memory for cuDNN's dropout states (one block per plan that
// drops out; plans live for the process too). Deliberately never destroyed: freeing into
// the memory pool during static destruction could outlive the pool.
void* persistent_bytes(size_t bytes, Device device) {
  static std::mutex mu;
  static auto* blocks = new std::vector<Tensor>();
  std::lock_guard<std::mutex> lock(mu);
  blocks->push_back(Tensor::empty({static_cast<int64_t>(bytes)}, {.dtype = kUInt8, .device = device}));
  return blocks->back().data_ptr();
}

// Pool bytes held by `keep` until the caller is done (or by a backward node).
void* pool_bytes(size_t bytes, Device device, Tensor* keep) {
  if (bytes == 0) return nullptr;
  *keep = Tensor::empty({static_cast<int64_t>(bytes)}, {.dtype = kUInt8, .device = device});
  return keep->data_ptr();
}

kc::RnnWeightLayout plan_for(cudnnHandle_t h, const kc::RnnConfig& c, Device device) {
  Tensor scratch;
  kc::RnnMemory mem;
  mem.persistent = [device](size_t bytes) { return persistent_bytes(bytes, device); };
  mem.scratch = [device, &scratch](size_t bytes) { return pool_bytes(bytes, device, &scratch); };
  mem.dropout_seed = [device] { return philox_reserve(device, 1).seed; };
  return kc::rnn_plan(h, c, mem);
}

// Where weight i's gates lie in the weight space: one region per gate, in gate order.
struct Slot {
  std::vector<kc::RnnRegion> gates;
  int64_t rows = 0, cols = 0;  // of one gate (cols 1 for a bias)
  // The gates follow each other, so the weight is one region starting at gates[0].
  bool contiguous() const {
    for (size_t g = 1; g < gates.size(); ++g) {
      if (gates[g].offset != gates[0].offset + static_cast<int64_t>(g) * rows * cols) return false;
    }
    return true;
  }
};

std::vector<Slot> slots_of(const kc::RnnWeightLayout& layout, const RnnParams& p) {
  const int64_t gates = rnn_gate_count(p.mode), hs = p.hidden_size;
  const std::vector<Shape> shapes = rnn_weight_shapes(p);
  std::vector<Slot> slots;
  for (int64_t pl = 0; pl < p.num_layers * directions(p); ++pl) {
    const auto& mats = layout.matrices[static_cast<size_t>(pl)];
    const auto& bias = layout.biases[static_cast<size_t>(pl)];
    for (int part = 0; part < (p.bias ? 4 : 2); ++part) {
      // part 0: weight_ih (lin 0..G-1), 1: weight_hh (lin G..2G-1), 2: bias_ih, 3: bias_hh
      const bool recurrent = part % 2 == 1;
      const Shape& shape = shapes[slots.size()];
      Slot s;
      s.rows = hs;
      s.cols = part < 2 ? shape[1] : 1;
      for (int64_t g = 0; g < gates; ++g) {
        const size_t lin = static_cast<size_t>(g + (recurrent ? gates : 0));
        const kc::RnnRegion r = part < 2 ? mats[lin] : bias[lin];
        EMBER_INTERNAL_ASSERT(r.numel == s.rows * s.cols, "rnn: cuDNN's region for weight ",
                              slots.size(), " gate ", g, " holds ", r.numel, " values, expected ",
                              s.rows * s.cols);
        s.gates.push_back(r);
      }
      slots.push_back(std::move(s));
    }
  }
  return slots;
}

bool all_contiguous(const std::vector<Slot>& slots) {
  for (const Slot& s : slots) {
    if (!s.contiguous()) return false;
  }
  return true;
}

// The whole storage of `t` as a flat tensor of its dtype from its start (shares the version
// counter, so a saved buffer notices in-place updates of the parameters).
Tensor storage_as_flat(const Tensor& t, int64_t numel) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.impl().storage;
  impl->sizes = {numel};
  impl->strides = {1};
  impl->offset = 0;
  impl->dtype = t.dtype();
  return Tensor(std::move(impl));
}

// See Note [RNN weight buffer]: `weights` are views into one buffer at cuDNN's places.
bool is_flat(const std::vector<Tensor>& weights, const std::vector<Slot>& slots, size_t bytes) {
  if (!all_contiguous(slots)) return false;
  const auto& storage = weights[0].impl().storage;
  if (storage->nbytes() < bytes) return false;
  for (size_t i = 0; i < weights.size(); ++i) {
    const Tensor& w = weights[i];
    if (w.impl().storage != storage || !w.is_contiguous() ||
        w.offset() != slots[i].gates[0].offset) {
      return false;
    }
  }
  return true;
}

// A fresh weight space holding `weights` at cuDNN's places (gaps zeroed).
Tensor pack(const std::vector<Tensor>& weights, const std::vector<Slot>& slots, size_t bytes,
            Device device) {
  NoGradGuard no_grad;
  const DType dt = weights[0].dtype();
  Tensor buf =
      zeros({static_cast<int64_t>(bytes / dtype_size(dt))}, {.dtype = dt, .device = device});
  for (size_t i = 0; i < weights.size(); ++i) {
    const Slot& s = slots[i];
    const Tensor w = weights[i].detach();
    if (s.contiguous()) {
      buf.narrow(0, s.gates[0].offset, w.numel()).view(w.shape()).copy_(w);
      continue;
    }
    for (size_t g = 0; g < s.gates.size(); ++g) {
      buf.narrow(0, s.gates[g].offset, s.rows * s.cols)
          .copy_(w.narrow(0, static_cast<int64_t>(g) * s.rows, s.rows).reshape({s.rows * s.cols}));
    }
  }
  return buf;
}

// Weight i's gradient from the weight-space gradient `dw`.
Tensor unpack_grad(const Tensor& dw, const Slot& s, const Shape& shape) {
  const int64_t gates = static_cast<int64_t>(s.gates.size());
  if (s.contiguous()) return dw.narrow(0, s.gates[0].offset, gates * s.rows * s.cols).view(shape);
  std::vector<Tensor> pieces;
  for (const kc::RnnRegion& r : s.gates) pieces.push_back(dw.narrow(0, r.offset, r.numel));
  return cat(pieces, 0).view(shape);
}

// A buffer for cuDNN, or null for an absent (undefined) tensor.
void* data_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// The lengths on the device, for cuDNN's kernels. From pageable host memory
// cudaMemcpyAsync returns once the bytes are staged and does not wait for the stream, so
// this costs no synchronization (Tensor::to would wait for the copy).
Tensor device_lengths(const std::vector<int32_t>& lengths, Device device, cudaStream_t stream) {
  Tensor t = empty_on({static_cast<int64_t>(lengths.size())}, kInt32, device);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(t.data_ptr(), lengths.data(), lengths.size() * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, stream));
  return t;
}

}  // namespace

bool rnn_weights_flat_on(kernels::cuda::Context ctx, const std::vector<Tensor>& weights,
                         const RnnParams& p) {
  if (!cudnn_rnn_dtype(weights[0].dtype())) return false;
  const kc::RnnWeightLayout& layout =
      plan_for(ctx.cudnn, config_of(p, weights[0].dtype(), false, ctx), weights[0].device());
  return is_flat(weights, slots_of(layout, p), layout.bytes);
}

RnnFlatWeights rnn_flatten_weights_on(kernels::cuda::Context ctx,
                                      const std::vector<Tensor>& weights, const RnnParams& p) {
  const Device device = weights[0].device();
  const kc::RnnWeightLayout& layout =
      plan_for(ctx.cudnn, config_of(p, weights[0].dtype(), false, ctx), device);
  const std::vector<Slot> slots = slots_of(layout, p);
  RnnFlatWeights flat;
  flat.buffer = pack(weights, slots, layout.bytes, device);
  if (!all_contiguous(slots)) return flat;
  for (size_t i = 0; i < weights.size(); ++i) {
    flat.views.push_back(
        flat.buffer.narrow(0, slots[i].gates[0].offset, weights[i].numel()).view(weights[i].shape()));
  }
  return flat;
}

RnnResult rnn_on(kernels::cuda::Context ctx, const Tensor& x, const Tensor& hx, const Tensor& cx,
                 const std::vector<Tensor>& weights, const std::vector<int64_t>& lengths,
                 const RnnParams& p) {
  EMBER_INTERNAL_ASSERT(cudnn_rnn_dtype(x.dtype()), p.name, ": cuDNN's RNNs take float32 or ",
                        "float16, got ", dtype_name(x.dtype()));
  const Device device = x.device();
  const DType dt = x.dtype();
  const cudnnHandle_t h = ctx.cudnn;
  const bool lstm = p.mode == RnnMode::Lstm;
  const bool drop = p.training && p.dropout > 0.0 && p.num_layers > 1;
  const kc::RnnConfig cfg = config_of(p, dt, drop, ctx);
  const kc::RnnWeightLayout& layout = plan_for(h, cfg, device);
  const std::vector<Slot> slots = slots_of(layout, p);

  // The weight space: the parameters' own buffer, or a packed copy.
  const bool flat = is_flat(weights, slots, layout.bytes);
  const Tensor w =
      flat ? storage_as_flat(weights[0], static_cast<int64_t>(layout.bytes / dtype_size(dt)))
           : pack(weights, slots, layout.bytes, device);

  const int64_t t_len = x.size(p.batch_first ? 1 : 0), n = x.size(p.batch_first ? 0 : 1);
  const int64_t dirs = directions(p), hs = p.hidden_size;
  // The lengths twice: on the host for the data descriptors, on the device for cuDNN's kernels.
  std::vector<int32_t> host_lengths(static_cast<size_t>(n), static_cast<int32_t>(t_len));
  for (size_t i = 0; i < lengths.size(); ++i) host_lengths[i] = static_cast<int32_t>(lengths[i]);
  const Tensor dev_lengths = device_lengths(host_lengths, device, ctx.stream);
  // Some sequence ends before seq_len: the batch has padded steps.
  const bool padded = std::any_of(host_lengths.begin(), host_lengths.end(),
                                  [t_len](int32_t l) { return l < t_len; });
  kc::RnnBatch batch{t_len, n, p.batch_first, host_lengths.data()};

  std::vector<Tensor> inputs{x, hx, cx};
  inputs.insert(inputs.end(), weights.begin(), weights.end());
  const bool grad = autograd::needs_grad(inputs);
  // cuDNN's backward needs a training-mode forward (its reserve space); dropout is applied
  // by training-mode forwards only.
  const bool training = grad || drop;
  const kc::RnnSpaceSizes sizes = kc::rnn_space_sizes(h, cfg, batch, training);

  const Tensor xc = x.detach().contiguous();
  const Tensor hxc = hx.defined() ? hx.detach().contiguous() : Tensor();
  const Tensor cxc = cx.defined() ? cx.detach().contiguous() : Tensor();
  const Shape out_shape = p.batch_first ? Shape{n, t_len, dirs * hs} : Shape{t_len, n, dirs * hs};
  const Shape state_shape{p.num_layers * dirs, n, hs};
  Tensor y = empty_on(out_shape, dt, device);
  Tensor hy = empty_on(state_shape, dt, device);
  Tensor cy = lstm ? empty_on(state_shape, dt, device) : Tensor();
  Tensor workspace, reserve;
  void* ws = pool_bytes(sizes.workspace, device, &workspace);
  void* rs = pool_bytes(sizes.reserve, device, &reserve);
  kc::rnn_forward(h, cfg, batch, training, dev_lengths.data<int32_t>(), xc.data_ptr(),
                  data_or_null(hxc), data_or_null(cxc), y.data_ptr(), hy.data_ptr(),
                  data_or_null(cy), w.data_ptr(), layout.bytes, ws, sizes.workspace, rs,
                  sizes.reserve);

  if (grad) {
    std::vector<bool> wants;
    for (const Tensor& t : inputs) wants.push_back(t.defined() && t.requires_grad());
    std::vector<Tensor> outputs{y, hy};
    if (lstm) outputs.push_back(cy);
    autograd::record(
        kOp, inputs, outputs,
        [cfg, p, lstm, padded, wants, slots, host_lengths, dev_lengths, reserve, t_len, n,
         shapes = rnn_weight_shapes(p), sx = autograd::SavedTensor(xc, kOp),
         shx = autograd::SavedTensor(hxc, kOp), scx = autograd::SavedTensor(cxc, kOp),
         sy = autograd::SavedTensor(y, kOp), sw = autograd::SavedTensor(w, kOp)](
            std::vector<Tensor>& g) {
          // g[0]: y's shape, g[1] (and g[2]): [L * D, N, H]; returns dx, dhx, dcx, dweights
          const Tensor xs = sx.unpack(), ys = sy.unpack(), ws_ = sw.unpack();
          const Tensor hxs = shx.defined() ? shx.unpack() : Tensor();
          const Tensor cxs = scx.defined() ? scx.unpack() : Tensor();
          const Device device = xs.device();
          const int dev = device.index();
          cuda::DeviceGuard guard(dev);
          const cudnnHandle_t h = cuda::cudnn_handle(dev);
          kc::RnnBatch batch{t_len, n, p.batch_first, host_lengths.data()};
          const kc::RnnSpaceSizes sizes = kc::rnn_space_sizes(h, cfg, batch, true);
          const size_t w_bytes = ws_.nbytes();
          const Tensor dy = g[0].contiguous(), dhy = g[1].contiguous();
          const Tensor dcy = lstm ? g[2].contiguous() : Tensor();
          // Padded steps of x affect nothing, so their gradient is zero. cuDNN documents
          // its padding fill only for a descriptor of the RNN's output, and dx is
          // described by x's, so dx starts as zeros and cuDNN writes the valid steps.
          Tensor dx = padded ? zeros(xs.shape(), {.dtype = xs.dtype(), .device = device})
                             : empty_like(xs);
          Tensor dhx = wants[1] ? empty_like(hxs) : Tensor();
          Tensor dcx = wants[2] ? empty_like(cxs) : Tensor();
          Tensor workspace;
          void* wsp = pool_bytes(sizes.workspace, device, &workspace);
          void* rs = reserve.defined() ? reserve.data_ptr() : nullptr;
          const size_t rs_bytes = reserve.defined() ? reserve.nbytes() : 0;
          kc::rnn_backward_data(h, cfg, batch, dev_lengths.data<int32_t>(), ys.data_ptr(),
                                dy.data_ptr(), dx.data_ptr(), data_or_null(hxs), dhy.data_ptr(),
                                data_or_null(dhx), data_or_null(cxs), data_or_null(dcy),
                                data_or_null(dcx), ws_.data_ptr(), w_bytes, wsp,
                                sizes.workspace, rs, rs_bytes);
          std::vector<Tensor> grads{wants[0] ? dx : Tensor(), dhx, dcx};
          bool any_weight = false;
          for (size_t i = 3; i < wants.size(); ++i) any_weight = any_weight || wants[i];
          if (any_weight) {
            Tensor dw = zeros({ws_.numel()}, {.dtype = ws_.dtype(), .device = device});
            kc::rnn_backward_weights(h, cfg, batch, dev_lengths.data<int32_t>(), xs.data_ptr(),
                                     data_or_null(hxs), ys.data_ptr(), dw.data_ptr(), w_bytes,
                                     wsp, sizes.workspace, rs, rs_bytes);
            for (size_t i = 0; i < slots.size(); ++i) {
              grads.push_back(wants[i + 3] ? unpack_grad(dw, slots[i], shapes[i]) : Tensor());
            }
          } else {
            grads.resize(wants.size());
          }
          return grads;
        });
  }
  RnnResult r;
  r.output = y;
  r.h_n = hy;
  r.c_n = cy;
  return r;
}

}  // namespace ember::detail
