// Pooling ops: max_pool2d, avg_pool2d and adaptive_avg_pool2d, each with one backward
// node; the kernels are kernels/cpu/pool.h and their CUDA twins (cuDNN where it applies).

#include <array>

#include "ember/core/autograd.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/kernels/cpu/pool.h"
#include "ember/kernels/cuda/pool.cuh"

namespace ember {

using kernels::Pool2dGeometry;
using kernels::PoolMode;

namespace {

std::string pair_str(int64_t a, int64_t b) { return detail::str_cat("[", a, ", ", b, "]"); }
std::string pair_str(const std::array<int64_t, 2>& a) { return pair_str(a[0], a[1]); }

void check_nchw(const Tensor& x, const char* op) {
  detail::check_floating(x, op);
  EMBER_CHECK_T(ShapeError, x.dim() == 4, op, ": input must be [N, C, H, W], got ",
                shape_str(x.shape()));
  EMBER_CHECK_T(ShapeError, x.size(1) > 0 && x.size(2) > 0 && x.size(3) > 0, op,
                ": input ", shape_str(x.shape()), " must have non-zero C, H and W");
}

Pool2dGeometry pool_geometry(const Tensor& x, const Pool2dParams& p, PoolMode mode,
                             const char* op) {
  check_nchw(x, op);
  const auto& k = p.kernel;
  EMBER_CHECK_T(ValueError, k[0] >= 1 && k[1] >= 1, op, ": kernel must be positive, got ",
                pair_str(k));
  EMBER_CHECK_T(ValueError, p.stride[0] >= 0 && p.stride[1] >= 0, op,
                ": stride must be positive (or 0 for the kernel size), got ", pair_str(p.stride));
  EMBER_CHECK_T(ValueError, p.padding[0] >= 0 && p.padding[1] >= 0, op,
                ": padding must be non-negative, got ", pair_str(p.padding));
  // As PyTorch: otherwise a window could hold nothing but padding.
  EMBER_CHECK_T(ValueError, p.padding[0] <= k[0] / 2 && p.padding[1] <= k[1] / 2, op, ": padding ",
                pair_str(p.padding), " must be at most half the kernel ", pair_str(k));
  Pool2dGeometry g;
  g.n = x.size(0);
  g.c = x.size(1);
  g.h = x.size(2);
  g.w = x.size(3);
  g.kernel_h = k[0];
  g.kernel_w = k[1];
  g.stride_h = p.stride[0] == 0 ? k[0] : p.stride[0];
  g.stride_w = p.stride[1] == 0 ? k[1] : p.stride[1];
  g.pad_h = p.padding[0];
  g.pad_w = p.padding[1];
  g.count_include_pad = mode == PoolMode::Avg && p.count_include_pad;
  const int64_t padded_h = g.h + 2 * g.pad_h, padded_w = g.w + 2 * g.pad_w;
  EMBER_CHECK_T(ShapeError, padded_h >= g.kernel_h && padded_w >= g.kernel_w, op, ": kernel ",
                pair_str(k), " is larger than the padded input ", pair_str(padded_h, padded_w),
                " (input ", shape_str(x.shape()), ", padding ", pair_str(p.padding), ")");
  g.out_h = kernels::pool_output_size(g.h, g.kernel_h, g.stride_h, g.pad_h, p.ceil_mode);
  g.out_w = kernels::pool_output_size(g.w, g.kernel_w, g.stride_w, g.pad_w, p.ceil_mode);
  return g;
}

// The pooled output `y` (NCHW) in the memory format of the input `x`: the kernels read
// and write NCHW, and a channels-last input is answered channels-last (Note
// [Channels-last convolutions] in conv.cpp).
Tensor in_format_of(const Tensor& x, const Tensor& y) {
  if (x.suggest_memory_format() != MemoryFormat::ChannelsLast) return y;
  NoGradGuard no_grad;
  return y.contiguous(MemoryFormat::ChannelsLast);
}

// y from x (contiguous), on x's device.
Tensor pool_forward(const Tensor& x, const Pool2dGeometry& g, PoolMode mode, const char* op) {
  Tensor y = detail::empty_on({g.n, g.c, g.out_h, g.out_w}, x.dtype(), x.device());
  if (y.numel() == 0) return y;
  dispatch::run(x, dispatch::kFloatingAndHalf, op, [&]<typename T>(auto ctx) {
    pool2d_forward(ctx, g, mode, x.data<T>(), y.data<T>());
  });
  return y;
}

// grad_x [N, C, H, W] from grad_y [N, C, H', W'] (x, y as in the forward).
Tensor pool_backward(const Tensor& x, const Tensor& y, const Tensor& grad_y,
                     const Pool2dGeometry& g, PoolMode mode, const char* op) {
  Tensor gx = detail::empty_on({g.n, g.c, g.h, g.w}, grad_y.dtype(), grad_y.device());
  if (gx.numel() == 0) return gx;
  dispatch::run(gx, dispatch::kFloatingAndHalf, op, [&]<typename T>(auto ctx) {
    pool2d_backward(ctx, g, mode, x.data<T>(), y.data<T>(), grad_y.data<T>(), gx.data<T>());
  });
  return gx;
}

Tensor pool2d(const Tensor& x_in, const Pool2dParams& params, PoolMode mode, const char* op) {
  const Pool2dGeometry g = pool_geometry(x_in, params, mode, op);
  Tensor x = x_in.contiguous();
  const Tensor y = pool_forward(x, g, mode, op);
  const Tensor out = in_format_of(x_in, y);
  if (autograd::needs_grad({&x_in})) {
    // x and y are saved for both modes: cuDNN's backward reads them for average pooling too.
    autograd::record(op, {x_in}, {out},
                     [g, mode, op, sx = autograd::SavedTensor(x, op),
                      sy = autograd::SavedTensor(y, op)](std::vector<Tensor>& grads) {
                       // x: [N, C, H, W], y, g: [N, C, H', W']
                       return std::vector<Tensor>{pool_backward(
                           sx.unpack(), sy.unpack(), grads[0].contiguous(), g, mode, op)};
                     });
  }
  return out;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, Pool2dParams params) {
  return pool2d(x, params, PoolMode::Max, "max_pool2d");
}

Tensor avg_pool2d(const Tensor& x, Pool2dParams params) {
  return pool2d(x, params, PoolMode::Avg, "avg_pool2d");
}

Tensor adaptive_avg_pool2d(const Tensor& x_in, std::array<int64_t, 2> output_size) {
  constexpr const char* kOp = "adaptive_avg_pool2d";
  check_nchw(x_in, kOp);
  EMBER_CHECK_T(ValueError, output_size[0] >= 1 && output_size[1] >= 1, kOp,
                ": output_size must be positive, got ", pair_str(output_size));
  const int64_t n = x_in.size(0), c = x_in.size(1), h = x_in.size(2), w = x_in.size(3);
  const int64_t oh = output_size[0], ow = output_size[1];
  Tensor x = x_in.contiguous();
  Tensor y = detail::empty_on({n, c, oh, ow}, x.dtype(), x.device());
  if (y.numel() > 0) {
    dispatch::run(x, dispatch::kFloatingAndHalf, kOp, [&]<typename T>(auto ctx) {
      adaptive_avg_pool2d_forward(ctx, x.data<T>(), y.data<T>(), n * c, h, w, oh, ow);
    });
  }
  y = in_format_of(x_in, y);
  if (autograd::needs_grad({&x_in})) {
    autograd::record(kOp, {x_in}, {y}, [n, c, h, w, oh, ow](std::vector<Tensor>& grads) {
      // g: [N, C, oh, ow] -> grad_x: [N, C, H, W]
      Tensor gy = grads[0].contiguous();
      Tensor gx = detail::empty_on({n, c, h, w}, gy.dtype(), gy.device());
      if (gx.numel() == 0) return std::vector<Tensor>{gx};
      dispatch::run(gy, dispatch::kFloatingAndHalf, kOp, [&]<typename T>(auto ctx) {
        adaptive_avg_pool2d_backward(ctx, gy.data<T>(), gx.data<T>(), n * c, h, w, oh, ow);
      });
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

}  // namespace ember
