// The autograd engine: recording nodes and running backward (see Note [The tape]).
#include "ember/core/autograd.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"

namespace ember {

namespace {
thread_local bool t_grad_mode = true;
std::atomic<uint64_t> g_next_sequence_nr{0};
}  // namespace

bool grad_mode_enabled() { return t_grad_mode; }
void set_grad_mode(bool enabled) { t_grad_mode = enabled; }

namespace autograd {

// --- anomaly mode (Note [Anomaly mode]) --------------------------------------------------

namespace {

std::atomic<bool> g_anomaly_mode{false};

inline bool anomaly_mode_on() { return g_anomaly_mode.load(std::memory_order_relaxed); }

// The first NaN or Inf of a floating tensor, as (flat index, value); index -1 when none.
std::pair<int64_t, double> first_non_finite(const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype()) || t.numel() == 0) return {-1, 0.0};
  NoGradGuard no_grad;
  const Tensor values = t.detach().cpu().to(kFloat64).contiguous();
  const double* p = values.data<double>();
  for (int64_t i = 0; i < values.numel(); ++i) {
    if (!std::isfinite(p[i])) return {i, p[i]};
  }
  return {-1, 0.0};
}

std::string bad_value_text(const Tensor& t, std::pair<int64_t, double> bad) {
  return detail::str_cat(std::isnan(bad.second) ? "nan" : (bad.second > 0 ? "inf" : "-inf"),
                         " (first at flat index ", bad.first, " of ", t.numel(), ") in a ",
                         dtype_name(t.dtype()), " tensor of shape ", shape_str(t.shape()));
}

void check_forward(const char* op, const std::vector<Tensor>& outputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto bad = first_non_finite(outputs[i]);
    if (bad.first < 0) continue;
    throw AnomalyError(detail::str_cat(
        "anomaly mode: the forward of ", op, " produced ", bad_value_text(outputs[i], bad),
        " as its output ", i, ". Its inputs were non-finite already (from the data or a tensor "
        "no recorded op made) or outside its domain (log or sqrt of a negative, division by "
        "zero, exp of a large value)."));
  }
}

// "LogBackward" -> "log": the node's name is the forward op's with "Backward" appended.
std::string forward_name(const std::string& node_name) {
  std::string n = node_name;
  const std::string suffix = "Backward";
  if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
    n.resize(n.size() - suffix.size());
    n[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(n[0])));
  }
  return n;
}

void check_backward(const Node& node, const std::vector<Tensor>& input_grads) {
  for (size_t k = 0; k < input_grads.size(); ++k) {
    const auto bad = first_non_finite(input_grads[k]);
    if (bad.first < 0) continue;
    throw AnomalyError(detail::str_cat(
        "anomaly mode: ", node.name(), ", the backward of the forward op ",
        forward_name(node.name()), " (recorded as tape entry ", node.sequence_nr(),
        "), returned ", bad_value_text(input_grads[k], bad), " as the gradient of its input ",
        k, " from finite incoming gradients: the op's derivative is not finite at the values it "
        "saved (sqrt or log at 0, pow with a negative exponent at 0, 0 * inf)."));
  }
}

void check_root_grad(size_t i, const Tensor& g) {
  const auto bad = first_non_finite(g);
  if (bad.first < 0) return;
  throw AnomalyError(detail::str_cat("anomaly mode: the gradient given to backward for output ",
                                     i, " holds ", bad_value_text(g, bad)));
}

}  // namespace

void detect_anomaly(bool enabled) { g_anomaly_mode.store(enabled, std::memory_order_relaxed); }
bool anomaly_mode_enabled() { return anomaly_mode_on(); }

// --- saved tensors ----------------------------------------------------------------------

SavedTensor::SavedTensor(const Tensor& t, const char* op) : op_(op) {
  if (!t.defined()) return;
  data_ = t.detach();
  version_ = t.version();
}

Tensor SavedTensor::unpack() const {
  EMBER_CHECK_T(ValueError, data_.defined(), op_,
                " backward: its saved tensors were already freed; call backward(..., "
                "retain_graph=true) the first time to backward through the graph twice");
  EMBER_CHECK_T(ValueError, data_.version() == version_,
                "one of the tensors needed for the gradient of ", op_,
                " has been modified by an in-place operation: ", detail::describe(data_),
                " is at version ", data_.version(), "; expected version ", version_,
                ". Use an out-of-place op, or clone() the tensor before changing it.");
  return data_;
}

// --- nodes --------------------------------------------------------------------------------

// Note [Deep graph teardown]
// A graph is a chain of shared_ptrs from each node to the nodes of its inputs, so
// dropping the last output of a long chain (an RNN unrolled over many steps, a loop of
// 100k small ops) would run one nested destructor per node and overflow the stack.
// Instead a dying node takes its edges, and every input node it held the last reference
// to is emptied the same way from a local worklist, so each dies with no edges left.
class NodeBuilder;

