// Normalization ops: batch_norm (running statistics updated in place) and layer_norm,
// each with one backward node for the input, the weight and the bias; the kernels are
// kernels/cpu/norm.h and their CUDA twins (cuDNN batch norm, hand-written layer norm).
#include "ember/kernels/cpu/norm.h"

#include <algorithm>
#include <vector>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/core/ops/scratch.h"
#include "ember/kernels/cuda/norm.cuh"

namespace ember {

namespace {

constexpr const char* kBatchNorm = "batch_norm";
constexpr const char* kLayerNorm = "layer_norm";

// A parameter-like tensor (weight, bias, running stats): same dtype and device as x and
// exactly `expected` in shape.
void check_param(const Tensor& t, const char* what, const Tensor& x, const Shape& expected,
                 const char* op, const char* meaning) {
  if (!t.defined()) return;
  EMBER_CHECK_T(ShapeError, t.shape() == expected, op, ": ", what, " ", shape_str(t.shape()),
                " does not match ", meaning, " of input ", shape_str(x.shape()), " (expected ",
                shape_str(expected), ")");
  EMBER_CHECK_T(DeviceError, t.device() == x.device(), op, ": ", what, " is on ", t.device().str(),
                " but the input ", shape_str(x.shape()), " is on ", x.device().str(),
                " (move it with .to(device))");
  EMBER_CHECK_T(DTypeError, t.dtype() == x.dtype(), op, ": ", what, " is ", dtype_name(t.dtype()),
                " but the input is ", dtype_name(x.dtype()));
}

// Dims other than the channel dim 1: what batch norm's parameter gradients sum over.
std::vector<int64_t> non_channel_dims(int64_t rank) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < rank; ++d) dims.push_back(d);
  return dims;
}

// Runs the running-stat update (`update`) on contiguous aliases of the running stats and
// writes them back when the originals are strided. Running stats never require grad (the
// op checks), so autograd sees the update only as a version bump.
template <typename F>
void update_running_stats(const Tensor& running_mean, const Tensor& running_var, F&& update) {
  NoGradGuard no_grad;
  if (!running_mean.defined()) {
    update(Tensor(), Tensor());
    return;
  }
  detail::prepare_inplace(running_mean, kBatchNorm);
  detail::prepare_inplace(running_var, kBatchNorm);
  Tensor rm = running_mean.contiguous(), rv = running_var.contiguous();
  update(rm, rv);
  // Tensor is a handle: copying it and writing through the copy updates the caller's.
  Tensor mean_out = running_mean, var_out = running_var;
  if (!rm.is_same(mean_out)) mean_out.copy_(rm);
  if (!rv.is_same(var_out)) var_out.copy_(rv);
}

// SavedTensor::unpack refuses an empty slot; optional inputs (weight, bias) may be one.
Tensor unpack_optional(const autograd::SavedTensor& s) {
  return s.defined() ? s.unpack() : Tensor();
}

template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

struct BatchNormSizes {
  int64_t n = 0, c = 0, s = 1;
};

// Training backward from the saved batch statistics. Returns {gx, gw, gb}, each only
// when asked for.
std::vector<Tensor> batch_norm_backward_training(const Tensor& x, const Tensor& gy,
                                                 const Tensor& weight, const Tensor& mean,
                                                 const Tensor& invstd, BatchNormSizes z, double eps,
                                                 bool want_x, bool want_w, bool want_b) {
  const TensorOptions opts{.dtype = x.dtype(), .device = x.device()};
  if (x.numel() == 0) {
    return {want_x ? empty(x.shape(), opts) : Tensor(), want_w ? zeros({z.c}, opts) : Tensor(),
            want_b ? zeros({z.c}, opts) : Tensor()};
  }
  Tensor gx = want_x ? empty(x.shape(), opts) : Tensor();
  Tensor gw = want_w ? empty({z.c}, opts) : Tensor();
  Tensor gb = want_b ? empty({z.c}, opts) : Tensor();
  Tensor held;  // the kernel's scratch
  dispatch::run(x, dispatch::kFloatingAndHalf, kBatchNorm, [&]<typename T>(auto ctx) {
    batch_norm_backward(ctx, x.data<T>(), gy.data<T>(), ptr_or_null<T>(weight), mean.data<T>(),
                        invstd.data<T>(), ptr_or_null<T>(gx), ptr_or_null<T>(gw),
                        ptr_or_null<T>(gb), z.n, z.c, z.s, eps,
                        detail::pool_scratch(x.device(), held));
  });
  return {gx, gw, gb};
}

