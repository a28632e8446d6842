// Losses: cross_entropy (fused log-softmax + NLL), nll_loss, mse, l1, binary
// cross-entropy (on probabilities and on logits). Each records one backward node.
#include <cuda_runtime_api.h>

#include "ember/core/autograd.h"
#include "ember/core/base/cuda_check.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/kernels/cpu/loss.h"
#include "ember/kernels/cuda/loss.cuh"

namespace ember {

using kernels::PointwiseLoss;

namespace {

const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::None: return "none";
    case Reduction::Mean: return "mean";
    case Reduction::Sum: return "sum";
  }
  return "?";
}

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

void throw_bad_targets(int64_t bad, const Tensor& target, int64_t classes, const char* op) {
  EMBER_CHECK_T(ShapeError, bad == 0, op, ": ", bad, " of ", target.numel(),
                " target(s) are outside the valid class range [0, ", classes,
                ") (and are not ignore_index)");
}

// Reduces per-row losses; for Mean divides by `count` (a rank-0 tensor on the device,
// so nothing waits for the GPU).
Tensor reduce_rows(const Tensor& rows, Reduction r, const Tensor& count) {
  switch (r) {
    case Reduction::None: return rows;
    case Reduction::Sum: return sum(rows);
    case Reduction::Mean: return div(sum(rows), count);
  }
  return rows;
}

// The per-row gradient scale for backward: a device scalar (stride 0) for Mean/Sum.
Tensor row_grad(const Tensor& g, Reduction r, const Tensor& count) {
  if (r == Reduction::Mean) return div(g, count).contiguous();
  return g.contiguous();
}

// Rows that count towards the mean: those whose target is not ignore_index.
Tensor valid_count(const Tensor& target, int64_t ignore_index, DType dt) {
  Tensor ignore = full({}, static_cast<double>(ignore_index), {.dtype = kInt64, .device = target.device()});
  return sum(ne(target, ignore)).to(dt);
}

enum class ClassLoss { CrossEntropy, Nll };

Tensor class_loss(const Tensor& input, const Tensor& target, CrossEntropyOptions opts, ClassLoss kind) {
  const char* name = kind == ClassLoss::CrossEntropy ? "cross_entropy" : "nll_loss";
  check_class_targets(input, target, name);
  EMBER_CHECK(opts.label_smoothing >= 0.0 && opts.label_smoothing <= 1.0, name,
              ": label_smoothing must be in [0, 1], got ", opts.label_smoothing);
  EMBER_CHECK(kind == ClassLoss::CrossEntropy || opts.label_smoothing == 0.0, name,
              ": label_smoothing is only supported by cross_entropy");
  const int64_t N = input.size(0), C = input.size(1);
  Tensor x = input.contiguous();
  Tensor t = target.contiguous();
  Tensor rows = detail::empty_on({N}, x.dtype(), x.device());
  Tensor lse = kind == ClassLoss::CrossEntropy ? detail::empty_on({N}, x.dtype(), x.device()) : Tensor();
  int64_t bad = 0;
  if (x.is_cuda()) {
    cudaStream_t s = detail::stream_of(x);
    Tensor bad_dev = zeros({}, {.dtype = kInt64, .device = x.device()});
    if (kind == ClassLoss::CrossEntropy) {
      kernels::cuda::cross_entropy_forward(s, x.data<float>(), t.data<int64_t>(), rows.data<float>(),
                                           lse.data<float>(), N, C, opts.ignore_index,
                                           opts.label_smoothing, bad_dev.data<int64_t>());
    } else {
      kernels::cuda::nll_forward(s, x.data<float>(), t.data<int64_t>(), rows.data<float>(), N, C,
                                 opts.ignore_index, bad_dev.data<int64_t>());
    }
    // Invalid targets must be an error, not a NaN found later: this reads back 8 bytes.
    bad = bad_dev.item<int64_t>();
  } else if (x.dtype() == kFloat32) {
    bad = kind == ClassLoss::CrossEntropy
              ? kernels::cpu::cross_entropy_forward(x.data<float>(), t.data<int64_t>(), rows.data<float>(),
                                                    lse.data<float>(), N, C, opts.ignore_index,
                                                    opts.label_smoothing)
              : kernels::cpu::nll_forward(x.data<float>(), t.data<int64_t>(), rows.data<float>(), N, C,
                                          opts.ignore_index);
  } else {
    bad = kind == ClassLoss::CrossEntropy
              ? kernels::cpu::cross_entropy_forward(x.data<double>(), t.data<int64_t>(), rows.data<double>(),
                                                    lse.data<double>(), N, C, opts.ignore_index,
                                                    opts.label_smoothing)
              : kernels::cpu::nll_forward(x.data<double>(), t.data<int64_t>(), rows.data<double>(), N, C,
                                          opts.ignore_index);
  }
  throw_bad_targets(bad, t, C, name);

  Tensor count = opts.reduction == Reduction::Mean ? valid_count(t, opts.ignore_index, x.dtype()) : Tensor();
  Tensor out;
  {
    NoGradGuard no_grad;
    out = reduce_rows(rows, opts.reduction, count);
  }
  if (autograd::needs_grad({&input})) {
    autograd::record(name, {input}, {out},
                     [kind, opts, N, C, sx = autograd::SavedTensor(kind == ClassLoss::CrossEntropy ? x : Tensor(), name),
                      st = autograd::SavedTensor(t, name), slse = autograd::SavedTensor(lse, name),
                      count](std::vector<Tensor>& g) {
                       // input: [N, C], g: [] or [N]
                       Tensor tt = st.unpack();
                       Tensor gr = row_grad(g[0], opts.reduction, count);
                       const int64_t stride = opts.reduction == Reduction::None ? 1 : 0;
                       Tensor gx = detail::empty_on({N, C}, gr.dtype(), gr.device());
                       if (kind == ClassLoss::CrossEntropy) {
                         Tensor xx = sx.unpack(), l = slse.unpack();
                         if (xx.is_cuda()) {
                           kernels::cuda::cross_entropy_backward(detail::stream_of(xx), xx.data<float>(), tt.data<int64_t>(),
                                                                 l.data<float>(), gr.data<float>(), stride, gx.data<float>(),
                                                                 N, C, opts.ignore_index, opts.label_smoothing);
                         } else if (xx.dtype() == kFloat32) {
                           kernels::cpu::cross_entropy_backward(xx.data<float>(), tt.data<int64_t>(), l.data<float>(),
                                                                gr.data<float>(), stride, gx.data<float>(), N, C,
                                                                opts.ignore_index, opts.label_smoothing);
                         } else {
                           kernels::cpu::cross_entropy_backward(xx.data<double>(), tt.data<int64_t>(), l.data<double>(),
                                                                gr.data<double>(), stride, gx.data<double>(), N, C,
                                                                opts.ignore_index, opts.label_smoothing);
                         }
                       } else if (gr.is_cuda()) {
                         kernels::cuda::nll_backward(detail::stream_of(gr), tt.data<int64_t>(), gr.data<float>(), stride,
                                                     gx.data<float>(), N, C, opts.ignore_index);
                       } else if (gr.dtype() == kFloat32) {
                         kernels::cpu::nll_backward(tt.data<int64_t>(), gr.data<float>(), stride, gx.data<float>(), N,
                                                    C, opts.ignore_index);
                       } else {
                         kernels::cpu::nll_backward(tt.data<int64_t>(), gr.data<double>(), stride, gx.data<double>(),
                                                    N, C, opts.ignore_index);
                       }
                       return std::vector<Tensor>{gx};
                     });
  }
  return out;
}

