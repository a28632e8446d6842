// Fused optimizer updates (core/fused_optim.h): the list checks, then the tensors grouped
// by device and dtype, one dispatched multi-tensor kernel call per group
// (kernels/cpu/optim.h and its CUDA twin).
#include "ember/core/fused_optim.h"

#include <algorithm>
#include <type_traits>
#include <cstdint>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/kernels/acc_type.h"
#include "ember/kernels/cpu/amp.h"
#include "ember/kernels/cpu/optim.h"
#include "ember/kernels/cuda/amp.cuh"
#include "ember/kernels/cuda/optim.cuh"

namespace ember {

namespace {

using detail::describe;

// One list of state tensors and, per entry, whether the update uses it (from that
// tensor's hyper-parameters).
struct StateList {
  const char* name;
  const std::vector<Tensor>& tensors;
  std::vector<bool> used;
};

// The lists of one update after the checks: grads made contiguous.
struct FusedLists {
  const std::vector<Tensor>& params;
  std::vector<Tensor> grads;
  std::vector<StateList> states;
};

void check_length(const char* op, const char* list, size_t got, size_t expected) {
  EMBER_CHECK_T(ValueError, got == expected, op, ": ", list, " has ", got,
                " entries but params has ", expected, " (every list has one entry per parameter)");
}

// `t` (entry i of `list`) matches params[i] = p in device, dtype and shape.
void check_like(const char* op, const char* list, size_t i, const Tensor& t, const Tensor& p) {
  EMBER_CHECK_T(ValueError, t.defined(), op, ": ", list, "[", i, "] is undefined (params[", i,
                "] is ", describe(p), ")");
  EMBER_CHECK_T(DeviceError, t.device() == p.device(), op, ": ", list, "[", i, "] is ", describe(t),
                " but params[", i, "] is ", describe(p));
  EMBER_CHECK_T(DTypeError, t.dtype() == p.dtype(), op, ": ", list, "[", i, "] is ",
                describe(t), " but params[", i, "] is ", describe(p));
  EMBER_CHECK_T(ShapeError, t.shape() == p.shape(), op, ": ", list, "[", i, "] is ",
                describe(t), " but params[", i, "] is ", describe(p));
}

// See Note [Fused optimizer updates] for what is checked.
FusedLists check_lists(const char* op, const std::vector<Tensor>& params,
                       const std::vector<Tensor>& grads, std::vector<StateList> states,
                       size_t num_hyper_params) {
  check_length(op, "grads", grads.size(), params.size());
  for (const StateList& s : states) check_length(op, s.name, s.tensors.size(), params.size());
  check_length(op, "hyper_params", num_hyper_params, params.size());
  FusedLists lists{params, grads, std::move(states)};
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    EMBER_CHECK_T(ValueError, p.defined(), op, ": params[", i, "] is undefined");
    EMBER_CHECK_T(DTypeError, is_floating(p.dtype()), op, ": params[", i, "] is ", describe(p),
                  "; expected float32, float64, float16 or bfloat16");
    EMBER_CHECK_T(DTypeError, !(p.dtype() == kFloat64 && p.is_cuda()), op, ": params[", i,
                  "] is ", describe(p), "; float64 is supported on the CPU only");
    EMBER_CHECK_T(ValueError, p.is_contiguous(), op, ": params[", i, "] (", describe(p),
                  ") is not contiguous; updates run over flat memory");
    check_like(op, "grads", i, grads[i], p);
    for (const StateList& s : lists.states) {
      if (!s.used[i]) continue;
      const Tensor& t = s.tensors[i];
      check_like(op, s.name, i, t, p);
      EMBER_CHECK_T(ValueError, t.is_contiguous(), op, ": ", s.name, "[", i, "] (", describe(t),
                    ") is not contiguous; updates run over flat memory");
    }
    if (!grads[i].is_contiguous()) {
      NoGradGuard no_grad;
      lists.grads[i] = grads[i].contiguous();
    }
  }
  return lists;
}

// Indices of the parameters grouped by device and dtype, in order of first appearance.
std::vector<std::vector<size_t>> group_by_device(const std::vector<Tensor>& params) {
  std::vector<std::vector<size_t>> groups;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    auto it = std::find_if(groups.begin(), groups.end(), [&](const std::vector<size_t>& g) {
      const Tensor& q = params[g.front()];
      return q.device() == p.device() && q.dtype() == p.dtype();
    });
    if (it == groups.end()) {
      groups.push_back({i});
    } else {
      it->push_back(i);
    }
  }
  return groups;
}