Tensor batch_norm_training_forward(const Tensor& x, const Tensor& running_mean,
                                   const Tensor& running_var, const Tensor& weight,
                                   const Tensor& bias, BatchNormSizes z, double momentum,
                                   double eps, Tensor* save_mean, Tensor* save_invstd) {
  const TensorOptions opts{.dtype = x.dtype(), .device = x.device()};
  Tensor y = empty(x.shape(), opts);
  *save_mean = empty({z.c}, opts);
  *save_invstd = empty({z.c}, opts);
  if (x.numel() == 0) return y;  // nothing to normalize; running stats stay as they are
  update_running_stats(running_mean, running_var, [&](const Tensor& rm, const Tensor& rv) {
    Tensor held;  // the kernel's scratch
    dispatch::run(x, dispatch::kFloatingAndHalf, kBatchNorm, [&]<typename T>(auto ctx) {
      batch_norm_forward_training(ctx, x.data<T>(), ptr_or_null<T>(weight), ptr_or_null<T>(bias),
                                  y.data<T>(), save_mean->data<T>(), save_invstd->data<T>(),
                                  ptr_or_null<T>(rm), ptr_or_null<T>(rv), z.n, z.c, z.s,
                                  momentum, eps, detail::pool_scratch(x.device(), held));
    });
  });
  return y;
}

Tensor batch_norm_inference_forward(const Tensor& x, const Tensor& running_mean,
                                    const Tensor& running_var, const Tensor& weight,
                                    const Tensor& bias, BatchNormSizes z, double eps) {
  const TensorOptions opts{.dtype = x.dtype(), .device = x.device()};
  Tensor y = empty(x.shape(), opts);
  if (x.numel() == 0) return y;
  Tensor rm = running_mean.contiguous(), rv = running_var.contiguous();
  Tensor held;  // the kernel's scratch
  dispatch::run(x, dispatch::kFloatingAndHalf, kBatchNorm, [&]<typename T>(auto ctx) {
    batch_norm_forward_inference(ctx, x.data<T>(), ptr_or_null<T>(weight), ptr_or_null<T>(bias),
                                 rm.data<T>(), rv.data<T>(), y.data<T>(), z.n, z.c, z.s, eps,
                                 detail::pool_scratch(x.device(), held));
  });
  return y;
}

}  // namespace

