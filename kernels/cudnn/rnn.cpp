// cuDNN RNN/LSTM/GRU: cached plans and data descriptors per shape (see Note [cuDNN RNN
// plans] in rnn.h), forward, backward data and backward weights.
#include "ember/kernels/cudnn/rnn.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/kernels/cudnn/plan_cache.h"

namespace ember::kernels::cudnn {

namespace {

// Per plan, the (seq_len, batch, batch_first) combinations whose descriptors are kept.
constexpr size_t kMaxDataDescs = 64;

int32_t to_int(int64_t v, const char* what) {
  EMBER_CHECK(v >= 0 && v <= INT_MAX, "rnn: ", what, " = ", v,
              " does not fit in cuDNN's int dimensions");
  return static_cast<int32_t>(v);
}

int64_t directions(const RnnConfig& c) { return c.bidirectional ? 2 : 1; }

int64_t lin_layers(RnnCell cell) {
  switch (cell) {
    case RnnCell::kRelu:
    case RnnCell::kTanh: return 2;
    case RnnCell::kLstm: return 8;
    case RnnCell::kGru: return 6;
  }
  return 2;
}

// x, y (padded RNN data) and h/c ([layers * dirs, batch, hidden]) for one batch shape.
struct DataDescs {
  cudnnRNNDataDescriptor_t x = nullptr, y = nullptr;
  cudnnTensorDescriptor_t h = nullptr;
  std::vector<int32_t> lengths;  // what x and y were last set with

  DataDescs() = default;
  DataDescs(const DataDescs&) = delete;
  DataDescs& operator=(const DataDescs&) = delete;
  ~DataDescs() {
    if (x) warn_cudnn(cudnnDestroyRNNDataDescriptor(x), "cudnnDestroyRNNDataDescriptor");
    if (y) warn_cudnn(cudnnDestroyRNNDataDescriptor(y), "cudnnDestroyRNNDataDescriptor");
    if (h) warn_cudnn(cudnnDestroyTensorDescriptor(h), "cudnnDestroyTensorDescriptor");
  }
};

struct Plan {
  cudnnRNNDescriptor_t rnn = nullptr;
  cudnnDropoutDescriptor_t dropout = nullptr;
  RnnWeightLayout layout;
  // (seq_len, batch, batch_first) -> descriptors
  std::map<std::tuple<int64_t, int64_t, bool>, std::unique_ptr<DataDescs>> data;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    data.clear();
    if (rnn) warn_cudnn(cudnnDestroyRNNDescriptor(rnn), "cudnnDestroyRNNDescriptor");
    if (dropout) warn_cudnn(cudnnDestroyDropoutDescriptor(dropout), "cudnnDestroyDropoutDescriptor");
  }
};

struct Key {
  int device;  // Note [Bounded plan caches]
  RnnConfig config;
  bool operator==(const Key& k) const { return device == k.device && config == k.config; }
};

struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = std::hash<int>()(k.device);
    auto mix = [&h](int64_t v) { hash_mix(h, v); };
    const RnnConfig& c = k.config;
    for (int64_t v : {static_cast<int64_t>(c.cell), c.input_size, c.hidden_size, c.num_layers,
                      static_cast<int64_t>(c.bidirectional), static_cast<int64_t>(c.bias),
                      static_cast<int64_t>(c.allow_tf32), static_cast<int64_t>(c.half)}) {
      mix(v);
    }
    mix(static_cast<int64_t>(c.dropout * 1e9));
    return h;
  }
};

using PlanCache = KeyedPlanCache<Key, Plan, KeyHash>;

// See Note [cuDNN caches are never destroyed] in plan_cache.h.
PlanCache& plan_cache() {
  static auto* cache = new PlanCache();
  return *cache;
}

// The elements a cuDNN tensor descriptor (as filled by cudnnGetRNNWeightParams) spans.
int64_t descriptor_numel(cudnnTensorDescriptor_t d) {
  cudnnDataType_t dt{};
  int nb = 0;
  int dims[8] = {0}, strides[8] = {0};
  EMBER_CUDNN_CHECK(cudnnGetTensorNdDescriptor(d, 8, &dt, &nb, dims, strides));
  int64_t n = 1;
  for (int i = 0; i < nb; ++i) n *= dims[i];
  return n;
}