// The kernels' hyper-parameters in the type the update computes in (acc_t: float for
// float16 and bfloat16 tensors): each value rounded once.

template <typename T>
kernels::math::SgdParams<T> kernel_params(const FusedSgdParams& h) {
  kernels::math::SgdParams<T> k;
  k.lr = static_cast<T>(h.lr);
  k.momentum = static_cast<T>(h.momentum);
  k.dampening = static_cast<T>(h.dampening);
  k.weight_decay = static_cast<T>(h.weight_decay);
  k.nesterov = h.nesterov;
  k.first_step = h.first_step;
  return k;
}

template <typename T>
kernels::math::AdamParams<T> kernel_params(const FusedAdamParams& h) {
  kernels::math::AdamParams<T> k;
  k.lr = static_cast<T>(h.lr);
  k.beta1 = static_cast<T>(h.beta1);
  k.beta2 = static_cast<T>(h.beta2);
  k.eps = static_cast<T>(h.eps);
  k.weight_decay = static_cast<T>(h.weight_decay);
  k.step_size = static_cast<T>(h.step_size);
  k.bias_correction2_sqrt = static_cast<T>(h.bias_correction2_sqrt);
  k.amsgrad = h.amsgrad;
  k.decoupled_weight_decay = h.decoupled_weight_decay;
  return k;
}

template <typename T>
kernels::math::RmspropParams<T> kernel_params(const FusedRmspropParams& h) {
  kernels::math::RmspropParams<T> k;
  k.lr = static_cast<T>(h.lr);
  k.alpha = static_cast<T>(h.alpha);
  k.eps = static_cast<T>(h.eps);
  k.weight_decay = static_cast<T>(h.weight_decay);
  k.momentum = static_cast<T>(h.momentum);
  k.centered = h.centered;
  return k;
}

// Bumps the versions of what the update writes, then runs kernel(ctx, entries, count)
// once per device and dtype. Entry<T>'s state slots are the lists' states, in order.
template <template <typename> class Entry, typename Hyper, typename Kernel>
void run_fused(const char* op, const FusedLists& lists, const std::vector<Hyper>& hyper_params,
               Kernel kernel) {
  for (size_t i = 0; i < lists.params.size(); ++i) {
    lists.params[i].impl().storage->bump_version();
    for (const StateList& s : lists.states) {
      if (s.used[i]) s.tensors[i].impl().storage->bump_version();
    }
  }
  for (const std::vector<size_t>& group : group_by_device(lists.params)) {
    dispatch::run(lists.params[group.front()], dispatch::kFloatingAndHalf, op,
                  [&]<typename T>(auto ctx) {
      EMBER_INTERNAL_ASSERT(static_cast<size_t>(Entry<T>::kNumState) == lists.states.size(),
                            op, ": ", lists.states.size(), " state lists for ",
                            Entry<T>::kNumState, " state slots");
      std::vector<Entry<T>> entries(group.size());
      for (size_t k = 0; k < group.size(); ++k) {
        const size_t i = group[k];
        Entry<T>& e = entries[k];
        e.param = lists.params[i].data<T>();
        e.grad = lists.grads[i].data<T>();
        for (size_t s = 0; s < lists.states.size(); ++s) {
          const StateList& list = lists.states[s];
          e.state[s] = list.used[i] ? list.tensors[i].data<T>() : nullptr;
        }
        e.numel = lists.params[i].numel();
        e.hyper = kernel_params<kernels::acc_t<T>>(hyper_params[i]);
      }
      kernel(ctx, entries.data(), static_cast<int64_t>(entries.size()));
    });
  }
}

// Per-entry flags from the hyper-parameters (false past the end of a short list, which
// check_lists then reports).
template <typename Hyper, typename Pred>
std::vector<bool> used_where(const std::vector<Hyper>& hyper_params, size_t n, Pred pred) {
  std::vector<bool> used(n, false);
  for (size_t i = 0; i < n && i < hyper_params.size(); ++i) used[i] = pred(hyper_params[i]);
  return used;
}

}  // namespace

void fused_sgd_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                const std::vector<Tensor>& momentum_buffers,
                const std::vector<FusedSgdParams>& hyper_params) {
  constexpr const char* kOp = "fused_sgd_";
  const size_t n = params.size();
  const FusedLists lists = check_lists(
      kOp, params, grads,
      {{"momentum_buffers", momentum_buffers,
        used_where(hyper_params, n, [](const FusedSgdParams& h) { return h.momentum != 0.0; })}},
      hyper_params.size());
  run_fused<kernels::SgdEntry>(kOp, lists, hyper_params,
                               [](auto ctx, const auto* entries, int64_t count) {
                                 sgd_multi_tensor(ctx, entries, count);
                               });
}

