// Losses: cross_entropy (fused log-softmax + NLL) and nll_loss, both with PyTorch's class
// weights; mse, l1, binary cross-entropy on probabilities and on logits (the latter with
// PyTorch's pos_weight). Each records one backward node; the kernels are
// kernels/cpu/loss.h and their CUDA twins.
#include <utility>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/deferred_check.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/kernels/cpu/loss.h"
#include "ember/kernels/cuda/loss.cuh"

namespace ember {

using kernels::PointwiseLoss;

namespace {

void check_class_targets(const Tensor& input, const Tensor& target, const char* op) {
  detail::check_floating(input, op);
  detail::check_defined(target, op, "target");
  EMBER_CHECK_T(ShapeError, input.dim() == 2, op, ": input must be [N, C] (batch, classes), got ",
                shape_str(input.shape()));
  EMBER_CHECK_T(DTypeError, target.dtype() == kInt64, op,
                ": target must hold int64 class indices, got ", detail::describe(target),
                " (convert with .to(kInt64))");
  EMBER_CHECK_T(ShapeError, target.dim() == 1 && target.size(0) == input.size(0), op,
                ": target ", shape_str(target.shape()), " must be [", input.size(0),
                "] to match input ", shape_str(input.shape()));
  detail::check_same_device(input, target, op);
}

// A loss's constant weight tensor (`weight`, `pos_weight`): the input's dtype and device,
// and no gradient wanted, since none flows into it (PyTorch implements none either).
void check_loss_weight(const Tensor& input, const Tensor& weight, const char* op,
                       const char* what) {
  EMBER_CHECK_T(DTypeError, weight.dtype() == input.dtype(), op, ": ", what,
                " must have the input's dtype, got ", what, " ", detail::describe(weight),
                " and input ", detail::describe(input), " (convert with .to(",
                dtype_name(input.dtype()), "))");
  EMBER_CHECK_T(DeviceError, weight.device() == input.device(), op, ": ", what,
                " must be on the input's device, got ", what, " ", detail::describe(weight),
                " and input ", detail::describe(input), " (move it with .to(device))");
  EMBER_CHECK_T(ValueError, !(weight.requires_grad() && grad_mode_enabled()), op, ": ", what,
                " requires grad, but no gradient flows into it (as in PyTorch); pass ", what,
                ".detach()");
}

// PyTorch's `weight`: one weight per class, [C].
void check_class_weight(const Tensor& input, const Tensor& weight, const char* op) {
  if (!weight.defined()) return;
  check_loss_weight(input, weight, op, "weight");
  EMBER_CHECK_T(ShapeError, weight.dim() == 1 && weight.size(0) == input.size(1), op,
                ": weight ", shape_str(weight.shape()), " must be [", input.size(1),
                "], one per class of input ", shape_str(input.shape()));
}

// The error for `bad` targets out of range; on a GPU it is raised later (Note [Deferred
// checks] in core/device.h), so it captures sizes, not tensors. On the CPU it is raised at
// the call and names the first offending targets and their rows.
detail::CheckRaise bad_targets_error(const Tensor& target, int64_t classes, int64_t ignore_index,
                                     const char* op) {
  const Tensor on_cpu = target.is_cuda() ? Tensor() : target;
  return [targets = target.numel(), classes, ignore_index, op, on_cpu](int64_t bad, bool deferred) {
    std::string first;
    if (on_cpu.defined()) {
      const int64_t* t = on_cpu.data<int64_t>();
      int shown = 0;
      for (int64_t i = 0; i < on_cpu.numel() && shown < 3; ++i) {
        if (t[i] == ignore_index || (t[i] >= 0 && t[i] < classes)) continue;
        first += detail::str_cat(shown++ == 0 ? "; first: " : ", ", "target[", i, "] = ", t[i]);
      }
    }
    throw ShapeError(detail::str_cat(
        op, ": ", bad, " of ", targets, " target(s) are outside the valid class range [0, ",
        classes, ") (and are not ignore_index)", first,
        deferred ? "; found at the device's next synchronization after the call (set "
                   "EMBER_SYNC_CHECKS=1 to raise at the call)"
                 : ""));
  };
}

// binary_cross_entropy's input and target are probabilities: values outside [0, 1] (or NaN)
// would give a loss of the wrong sign or a NaN, not an error, so they are counted and
// refused as PyTorch refuses them. `what` is "input" or "target"; on the CPU the message
// names the first few.
detail::CheckRaise outside_unit_interval_error(const Tensor& values, const char* what,
                                               const char* op) {
  const Tensor on_cpu = values.is_cuda() ? Tensor() : values;
  return [n = values.numel(), what, op, on_cpu](int64_t bad, bool deferred) {
    std::string first;
    if (on_cpu.defined()) {
      // Widened only when there is an error to report: the check costs no copy otherwise.
      const Tensor wide = on_cpu.to(kFloat64);
      const double* v = wide.data<double>();
      int shown = 0;
      for (int64_t i = 0; i < wide.numel() && shown < 3; ++i) {
        if (v[i] >= 0.0 && v[i] <= 1.0) continue;
        first += detail::str_cat(shown++ == 0 ? "; first: " : ", ", what, "[", i, "] = ", v[i]);
      }
    }
    throw ValueError(detail::str_cat(
        op, ": all elements of ", what, " should be between 0 and 1, but ", bad, " of ", n,
        " are not (NaN included)", first,
        std::string(what) == "input"
            ? "; for scores that are not probabilities use binary_cross_entropy_with_logits"
            : "",
        deferred ? "; found at the device's next synchronization after the call (set "
                   "EMBER_SYNC_CHECKS=1 to raise at the call)"
                 : ""));
  };
}

// The dtype of a mean's divisor and quotient: float32 for float16/bfloat16 losses, whose
// own dtype counts exactly only up to 256 (bfloat16) or 2048 (float16) rows.
DType divisor_dtype(DType dt) { return is_reduced_float(dt) ? kFloat32 : dt; }

// Reduces per-row losses; for Mean divides by `count` (a rank-0 tensor on the device,
// so nothing waits for the GPU; float32 for 16-bit rows, summed and divided in float32).
Tensor reduce_rows(const Tensor& rows, Reduction r, const Tensor& count) {
  switch (r) {
    case Reduction::None: return rows;
    case Reduction::Sum: return sum(rows);
    case Reduction::Mean:
      if (count.dtype() == rows.dtype()) return div(sum(rows), count);
      return div(sum(rows.to(count.dtype())), count).to(rows.dtype());
  }
  return rows;
}

// The per-row gradient scale for backward: a device scalar (stride 0) for Mean/Sum.
Tensor row_grad(const Tensor& g, Reduction r, const Tensor& count) {
  if (r != Reduction::Mean) return g.contiguous();
  if (count.dtype() == g.dtype()) return div(g, count).contiguous();
  return div(g.to(count.dtype()), count).to(g.dtype()).contiguous();
}

// Rows that count towards the mean: those whose target is not ignore_index.
Tensor valid_count(const Tensor& target, int64_t ignore_index, DType dt) {
  Tensor ignore = full({}, static_cast<double>(ignore_index),
                       {.dtype = kInt64, .device = target.device()});
  return sum(ne(target, ignore)).to(dt);
}

// PyTorch's divisor for a weighted mean: the sum of the targets' class weights, ignored
// rows adding nothing.
Tensor target_weight_sum(const Tensor& target, const Tensor& weight, int64_t ignore_index,
                         const char* op) {
  const int64_t N = target.numel(), C = weight.numel();
  Tensor per_row = detail::empty_on({N}, weight.dtype(), weight.device());
  dispatch::run(weight, dispatch::kFloatingAndHalf, op, [&]<typename T>(auto ctx) {
    target_class_weights(ctx, target.data<int64_t>(), weight.data<T>(), per_row.data<T>(), N, C,
                         ignore_index);
  });
  return sum(per_row.to(divisor_dtype(weight.dtype())));
}

enum class ClassLoss { CrossEntropy, Nll };

Tensor class_loss(const Tensor& input, const Tensor& target, const CrossEntropyOptions& opts,
                  ClassLoss kind) {
  if (auto c = autocast::to_float32({input, opts.weight})) {
    CrossEntropyOptions o = opts;
    o.weight = (*c)[1];
    return class_loss((*c)[0], target, o, kind);
  }
  const char* name = kind == ClassLoss::CrossEntropy ? "cross_entropy" : "nll_loss";
  check_class_targets(input, target, name);
  EMBER_CHECK_T(ValueError, opts.label_smoothing >= 0.0 && opts.label_smoothing <= 1.0, name,
                ": label_smoothing must be in [0, 1], got ", opts.label_smoothing);
  EMBER_CHECK_T(ValueError, kind == ClassLoss::CrossEntropy || opts.label_smoothing == 0.0, name,
                ": label_smoothing is only supported by cross_entropy");
  check_class_weight(input, opts.weight, name);
  const int64_t N = input.size(0), C = input.size(1);
  const Reduction reduction = opts.reduction;
  const int64_t ignore_index = opts.ignore_index;
  const double smoothing = opts.label_smoothing;
  Tensor x = input.contiguous();
  Tensor t = target.contiguous();
  const Tensor w = opts.weight.defined() ? opts.weight.detach().contiguous() : Tensor();
  Tensor rows = detail::empty_on({N}, x.dtype(), x.device());
  Tensor lse = kind == ClassLoss::CrossEntropy ? detail::empty_on({N}, x.dtype(), x.device())
                                               : Tensor();
  detail::DeviceCheck bad(x.device());
  dispatch::run(x, dispatch::kFloatingAndHalf, name, [&]<typename T>(auto ctx) {
    const T* class_weight = w.defined() ? w.data<T>() : nullptr;
    if (kind == ClassLoss::CrossEntropy) {
      cross_entropy_forward(ctx, x.data<T>(), t.data<int64_t>(), class_weight, rows.data<T>(),
                            lse.data<T>(), N, C, ignore_index, smoothing, bad.counter());
    } else {
      nll_forward(ctx, x.data<T>(), t.data<int64_t>(), class_weight, rows.data<T>(), N, C,
                  ignore_index, bad.counter());
    }
  });
  // Invalid targets are an error, not a NaN found later; on a GPU, without a wait here.
  bad.commit(bad_targets_error(t, C, ignore_index, name));

  Tensor count;
  Tensor out;
  {
    NoGradGuard no_grad;
    if (reduction == Reduction::Mean) {
      count = w.defined() ? target_weight_sum(t, w, ignore_index, name)
                          : valid_count(t, ignore_index, divisor_dtype(x.dtype()));
    }
    out = reduce_rows(rows, reduction, count);
  }
  if (autograd::needs_grad({&input})) {
    autograd::record(name, {input}, {out},
                     [kind, name, reduction, ignore_index, smoothing, N, C, count,
                      weighted = w.defined(),
                      sx = autograd::SavedTensor(
                          kind == ClassLoss::CrossEntropy ? x : Tensor(), name),
                      st = autograd::SavedTensor(t, name), slse = autograd::SavedTensor(lse, name),
                      sw = autograd::SavedTensor(w, name)](std::vector<Tensor>& g) {
                       // input: [N, C], g: [] or [N]
                       // An undefined tensor is saved as nothing: unpack only what exists.
                       Tensor tt = st.unpack(), ww = weighted ? sw.unpack() : Tensor();
                       Tensor xx, l;
                       if (kind == ClassLoss::CrossEntropy) {
                         xx = sx.unpack();
                         l = slse.unpack();
                       }
                       Tensor gr = row_grad(g[0], reduction, count);
                       const int64_t stride = reduction == Reduction::None ? 1 : 0;
                       Tensor gx = detail::empty_on({N, C}, gr.dtype(), gr.device());
                       constexpr auto kTypes = dispatch::kFloatingAndHalf;
                       dispatch::run(gx, kTypes, name, [&]<typename T>(auto ctx) {
                         const T* class_weight = ww.defined() ? ww.data<T>() : nullptr;
                         if (kind == ClassLoss::CrossEntropy) {
                           cross_entropy_backward(ctx, xx.data<T>(), tt.data<int64_t>(),
                                                  class_weight, l.data<T>(), gr.data<T>(), stride,
                                                  gx.data<T>(), N, C, ignore_index, smoothing);
                         } else {
                           nll_backward(ctx, tt.data<int64_t>(), class_weight, gr.data<T>(),
                                        stride, gx.data<T>(), N, C, ignore_index);
                         }
                       });
                       return std::vector<Tensor>{gx};
                     });
  }
  return out;
}

// pos_weight as the kernels read it: element i of the input takes values[i % period].
struct PosWeight {
  Tensor values;
  int64_t period = 0;
};

// PyTorch broadcasts pos_weight against the input. A pos_weight whose shape, past its
// leading 1s, is a suffix of the input's (the usual [C] for [N, C]) repeats with period
// numel and is read as it is; any other broadcast is expanded to the input's shape.
PosWeight prepare_pos_weight(const Tensor& input, const Tensor& pos_weight, const char* op) {
  if (!pos_weight.defined()) return {};
  check_loss_weight(input, pos_weight, op, "pos_weight");
  const Shape& ps = pos_weight.shape();
  const Shape& xs = input.shape();
  const int64_t offset = static_cast<int64_t>(xs.size()) - static_cast<int64_t>(ps.size());
  bool broadcastable = offset >= 0;
  for (int64_t k = 0; broadcastable && k < static_cast<int64_t>(ps.size()); ++k) {
    broadcastable = ps[k] == 1 || ps[k] == xs[offset + k];
  }
  EMBER_CHECK_T(ShapeError, broadcastable, op, ": pos_weight ", shape_str(ps),
                " cannot be broadcast to the input ", shape_str(xs),
                " (use [C] for one weight per class of the last dimension)");
  size_t lead = 0;
  while (lead < ps.size() && ps[lead] == 1) ++lead;
  bool suffix = true;
  for (size_t k = lead; suffix && k < ps.size(); ++k) {
    suffix = ps[k] == xs[offset + static_cast<int64_t>(k)];
  }
  const Tensor p = pos_weight.detach();
  if (suffix) return {p.contiguous(), p.numel()};
  return {p.expand(xs).contiguous(), input.numel()};
}

Tensor pointwise(const Tensor& input, const Tensor& target, Reduction reduction, PointwiseLoss op,
                 const char* name, const Tensor& pos_weight_in = Tensor()) {
  if (auto c = autocast::to_float32({input, target, pos_weight_in})) {
    return pointwise((*c)[0], (*c)[1], reduction, op, name, (*c)[2]);
  }
  detail::check_floating(input, name);
  detail::check_defined(target, name, "target");
  detail::check_same_device(input, target, name);
  detail::check_same_dtype(input, target, name);
  EMBER_CHECK_T(ShapeError, input.shape() == target.shape(), name, ": input ",
                shape_str(input.shape()), " and target ", shape_str(target.shape()),
                " must have the same shape");
  const PosWeight pw = prepare_pos_weight(input, pos_weight_in, name);
  Tensor x = input.contiguous(), t = target.contiguous();
  Tensor rows = detail::empty_like(x);
  const int64_t n = x.numel();
  if (op == PointwiseLoss::BinaryCrossEntropy) {
    const std::pair<const Tensor*, const char*> checked[] = {{&x, "input"}, {&t, "target"}};
    for (const auto& v : checked) {
      const Tensor& values = *v.first;
      detail::DeviceCheck outside(values.device());
      dispatch::run(values, dispatch::kFloatingAndHalf, name, [&]<typename T>(auto ctx) {
        count_outside(ctx, values.data<T>(), n, 0.0, 1.0, outside.counter());
      });
      outside.commit(outside_unit_interval_error(values, v.second, name));
    }
  }
  dispatch::run(x, dispatch::kFloatingAndHalf, name, [&]<typename T>(auto ctx) {
    if (pw.values.defined()) {
      bce_with_logits_forward(ctx, x.data<T>(), t.data<T>(), pw.values.data<T>(), pw.period,
                              rows.data<T>(), n);
    } else {
      pointwise_loss_forward(ctx, op, x.data<T>(), t.data<T>(), rows.data<T>(), n);
    }
  });
  Tensor count = full({}, static_cast<double>(n),
                      {.dtype = divisor_dtype(x.dtype()), .device = x.device()});
  Tensor out;
  {
    NoGradGuard no_grad;
    out = reduce_rows(rows, reduction, count);
  }
  const bool target_grad =
      target.requires_grad() && (op == PointwiseLoss::Mse || op == PointwiseLoss::L1);
  if (autograd::needs_grad({&input}) || (grad_mode_enabled() && target_grad)) {
    autograd::record(name, {input, target}, {out},
                     [op, name, reduction, n, target_grad, count, period = pw.period,
                      pos_weighted = pw.values.defined(),
                      sx = autograd::SavedTensor(x, name), st = autograd::SavedTensor(t, name),
                      spw = autograd::SavedTensor(pw.values, name)](std::vector<Tensor>& g) {
                       // input, target: same shape; g: [] or that shape
                       Tensor xx = sx.unpack(), tt = st.unpack();
                       Tensor pwv = pos_weighted ? spw.unpack() : Tensor();
                       Tensor gr = row_grad(g[0], reduction, count);
                       const int64_t stride = reduction == Reduction::None ? 1 : 0;
                       Tensor gx = detail::empty_like(xx);
                       constexpr auto kTypes = dispatch::kFloatingAndHalf;
                       dispatch::run(xx, kTypes, name, [&]<typename T>(auto ctx) {
                         if (pwv.defined()) {
                           bce_with_logits_backward(ctx, xx.data<T>(), tt.data<T>(),
                                                    pwv.data<T>(), period, gr.data<T>(), stride,
                                                    gx.data<T>(), n);
                         } else {
                           pointwise_loss_backward(ctx, op, xx.data<T>(), tt.data<T>(),
                                                   gr.data<T>(), stride, gx.data<T>(), n);
                         }
                       });
                       // For MSE and L1 the target's gradient is the input's, negated.
                       return std::vector<Tensor>{gx, target_grad ? neg(gx) : Tensor()};
                     });
  }
  return out;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target, CrossEntropyOptions opts) {
  return class_loss(logits, target, opts, ClassLoss::CrossEntropy);
}
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, CrossEntropyOptions opts) {
  return class_loss(log_probs, target, opts, ClassLoss::Nll);
}
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  return pointwise(input, target, reduction, PointwiseLoss::Mse, "mse_loss");
}
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  return pointwise(input, target, reduction, PointwiseLoss::L1, "l1_loss");
}
Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, Reduction reduction) {
  return pointwise(input, target, reduction, PointwiseLoss::BinaryCrossEntropy,
                   "binary_cross_entropy");
}
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction reduction) {
  return binary_cross_entropy_with_logits(logits, target, {.reduction = reduction});
}
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        BCEWithLogitsOptions opts) {
  return pointwise(logits, target, opts.reduction, PointwiseLoss::BinaryCrossEntropyWithLogits,
                   "binary_cross_entropy_with_logits", opts.pos_weight);
}

}  // namespace ember