// A tensor descriptor for cudnnGetRNNWeightParams to fill, destroyed with the scope.
class ScopedTensorDesc {
 public:
  ScopedTensorDesc() { EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_)); }
  ~ScopedTensorDesc() { warn_cudnn(cudnnDestroyTensorDescriptor(d_), "cudnnDestroyTensorDescriptor"); }
  ScopedTensorDesc(const ScopedTensorDesc&) = delete;
  ScopedTensorDesc& operator=(const ScopedTensorDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

// The type of the RNN's data, weights and states.
cudnnDataType_t data_type(const RnnConfig& c) {
  return c.half ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
}
int64_t element_bytes(const RnnConfig& c) { return c.half ? 2 : 4; }

// Where each matrix and bias lies in a weight space at `base`.
void query_layout(cudnnHandle_t handle, Plan& plan, const RnnConfig& c, const void* base) {
  ScopedTensorDesc m, b;
  const int64_t pseudo = c.num_layers * directions(c), lins = lin_layers(c.cell);
  RnnWeightLayout& L = plan.layout;
  L.matrices.assign(static_cast<size_t>(pseudo), std::vector<RnnRegion>(static_cast<size_t>(lins)));
  L.biases = L.matrices;
  const char* start = static_cast<const char*>(base);
  auto offset_of = [start, &c](const void* addr) {
    return (static_cast<const char*>(addr) - start) / element_bytes(c);
  };
  for (int64_t pl = 0; pl < pseudo; ++pl) {
    for (int64_t lin = 0; lin < lins; ++lin) {
      void* m_addr = nullptr;
      void* b_addr = nullptr;
      EMBER_CUDNN_CHECK(cudnnGetRNNWeightParams(handle, plan.rnn, static_cast<int32_t>(pl),
                                                L.bytes, base, static_cast<int32_t>(lin), m.get(),
                                                &m_addr, b.get(), &b_addr));
      EMBER_INTERNAL_ASSERT(m_addr != nullptr, "rnn: cuDNN gave no matrix for pseudo-layer ", pl,
                            ", gate ", lin);
      RnnRegion& mr = L.matrices[static_cast<size_t>(pl)][static_cast<size_t>(lin)];
      mr.offset = offset_of(m_addr);
      mr.numel = descriptor_numel(m.get());
      if (c.bias) {
        EMBER_INTERNAL_ASSERT(b_addr != nullptr, "rnn: cuDNN gave no bias for pseudo-layer ", pl,
                              ", gate ", lin);
        RnnRegion& br = L.biases[static_cast<size_t>(pl)][static_cast<size_t>(lin)];
        br.offset = offset_of(b_addr);
        br.numel = descriptor_numel(b.get());
      }
    }
  }
}

std::unique_ptr<Plan> make_plan(cudnnHandle_t handle, const RnnConfig& c, const RnnMemory& mem) {
  auto plan = std::make_unique<Plan>();
  EMBER_CUDNN_CHECK(cudnnCreateDropoutDescriptor(&plan->dropout));
  if (c.dropout > 0.0f && c.num_layers > 1) {
    size_t state_bytes = 0;
    EMBER_CUDNN_CHECK(cudnnDropoutGetStatesSize(handle, &state_bytes));
    void* states = mem.persistent(state_bytes);
    EMBER_CHECK(states != nullptr, "rnn: no memory for cuDNN's dropout states (", state_bytes,
                " bytes)");
    EMBER_CUDNN_CHECK(cudnnSetDropoutDescriptor(plan->dropout, handle, c.dropout, states,
                                                state_bytes, mem.dropout_seed()));
  } else {
    // No dropout: no states are needed (none are initialised for probability 0).
    EMBER_CUDNN_CHECK(cudnnSetDropoutDescriptor(plan->dropout, handle, 0.0f, nullptr, 0, 0));
  }
  EMBER_CUDNN_CHECK(cudnnCreateRNNDescriptor(&plan->rnn));
  const int32_t hidden = to_int(c.hidden_size, "hidden_size");
  EMBER_CUDNN_CHECK(cudnnSetRNNDescriptor_v8(
      plan->rnn, CUDNN_RNN_ALGO_STANDARD, rnn_cell_mode(c.cell),
      c.bias ? CUDNN_RNN_DOUBLE_BIAS : CUDNN_RNN_NO_BIAS,
      c.bidirectional ? CUDNN_BIDIRECTIONAL : CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT,
      data_type(c), CUDNN_DATA_FLOAT, rnn_math_type(c), to_int(c.input_size, "input_size"),
      hidden, hidden, to_int(c.num_layers, "num_layers"), plan->dropout,
      CUDNN_RNN_PADDED_IO_ENABLED));
  EMBER_CUDNN_CHECK(cudnnGetRNNWeightSpaceSize(handle, plan->rnn, &plan->layout.bytes));
  void* scratch = mem.scratch(plan->layout.bytes);
  EMBER_CHECK(scratch != nullptr, "rnn: no memory for the weight layout query (",
              plan->layout.bytes, " bytes)");
  query_layout(handle, *plan, c, scratch);
  return plan;
}

// Call with the cache's mutex held; the plan stays valid while it is.
Plan& existing_plan(PlanCache& cache, const RnnConfig& c) {
  std::shared_ptr<Plan> plan = cache.plans.find(Key{current_device(), c});
  EMBER_INTERNAL_ASSERT(plan != nullptr, "rnn: rnn_plan must be called first");
  return *plan;
}

// existing_plan, for a call handing cuDNN a weight space of w_bytes (checked against the
// plan's layout).
Plan& existing_plan(PlanCache& cache, const RnnConfig& c, size_t w_bytes) {
  Plan& plan = existing_plan(cache, c);
  EMBER_INTERNAL_ASSERT(w_bytes >= plan.layout.bytes, "rnn: weight space of ", w_bytes,
                        " bytes, cuDNN needs ", plan.layout.bytes);
  return plan;
}

// The plan's descriptors for `b`, set to its lengths. Call with the cache's mutex held.
DataDescs& data_descs(Plan& plan, const RnnConfig& c, const RnnBatch& b) {
  const auto key = std::make_tuple(b.seq_len, b.batch, b.batch_first);
  // Bounded like the plans (Note [Bounded plan caches]): every (length, batch) pair seen
  // has its descriptors, and a run with ever new pairs starts the set over.
  if (plan.data.size() >= kMaxDataDescs && plan.data.find(key) == plan.data.end()) {
    plan.data.clear();
  }
  auto& slot = plan.data[key];
  const int32_t t = to_int(b.seq_len, "seq_len"), n = to_int(b.batch, "batch");
  if (!slot) {
    auto d = std::make_unique<DataDescs>();
    EMBER_CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&d->x));
    EMBER_CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&d->y));
    EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->h));
    const int32_t layers = to_int(c.num_layers * directions(c), "num_layers * directions");
    const int32_t hidden = to_int(c.hidden_size, "hidden_size");
    to_int(static_cast<int64_t>(layers) * n * hidden, "the state's element count");
    const int dims[3] = {layers, n, hidden};
    const int strides[3] = {n * hidden, hidden, 1};
    EMBER_CUDNN_CHECK(cudnnSetTensorNdDescriptor(d->h, data_type(c), 3, dims, strides));
    slot = std::move(d);
  }
  DataDescs& d = *slot;
  if (d.lengths.size() != static_cast<size_t>(n) ||
      !std::equal(d.lengths.begin(), d.lengths.end(), b.lengths)) {
    d.lengths.assign(b.lengths, b.lengths + n);
    const cudnnRNNDataLayout_t layout = b.batch_first ? CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED
                                                      : CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED;
    // What padded steps of y hold, read by cuDNN as the data's type: all bits zero is 0 in
    // float16 and float32 alike.
    double fill = 0.0;
    EMBER_CUDNN_CHECK(cudnnSetRNNDataDescriptor(d.x, data_type(c), layout, t, n,
                                                to_int(c.input_size, "input_size"),
                                                d.lengths.data(), &fill));
    EMBER_CUDNN_CHECK(cudnnSetRNNDataDescriptor(
        d.y, data_type(c), layout, t, n,
        to_int(c.hidden_size * directions(c), "directions * hidden_size"), d.lengths.data(),
        &fill));
  }
  return d;
}

}  // namespace