Tensor pointwise(const Tensor& input, const Tensor& target, Reduction reduction, PointwiseLoss op,
                 const char* name) {
  detail::check_floating(input, name);
  detail::check_defined(target, name, "target");
  detail::check_same_device(input, target, name);
  detail::check_same_dtype(input, target, name);
  EMBER_CHECK_T(ShapeError, input.shape() == target.shape(), name, ": input ",
                shape_str(input.shape()), " and target ", shape_str(target.shape()),
                " must have the same shape");
  Tensor x = input.contiguous(), t = target.contiguous();
  Tensor rows = detail::empty_like(x);
  const int64_t n = x.numel();
  if (x.is_cuda()) {
    kernels::cuda::pointwise_loss_forward(detail::stream_of(x), op, x.data<float>(), t.data<float>(),
                                          rows.data<float>(), n);
  } else if (x.dtype() == kFloat32) {
    kernels::cpu::pointwise_loss_forward(op, x.data<float>(), t.data<float>(), rows.data<float>(), n);
  } else {
    kernels::cpu::pointwise_loss_forward(op, x.data<double>(), t.data<double>(), rows.data<double>(), n);
  }
  Tensor count = full({}, static_cast<double>(n), {.dtype = x.dtype(), .device = x.device()});
  Tensor out;
  {
    NoGradGuard no_grad;
    out = reduce_rows(rows, reduction, count);
  }
  const bool target_grad = target.requires_grad() && (op == PointwiseLoss::Mse || op == PointwiseLoss::L1);
  if (autograd::needs_grad({&input}) || (grad_mode_enabled() && target_grad)) {
    autograd::record(name, {input, target}, {out},
                     [op, reduction, n, target_grad, count, sx = autograd::SavedTensor(x, name),
                      st = autograd::SavedTensor(t, name)](std::vector<Tensor>& g) {
                       // input, target: same shape; g: [] or that shape
                       Tensor xx = sx.unpack(), tt = st.unpack();
                       Tensor gr = row_grad(g[0], reduction, count);
                       const int64_t stride = reduction == Reduction::None ? 1 : 0;
                       Tensor gx = detail::empty_like(xx);
                       if (xx.is_cuda()) {
                         kernels::cuda::pointwise_loss_backward(detail::stream_of(xx), op, xx.data<float>(),
                                                                tt.data<float>(), gr.data<float>(), stride,
                                                                gx.data<float>(), n);
                       } else if (xx.dtype() == kFloat32) {
                         kernels::cpu::pointwise_loss_backward(op, xx.data<float>(), tt.data<float>(), gr.data<float>(),
                                                               stride, gx.data<float>(), n);
                       } else {
                         kernels::cpu::pointwise_loss_backward(op, xx.data<double>(), tt.data<double>(),
                                                               gr.data<double>(), stride, gx.data<double>(), n);
                       }
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
  return pointwise(input, target, reduction, PointwiseLoss::BinaryCrossEntropy, "binary_cross_entropy");
}
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction) {
  return pointwise(logits, target, reduction, PointwiseLoss::BinaryCrossEntropyWithLogits,
                   "binary_cross_entropy_with_logits");
}

}  // namespace ember