Tensor batch_norm(const Tensor& x_in, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight_in, const Tensor& bias_in, bool training, double momentum,
                  double eps) {
  // The running statistics are updated in place, so they are never cast.
  if (auto c = autocast::to_float32({x_in, weight_in, bias_in})) {
    return batch_norm((*c)[0], running_mean, running_var, (*c)[1], (*c)[2], training, momentum,
                      eps);
  }
  detail::check_floating(x_in, kBatchNorm);
  EMBER_CHECK_T(ShapeError, x_in.dim() >= 2, kBatchNorm,
                ": input must be [N, C] or [N, C, *], got ", shape_str(x_in.shape()));
  EMBER_CHECK_T(ValueError, eps >= 0.0, kBatchNorm, ": eps must be non-negative, got ", eps);
  BatchNormSizes z;
  z.n = x_in.size(0);
  z.c = x_in.size(1);
  for (int64_t d = 2; d < x_in.dim(); ++d) z.s *= x_in.size(d);
  const Shape channels{z.c};
  check_param(weight_in, "weight", x_in, channels, kBatchNorm, "the channels (dim 1)");
  check_param(bias_in, "bias", x_in, channels, kBatchNorm, "the channels (dim 1)");
  check_param(running_mean, "running_mean", x_in, channels, kBatchNorm, "the channels (dim 1)");
  check_param(running_var, "running_var", x_in, channels, kBatchNorm, "the channels (dim 1)");
  EMBER_CHECK_T(ValueError, running_mean.defined() == running_var.defined(), kBatchNorm,
                ": running_mean and running_var must both be defined or both undefined, got ",
                detail::describe(running_mean), " and ", detail::describe(running_var));
  EMBER_CHECK_T(
      ValueError,
      !(running_mean.defined() && (running_mean.requires_grad() || running_var.requires_grad())),
      kBatchNorm,
      ": running_mean and running_var are buffers updated in place and "
      "must not require grad");
  EMBER_CHECK_T(ValueError, training || running_mean.defined(), kBatchNorm,
                ": eval mode (training = false) normalizes with running_mean and running_var, "
                "which are undefined (pass them, or training = true to use the batch statistics)");
  EMBER_CHECK_T(ValueError, !training || z.n * z.s != 1, kBatchNorm,
                ": Expected more than 1 value per channel when training, got input size ",
                shape_str(x_in.shape()));

  Tensor x = x_in.contiguous();
  Tensor weight = weight_in.defined() ? weight_in.contiguous() : Tensor();
  Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const bool want_x = x_in.requires_grad(),
             want_w = weight_in.defined() && weight_in.requires_grad(),
             want_b = bias_in.defined() && bias_in.requires_grad();
  const bool record = autograd::needs_grad({&x_in, &weight_in, &bias_in});

  if (training) {
    Tensor save_mean, save_invstd;
    Tensor y = batch_norm_training_forward(x, running_mean, running_var, weight, bias, z, momentum,
                                           eps, &save_mean, &save_invstd);
    if (record) {
      autograd::record(
          kBatchNorm, {x_in, weight_in, bias_in}, {y},
          [z, eps, want_x, want_w, want_b, sx = autograd::SavedTensor(x, kBatchNorm),
           sw = autograd::SavedTensor(weight, kBatchNorm),
           smean = autograd::SavedTensor(save_mean, kBatchNorm),
           sinvstd = autograd::SavedTensor(save_invstd, kBatchNorm)](std::vector<Tensor>& g) {
            // x, g: [N, C, *]; weight, mean, invstd: [C] -> gx [N, C, *], gw, gb [C]
            return batch_norm_backward_training(sx.unpack(), g[0].contiguous(), unpack_optional(sw),
                                                smean.unpack(), sinvstd.unpack(), z, eps, want_x,
                                                want_w, want_b);
          });
    }
    return y;
  }

  Tensor y = batch_norm_inference_forward(x, running_mean, running_var, weight, bias, z, eps);
  if (record) {
    // The eval-mode statistics are constants: y = x * scale + shift per channel. They are
    // copied here so a later training step, which updates the running stats in place,
    // cannot invalidate this graph.
    Tensor mean_c, invstd_c;
    {
      NoGradGuard no_grad;
      mean_c = running_mean.clone();
      invstd_c = pow(add(running_var, eps), -0.5);
    }
    Shape bshape(static_cast<size_t>(x.dim()), 1);
    bshape[1] = z.c;
    autograd::record(
        kBatchNorm, {x_in, weight_in, bias_in}, {y},
        [bshape, want_x, want_w, want_b,
         sx = autograd::SavedTensor(want_w ? x : Tensor(), kBatchNorm),
         sw = autograd::SavedTensor(weight, kBatchNorm), mean_c, invstd_c](std::vector<Tensor>& g) {
          // x, g: [N, C, *]; mean, invstd, weight: [C] broadcast as [1, C, 1, ...]
          const Tensor& gy = g[0];
          const std::vector<int64_t> dims = non_channel_dims(gy.dim());
          const Tensor invstd = invstd_c.reshape(bshape);
          std::vector<Tensor> out(3);
          if (want_x) {
            Tensor w = unpack_optional(sw);
            out[0] = mul(gy, w.defined() ? mul(w.reshape(bshape), invstd) : invstd);
          }
          if (want_w) {
            Tensor xhat = mul(sub(sx.unpack(), mean_c.reshape(bshape)), invstd);
            out[1] = sum(mul(gy, xhat), dims);
          }
          if (want_b) out[2] = sum(gy, dims);
          return out;
        });
  }
  return y;
}