cudnnRNNMode_t rnn_cell_mode(RnnCell cell) {
  switch (cell) {
    case RnnCell::kRelu: return CUDNN_RNN_RELU;
    case RnnCell::kTanh: return CUDNN_RNN_TANH;
    case RnnCell::kLstm: return CUDNN_LSTM;
    case RnnCell::kGru: return CUDNN_GRU;
  }
  return CUDNN_LSTM;
}

cudnnMathType_t rnn_math_type(const RnnConfig& config) {
  // float16 data: the tensor cores, accumulating in float32 (the math precision the
  // descriptor names). float32: FMA math keeps results exact to float32; default math
  // lets cuDNN use TF32 tensor cores on Ampere and later (as PyTorch does when TF32 is
  // allowed).
  if (config.half) return CUDNN_TENSOR_OP_MATH;
  return config.allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

RnnWeightLayout rnn_plan(cudnnHandle_t handle, const RnnConfig& config,
                         const RnnMemory& memory) {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  const Key key{current_device(), config};
  std::shared_ptr<Plan> plan = cache.plans.find(key);
  if (!plan) plan = cache.plans.insert(key, make_plan(handle, config, memory));
  return plan->layout;
}

RnnSpaceSizes rnn_space_sizes(cudnnHandle_t handle, const RnnConfig& config,
                              const RnnBatch& batch, bool training) {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  Plan& plan = existing_plan(cache, config);
  DataDescs& d = data_descs(plan, config, batch);
  RnnSpaceSizes s;
  EMBER_CUDNN_CHECK(cudnnGetRNNTempSpaceSizes(handle, plan.rnn,
                                              training ? CUDNN_FWD_MODE_TRAINING
                                                       : CUDNN_FWD_MODE_INFERENCE,
                                              d.x, &s.workspace, &s.reserve));
  if (!training) s.reserve = 0;
  return s;
}

void rnn_forward(cudnnHandle_t handle, const RnnConfig& config, const RnnBatch& batch,
                 bool training, const int32_t* dev_lengths, const void* x, const void* hx,
                 const void* cx, void* y, void* hy, void* cy, const void* w,
                 size_t w_bytes, void* workspace, size_t workspace_bytes, void* reserve,
                 size_t reserve_bytes) {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  Plan& plan = existing_plan(cache, config, w_bytes);
  DataDescs& d = data_descs(plan, config, batch);
  EMBER_CUDNN_CHECK(cudnnRNNForward(
      handle, plan.rnn, training ? CUDNN_FWD_MODE_TRAINING : CUDNN_FWD_MODE_INFERENCE,
      dev_lengths, d.x, x, d.y, y, d.h, hx, hy, d.h, cx, cy, plan.layout.bytes, w,
      workspace_bytes, workspace, training ? reserve_bytes : 0, training ? reserve : nullptr));
}

void rnn_backward_data(cudnnHandle_t handle, const RnnConfig& config, const RnnBatch& batch,
                       const int32_t* dev_lengths, const void* y, const void* dy, void* dx,
                       const void* hx, const void* dhy, void* dhx, const void* cx,
                       const void* dcy, void* dcx, const void* w, size_t w_bytes,
                       void* workspace, size_t workspace_bytes, void* reserve,
                       size_t reserve_bytes) {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  Plan& plan = existing_plan(cache, config, w_bytes);
  DataDescs& d = data_descs(plan, config, batch);
  EMBER_CUDNN_CHECK(cudnnRNNBackwardData_v8(handle, plan.rnn, dev_lengths, d.y, y, dy, d.x, dx,
                                            d.h, hx, dhy, dhx, d.h, cx, dcy, dcx,
                                            plan.layout.bytes, w, workspace_bytes, workspace,
                                            reserve_bytes, reserve));
}

void rnn_backward_weights(cudnnHandle_t handle, const RnnConfig& config, const RnnBatch& batch,
                          const int32_t* dev_lengths, const void* x, const void* hx,
                          const void* y, void* dw, size_t w_bytes, void* workspace,
                          size_t workspace_bytes, void* reserve, size_t reserve_bytes) {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  Plan& plan = existing_plan(cache, config, w_bytes);
  DataDescs& d = data_descs(plan, config, batch);
  EMBER_CUDNN_CHECK(cudnnRNNBackwardWeights_v8(handle, plan.rnn, CUDNN_WGRAD_MODE_ADD,
                                               dev_lengths, d.x, x, d.h, hx, d.y, y,
                                               plan.layout.bytes, dw, workspace_bytes, workspace,
                                               reserve_bytes, reserve));
}

}  // namespace ember::kernels::cudnn