void fused_adam_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                 const std::vector<Tensor>& max_exp_avg_sqs,
                 const std::vector<FusedAdamParams>& hyper_params) {
  constexpr const char* kOp = "fused_adam_";
  const size_t n = params.size();
  const std::vector<bool> all(n, true);
  const FusedLists lists = check_lists(
      kOp, params, grads,
      {{"exp_avgs", exp_avgs, all},
       {"exp_avg_sqs", exp_avg_sqs, all},
       {"max_exp_avg_sqs", max_exp_avg_sqs,
        used_where(hyper_params, n, [](const FusedAdamParams& h) { return h.amsgrad; })}},
      hyper_params.size());
  run_fused<kernels::AdamEntry>(kOp, lists, hyper_params,
                                [](auto ctx, const auto* entries, int64_t count) {
                                  adam_multi_tensor(ctx, entries, count);
                                });
}

void fused_rmsprop_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                    const std::vector<Tensor>& square_avgs,
                    const std::vector<Tensor>& momentum_buffers,
                    const std::vector<Tensor>& grad_avgs,
                    const std::vector<FusedRmspropParams>& hyper_params) {
  constexpr const char* kOp = "fused_rmsprop_";
  const size_t n = params.size();
  const FusedLists lists = check_lists(
      kOp, params, grads,
      {{"square_avgs", square_avgs, std::vector<bool>(n, true)},
       {"momentum_buffers", momentum_buffers,
        used_where(hyper_params, n,
                   [](const FusedRmspropParams& h) { return h.momentum > 0.0; })},
       {"grad_avgs", grad_avgs,
        used_where(hyper_params, n, [](const FusedRmspropParams& h) { return h.centered; })}},
      hyper_params.size());
  run_fused<kernels::RmspropEntry>(kOp, lists, hyper_params,
                                   [](auto ctx, const auto* entries, int64_t count) {
                                     rmsprop_multi_tensor(ctx, entries, count);
                                   });
}

void amp_unscale_and_check_(const std::vector<Tensor>& grads, const Tensor& found_inf,
                            const Tensor& inv_scale) {
  constexpr const char* kOp = "amp_unscale_and_check_";
  for (const Tensor* t : {&found_inf, &inv_scale}) {
    EMBER_CHECK_T(DTypeError, t->defined() && t->dtype() == kFloat32 && t->numel() == 1, kOp,
                  ": found_inf and inv_scale must be float32 tensors of one element, got ",
                  describe(*t));
  }
  for (size_t i = 0; i < grads.size(); ++i) {
    const Tensor& g = grads[i];
    EMBER_CHECK_T(ValueError, g.defined(), kOp, ": grads[", i, "] is undefined");
    EMBER_CHECK_T(DTypeError, is_floating(g.dtype()), kOp, ": grads[", i, "] is ", describe(g),
                  "; expected a floating-point gradient");
    EMBER_CHECK_T(ValueError, g.is_contiguous(), kOp, ": grads[", i, "] (", describe(g),
                  ") is not contiguous; unscaling runs over flat memory");
    EMBER_CHECK_T(DeviceError, g.device() == found_inf.device() && g.device() == inv_scale.device(),
                  kOp, ": grads[", i, "] is ", describe(g), " but found_inf is ",
                  describe(found_inf), " and inv_scale ", describe(inv_scale));
  }
  NoGradGuard no_grad;
  for (const Tensor& g : grads) g.impl().storage->bump_version();
  found_inf.impl().storage->bump_version();
  for (const std::vector<size_t>& group : group_by_device(grads)) {
    const Tensor& first = grads[group.front()];
    dispatch::run(first, dispatch::kFloatingAndHalf, kOp, [&]<typename T>(auto ctx) {
      // One pass over the whole group, in one launch on a GPU (multi-tensor tables).
      std::vector<kernels::UnscaleEntry<T>> entries(group.size());
      for (size_t k = 0; k < group.size(); ++k) {
        entries[k] = {grads[group[k]].template data<T>(), grads[group[k]].numel()};
      }
      const auto count = static_cast<int64_t>(entries.size());
      unscale_and_check_multi_tensor(ctx, entries.data(), count, inv_scale.data<float>(),
                                     found_inf.data<float>());
    });
  }
}

}  // namespace ember