Tensor layer_norm(const Tensor& x_in, const Shape& normalized_shape, const Tensor& weight_in,
                  const Tensor& bias_in, double eps) {
  if (auto c = autocast::to_float32({x_in, weight_in, bias_in})) {
    return layer_norm((*c)[0], normalized_shape, (*c)[1], (*c)[2], eps);
  }
  detail::check_floating(x_in, kLayerNorm);
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  EMBER_CHECK_T(ShapeError, k >= 1, kLayerNorm, ": normalized_shape must not be empty");
  bool trailing = x_in.dim() >= k;
  for (int64_t i = 0; trailing && i < k; ++i) {
    trailing = x_in.size(x_in.dim() - k + i) == normalized_shape[i];
  }
  std::string expected = shape_str(normalized_shape);
  EMBER_CHECK_T(ShapeError, trailing, kLayerNorm, ": normalized_shape ", expected,
                " expects input of shape [*, ", expected.substr(1), ", got ",
                shape_str(x_in.shape()));
  EMBER_CHECK_T(ValueError, eps >= 0.0, kLayerNorm, ": eps must be non-negative, got ", eps);
  check_param(weight_in, "weight", x_in, normalized_shape, kLayerNorm, "normalized_shape");
  check_param(bias_in, "bias", x_in, normalized_shape, kLayerNorm, "normalized_shape");

  const int64_t cols = shape_numel(normalized_shape);
  int64_t rows = 1;
  for (int64_t d = 0; d < x_in.dim() - k; ++d) rows *= x_in.size(d);
  Tensor x = x_in.contiguous();
  Tensor weight = weight_in.defined() ? weight_in.contiguous() : Tensor();
  Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const TensorOptions opts{.dtype = x.dtype(), .device = x.device()};
  Tensor y = empty(x.shape(), opts);
  Tensor mean = empty({rows}, opts), rstd = empty({rows}, opts);
  if (x.numel() > 0) {
    dispatch::run(x, dispatch::kFloatingAndHalf, kLayerNorm, [&]<typename T>(auto ctx) {
      layer_norm_forward(ctx, x.data<T>(), ptr_or_null<T>(weight), ptr_or_null<T>(bias),
                         y.data<T>(), mean.data<T>(), rstd.data<T>(), rows, cols, eps);
    });
  }
  if (autograd::needs_grad({&x_in, &weight_in, &bias_in})) {
    const bool want_x = x_in.requires_grad();
    const bool want_w = weight_in.defined() && weight_in.requires_grad();
    const bool want_b = bias_in.defined() && bias_in.requires_grad();
    autograd::record(
        kLayerNorm, {x_in, weight_in, bias_in}, {y},
        [rows, cols, want_x, want_w, want_b, wshape = normalized_shape,
         sx = autograd::SavedTensor(x, kLayerNorm), sw = autograd::SavedTensor(weight, kLayerNorm),
         smean = autograd::SavedTensor(mean, kLayerNorm),
         srstd = autograd::SavedTensor(rstd, kLayerNorm)](std::vector<Tensor>& g) {
          // x, g: [rows, cols]; weight: [cols]; mean, rstd: [rows]
          Tensor xs = sx.unpack(), w = unpack_optional(sw), mu = smean.unpack(),
                 rs = srstd.unpack();
          Tensor gy = g[0].contiguous();
          const TensorOptions o{.dtype = xs.dtype(), .device = xs.device()};
          Tensor gx = want_x ? empty(xs.shape(), o) : Tensor();
          Tensor gw = want_w ? empty(wshape, o) : Tensor();
          Tensor gb = want_b ? empty(wshape, o) : Tensor();
          if (xs.numel() == 0) {
            if (gw.defined()) gw.zero_();
            if (gb.defined()) gb.zero_();
          } else {
            dispatch::run(xs, dispatch::kFloatingAndHalf, kLayerNorm, [&]<typename T>(auto ctx) {
              layer_norm_backward(ctx, xs.data<T>(), gy.data<T>(), ptr_or_null<T>(w),
                                  mu.data<T>(), rs.data<T>(), ptr_or_null<T>(gx),
                                  ptr_or_null<T>(gw), ptr_or_null<T>(gb), rows, cols);
            });
          }
          return std::vector<Tensor>{gx, gw, gb};
        });
  }
  return y;
}

}  // namespace ember