namespace {

class LambdaNode final : public Node {
 public:
  explicit LambdaNode(BackwardFn fn) : fn_(std::move(fn)) {}
  ~LambdaNode() override;

  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    EMBER_CHECK_T(ValueError, !released_, "backward through ", name_,
                  " a second time: its saved tensors were freed after the first backward. "
                  "Pass retain_graph=true to the first backward() to keep them.");
    return fn_(grads);
  }
  void release() override {
    fn_ = nullptr;  // drops the captured SavedTensors
    released_ = true;
  }
  bool released() const override { return released_; }

 private:
  BackwardFn fn_;
  bool released_ = false;
};

// Adds incoming gradients into a leaf's .grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::weak_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}

  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    auto leaf = leaf_.lock();
    if (!leaf || !grads[0].defined()) return {};
    accumulate(leaf, grads[0]);
    for (const auto& hook : ready_hooks_) hook(Tensor(leaf));
    return {};
  }

  void add_ready_hook(std::function<void(const Tensor&)> hook) {
    ready_hooks_.push_back(std::move(hook));
  }

  static void accumulate(const std::shared_ptr<TensorImpl>& leaf, const Tensor& g) {
    Tensor incoming = g;
    if (incoming.shape() != leaf->sizes) incoming = sum_to(incoming, leaf->sizes);
    if (!leaf->grad) {
      // Steal the buffer when nothing else refers to it; otherwise keep a private copy so
      // later in-place accumulation cannot write into another tensor.
      const bool exclusive = incoming.impl_ptr().use_count() <= 2 &&
                             incoming.impl().storage.use_count() == 1 &&
                             incoming.is_contiguous();
      Tensor owned = exclusive ? incoming.detach() : incoming.contiguous().clone();
      leaf->grad = owned.impl_ptr();
    } else {
      Tensor(leaf->grad).add_(incoming);
    }
  }

 private:
  std::weak_ptr<TensorImpl> leaf_;
  std::vector<std::function<void(const Tensor&)>> ready_hooks_;
};

}  // namespace

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  auto& impl = leaf.impl();
  auto acc = impl.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(leaf.impl_ptr());
    acc->name_ = "AccumulateGrad";
    acc->sequence_nr_ = g_next_sequence_nr.fetch_add(1);
    acc->outputs_.push_back({leaf.shape(), leaf.dtype(), leaf.device()});
    impl.grad_accumulator = acc;
  }
  return acc;
}

std::shared_ptr<Node> add_grad_ready_hook(const Tensor& leaf,
                                          std::function<void(const Tensor& leaf)> hook) {
  EMBER_CHECK(leaf.defined() && leaf.is_leaf() && leaf.requires_grad(),
              "add_grad_ready_hook: the tensor must be a leaf that requires grad");
  auto acc = grad_accumulator(leaf);
  static_cast<AccumulateGrad&>(*acc).add_ready_hook(std::move(hook));
  return acc;
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_mode_enabled()) return false;
  for (const Tensor* t : inputs) {
    if (t != nullptr && t->defined() && t->requires_grad()) return true;
  }
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!grad_mode_enabled()) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

static Edge edge_of(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.is_leaf()) return {grad_accumulator(t), 0};
  return {t.grad_fn(), t.impl().output_nr};
}

// Builds nodes (named after the op with "Backward" appended, like PyTorch's grad_fn) and
// takes them apart again; a friend of Node.
class NodeBuilder {
 public:
  // See Note [Deep graph teardown].
  static void release_edges_iteratively(Node& dying) {
    std::vector<std::shared_ptr<Node>> worklist;
    auto take_edges = [&worklist](Node& n) {
      std::vector<Edge> edges = std::move(n.next_edges_);
      n.next_edges_.clear();
      for (Edge& e : edges) {
        if (e.node && e.node.use_count() == 1) worklist.push_back(std::move(e.node));
      }
    };
    take_edges(dying);
    while (!worklist.empty()) {
      std::shared_ptr<Node> n = std::move(worklist.back());
      worklist.pop_back();
      take_edges(*n);
    }
  }

  static std::shared_ptr<Node> make(const char* name, const std::vector<Tensor>& inputs,
                                    const std::vector<Tensor>& outputs, BackwardFn fn) {
    auto node = std::make_shared<LambdaNode>(std::move(fn));
    std::string n = name;
    if (!n.empty()) n[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(n[0])));
    node->name_ = n + "Backward";
    node->next_edges_.reserve(inputs.size());
    for (const Tensor& t : inputs) node->next_edges_.push_back(edge_of(t));
    for (const Tensor& t : outputs) {
      node->outputs_.push_back({t.shape(), t.dtype(), t.device()});
    }
    node->sequence_nr_ = g_next_sequence_nr.fetch_add(1);
    return node;
  }
};

LambdaNode::~LambdaNode() { NodeBuilder::release_edges_iteratively(*this); }

void record(const char* name, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, BackwardFn fn) {
  if (anomaly_mode_on()) check_forward(name, outputs);
  auto node = NodeBuilder::make(name, inputs, outputs, std::move(fn));
  for (size_t i = 0; i < outputs.size(); ++i) {
    auto& impl = outputs[i].impl();
    if (!is_floating(impl.dtype)) continue;  // indices and masks carry no gradient
    impl.requires_grad = true;
    impl.grad_fn = node;
    impl.output_nr = static_cast<uint32_t>(i);
  }
}

// --- the engine -------------------------------------------------------------------------

namespace {

struct NodeOrder {
  bool operator()(const Node* a, const Node* b) const {
    return a->sequence_nr() < b->sequence_nr();  // max-heap: latest recorded first
  }
};

void add_into(Tensor& slot, const Tensor& g) {
  if (!g.defined()) return;
  slot = slot.defined() ? add(slot, g) : g;
}

Tensor default_root_grad(const Tensor& root, const Tensor& given) {
  if (given.defined()) {
    EMBER_CHECK_T(ShapeError, given.shape() == root.shape(), "backward: gradient shape ",
                  shape_str(given.shape()), " does not match the output's ",
                  shape_str(root.shape()));
    return given.to(root.device()).to(root.dtype());
  }
  EMBER_CHECK_T(ShapeError, root.numel() == 1,
                "backward: grad can be implicitly created only for outputs with one element; "
                "the output has shape ", shape_str(root.shape()),
                " (reduce it, e.g. with .sum() or .mean(), or pass a gradient)");
  return ones(root.shape(), {.dtype = root.dtype(), .device = root.device()});
}

// Runs the graph. With `capture` non-null, gradients reaching the given (node, output)
// pairs are stored there instead of being accumulated into leaves.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph,
                  std::unordered_map<const Node*, std::vector<std::pair<uint32_t, Tensor*>>>* capture) {
  NoGradGuard no_grad;
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::priority_queue<Node*, std::vector<Node*>, NodeOrder> ready;
  std::unordered_set<Node*> queued;
  std::vector<std::shared_ptr<Node>> keep_alive;

  auto deliver = [&](const std::shared_ptr<Node>& node, uint32_t nr, const Tensor& g) {
    auto& buf = buffers[node.get()];
    if (buf.empty()) buf.resize(node->outputs().size());
    add_into(buf[nr], g);
    if (queued.insert(node.get()).second) {
      ready.push(node.get());
      keep_alive.push_back(node);
    }
  };

  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    EMBER_CHECK_T(ValueError, root.defined(), "backward: undefined output tensor");
    EMBER_CHECK_T(ValueError, root.requires_grad(),
                  "backward: the tensor does not require grad and has no grad_fn (did you "
                  "forget requires_grad_() on the parameters, or compute it under NoGradGuard?)");
    Tensor g = default_root_grad(root, i < grads.size() ? grads[i] : Tensor());
    if (anomaly_mode_on()) check_root_grad(i, g);
    Edge e = edge_of(root);
    deliver(e.node, e.input_nr, g);
  }

  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    std::vector<Tensor> node_grads = std::move(buffers[node]);
    buffers.erase(node);

    if (capture != nullptr) {
      auto it = capture->find(node);
      if (it != capture->end()) {
        for (auto& [nr, out] : it->second) {
          if (nr < node_grads.size()) *out = node_grads[nr];
        }
      }
      if (dynamic_cast<AccumulateGrad*>(node) != nullptr) continue;
    }

    for (const auto& [nr, weak] : node->retained()) {
      auto impl = weak.lock();
      if (impl && nr < node_grads.size() && node_grads[nr].defined()) {
        impl->grad = (impl->grad ? add(Tensor(impl->grad), node_grads[nr])
                                 : node_grads[nr].clone()).impl_ptr();
      }
    }
    // Outputs nothing flowed into get zeros, so multi-output rules see full gradients.
    for (size_t k = 0; k < node_grads.size(); ++k) {
      if (!node_grads[k].defined()) {
        const auto& m = node->outputs()[k];
        node_grads[k] = zeros(m.shape, {.dtype = m.dtype, .device = m.device});
      }
    }
    std::vector<Tensor> input_grads = node->apply(node_grads);
    if (anomaly_mode_on()) check_backward(*node, input_grads);
    if (!retain_graph) node->release();

    const auto& edges = node->next_edges();
    EMBER_INTERNAL_ASSERT(input_grads.empty() || input_grads.size() == edges.size(),
                          node->name(), " returned ", input_grads.size(),
                          " gradients for ", edges.size(), " inputs");
    for (size_t k = 0; k < input_grads.size(); ++k) {
      if (!edges[k].node || !input_grads[k].defined()) continue;
      deliver(edges[k].node, edges[k].input_nr, input_grads[k]);
    }
  }
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
              bool retain_graph) {
  run_backward(roots, grads, retain_graph, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph) {
  std::vector<Tensor> result(inputs.size());
  std::unordered_map<const Node*, std::vector<std::pair<uint32_t, Tensor*>>> capture;
  for (size_t i = 0; i < inputs.size(); ++i) {
    EMBER_CHECK_T(ValueError, inputs[i].defined() && inputs[i].requires_grad(),
                  "autograd::grad: input ", i, " does not require grad");
    Edge e = edge_of(inputs[i]);
    capture[e.node.get()].push_back({e.input_nr, &result[i]});
  }
  run_backward(outputs, grad_outputs, retain_graph, &capture);
  return result;
}

}  // namespace autograd
}  // namespace ember
