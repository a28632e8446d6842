// conv2d, with one backward node that computes the gradients of the input, the weight and
// the bias as needed; the kernels are kernels/cpu/conv.h (im2col + OpenBLAS) and their
// CUDA twins (cuDNN), which borrow their workspace from the memory pool.
#include <array>
#include <vector>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/dispatch.h"
#include "ember/core/memory/cuda_memory.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/core/ops/scratch.h"
#include "ember/kernels/conv_shape.h"
#include "ember/kernels/cpu/conv.h"
#include "ember/kernels/cuda/conv.cuh"

namespace ember {

namespace {

constexpr const char* kOp = "conv2d";

std::string pair_str(const std::array<int64_t, 2>& a) {
  return detail::str_cat("[", a[0], ", ", a[1], "]");
}

// Note [Odd "same" padding]
// "same" pads dilation * (k - 1) in total per spatial dim. The kernels pad symmetrically,
// so when the total is odd they get floor(total / 2) on both sides and the one extra
// zero row/column (bottom/right, as PyTorch puts it) is made explicit: the input is
// copied into a zero tensor one larger. Backward computes the gradient of that padded
// input and narrows it back to the input's size.
struct ConvSetup {
  kernels::ConvShape shape;          // of the (possibly padded) input
  int64_t extra_h = 0, extra_w = 0;  // explicit zero rows / columns at the bottom / right
  int64_t h = 0, w = 0;              // the input's own size
};

ConvSetup check_and_plan(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const Conv2dParams& p) {
  detail::check_floating(x, kOp);
  detail::check_defined(weight, kOp, "weight");
  detail::check_floating(weight, kOp);
  detail::check_same_device(x, weight, kOp);
  detail::check_same_dtype(x, weight, kOp);
  EMBER_CHECK_T(ShapeError, x.dim() == 4, kOp, ": input must be 4-D [N, C, H, W], got shape ",
                shape_str(x.shape()));
  EMBER_CHECK_T(ShapeError, weight.dim() == 4, kOp,
                ": weight must be 4-D [out_channels, in_channels / groups, kH, kW], got shape ",
                shape_str(weight.shape()));
  EMBER_CHECK_T(ValueError, p.stride[0] >= 1 && p.stride[1] >= 1, kOp,
                ": stride must be positive, got ", pair_str(p.stride));
  EMBER_CHECK_T(ValueError, p.dilation[0] >= 1 && p.dilation[1] >= 1, kOp,
                ": dilation must be positive, got ", pair_str(p.dilation));
  EMBER_CHECK_T(ValueError, p.padding[0] >= 0 && p.padding[1] >= 0, kOp,
                ": padding must be non-negative, got ", pair_str(p.padding));
  EMBER_CHECK_T(ValueError, p.groups >= 1, kOp, ": groups must be positive, got ", p.groups);

  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t o = weight.size(0), cg = weight.size(1), kh = weight.size(2), kw = weight.size(3);
  EMBER_CHECK_T(ShapeError, kh >= 1 && kw >= 1, kOp, ": weight ", shape_str(weight.shape()),
                " has an empty kernel");
  EMBER_CHECK_T(ShapeError, o % p.groups == 0, kOp, ": weight ", shape_str(weight.shape()),
                " has ", o, " output channels, which groups = ", p.groups, " does not divide");
  EMBER_CHECK_T(ShapeError, c == cg * p.groups, kOp, ": input ", shape_str(x.shape()), " has ",
                c, " channels, weight ", shape_str(weight.shape()), " expects ", cg * p.groups,
                " (groups = ", p.groups, ")");
  if (bias.defined()) {
    detail::check_same_device(x, bias, kOp);
    detail::check_same_dtype(x, bias, kOp);
    EMBER_CHECK_T(ShapeError, bias.dim() == 1 && bias.size(0) == o, kOp, ": bias ",
                  shape_str(bias.shape()), " must be [", o, "], one per output channel of weight ",
                  shape_str(weight.shape()));
  }

  ConvSetup cs;
  cs.h = h;
  cs.w = w;
  std::array<int64_t, 2> pad = p.padding;
  if (p.same) {
    EMBER_CHECK_T(ValueError, p.stride[0] == 1 && p.stride[1] == 1, kOp,
                  ": 'same' padding needs stride 1, got stride ", pair_str(p.stride));
    EMBER_CHECK_T(ValueError, p.padding[0] == 0 && p.padding[1] == 0, kOp,
                  ": 'same' computes the padding itself; padding must be [0, 0], got ",
                  pair_str(p.padding));
    // See Note [Odd "same" padding].
    const int64_t total_h = p.dilation[0] * (kh - 1), total_w = p.dilation[1] * (kw - 1);
    pad = {total_h / 2, total_w / 2};
    cs.extra_h = total_h % 2;
    cs.extra_w = total_w % 2;
  }
  const int64_t eff_h = p.dilation[0] * (kh - 1) + 1, eff_w = p.dilation[1] * (kw - 1) + 1;
  const int64_t padded_h = h + 2 * pad[0] + cs.extra_h, padded_w = w + 2 * pad[1] + cs.extra_w;
  EMBER_CHECK_T(ShapeError, eff_h <= padded_h && eff_w <= padded_w, kOp, ": kernel [", kh, ", ",
                kw, "] (dilation ", pair_str(p.dilation), ", effective size [", eff_h, ", ",
                eff_w, "]) is larger than the padded input [", padded_h, ", ", padded_w,
                "] (input ", shape_str(x.shape()), ", weight ", shape_str(weight.shape()),
                ", padding ", pair_str(pad), ")");

  kernels::ConvShape& s = cs.shape;
  s.n = n;
  s.c = c;
  s.h = h + cs.extra_h;
  s.w = w + cs.extra_w;
  s.o = o;
  s.kh = kh;
  s.kw = kw;
  s.pad_h = pad[0];
  s.pad_w = pad[1];
  s.stride_h = p.stride[0];
  s.stride_w = p.stride[1];
  s.dil_h = p.dilation[0];
  s.dil_w = p.dilation[1];
  s.groups = p.groups;
  s.out_h = kernels::conv_out_size(s.h, kh, s.pad_h, s.stride_h, s.dil_h);
  s.out_w = kernels::conv_out_size(s.w, kw, s.pad_w, s.stride_w, s.dil_w);
  return cs;
}

// Note [Channels-last convolutions]
// A channels-last input (Tensor::suggest_memory_format) gives a channels-last output, as
// in PyTorch. On a GPU cuDNN reads and writes NHWC itself (ConvShape::channels_last: NHWC
// descriptors for the input, the output and the filter, whose weight is laid out
// [O, kH, kW, C / groups]), the layout of the tensor-core engines; a leaf's .grad is
// row-major all the same (autograd keeps gradients row-major). The CPU kernels read NCHW,
// so there the input is copied to NCHW and the output back to channels-last. Weights are
// not converted for good: a GPU convolution reads the weight through an NHWC copy (as
// PyTorch's cuDNN convolution does), and its gradient comes back row-major like the
// weight, so optimizers keep updating dense row-major parameters.

// The layout the kernels read and write for `s`.
MemoryFormat kernel_format(const kernels::ConvShape& s) {
  return s.channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous;
}

// An uninitialized [n, c, h, w] tensor in the kernels' layout for `s`.
Tensor empty_for(const kernels::ConvShape& s, int64_t n, int64_t c, int64_t h, int64_t w,
                 DType dtype, Device device) {
  if (!s.channels_last) return detail::empty_on({n, c, h, w}, dtype, device);
  return detail::empty_on({n, h, w, c}, dtype, device).permute({0, 3, 1, 2});
}

// The input as the kernels read it: dense in their layout, with the explicit extra zero
// rows and columns of Note [Odd "same" padding]. `x` must not require grad (detached).
Tensor kernel_input(const Tensor& x, const ConvSetup& cs) {
  if (cs.extra_h == 0 && cs.extra_w == 0) return x.contiguous(kernel_format(cs.shape));
  Tensor xp = zeros({cs.shape.n, cs.shape.c, cs.shape.h, cs.shape.w},
                    {.dtype = x.dtype(), .device = x.device()});
  xp.narrow(2, 0, cs.h).narrow(3, 0, cs.w).copy_(x);
  return xp.contiguous(kernel_format(cs.shape));
}

// Bias broadcast over [N, O, H', W'] (or zeros): the output when the input is empty.
void fill_bias_or_zero(Tensor& y, const Tensor& b) {
  if (b.defined()) {
    y.copy_(b.view({1, b.size(0), 1, 1}));
  } else {
    y.zero_();
  }
}

// x [N, C, H, W], w [O, C / groups, kH, kW], b [O] or undefined -> y [N, O, H', W'].
// Note [Conv search workspace]
// In cuDNN's benchmark mode the first call of a shape and direction times the algorithms
// with a workspace of up to 1 GiB, asked of the scratch before the (far smaller) workspace
// of the algorithm chosen. Back in the pool's cache, that block would keep device memory
// the runs never need again. So a call whose scratch handed out two buffers (a search
// happened: later calls of the shape ask once) and whose first was the larger by more than
// kSearchSlack hands the cache back to the driver afterwards: once per shape and direction,
// beside a search that itself takes milliseconds and waits for the GPU.
constexpr size_t kSearchSlack = size_t{64} << 20;

class ConvScratch {
 public:
  explicit ConvScratch(Device device) : device_(device) {}
  ConvScratch(const ConvScratch&) = delete;
  ConvScratch& operator=(const ConvScratch&) = delete;
  ~ConvScratch() {
    held_ = Tensor();
    if (device_.is_cuda() && requests_ > 1 && first_bytes_ > last_bytes_ + kSearchSlack) {
      try {
        cuda::empty_cache();
      } catch (const Error&) {
        // Giving cached memory back is an economy; a failure leaves it cached.
      }
    }
  }

  kernels::Scratch fn() {
    return [this, pool = detail::pool_scratch(device_, held_)](size_t bytes) -> void* {
      if (++requests_ == 1) first_bytes_ = bytes;
      last_bytes_ = bytes;
      return pool(bytes);
    };
  }

 private:
  Device device_;
  Tensor held_;
  size_t requests_ = 0, first_bytes_ = 0, last_bytes_ = 0;
};

// All dense in the kernels' layout (b contiguous), none requiring grad.
Tensor forward(const Tensor& x, const Tensor& w, const Tensor& b, const kernels::ConvShape& s) {
  Tensor y = empty_for(s, s.n, s.o, s.out_h, s.out_w, x.dtype(), x.device());
  if (y.numel() == 0) return y;
  if (x.numel() == 0 || w.numel() == 0) {
    fill_bias_or_zero(y, b);
    return y;
  }
  ConvScratch scratch(x.device());  // the kernel's workspace (Note [Conv search workspace])
  dispatch::run(x, dispatch::kFloatingAndHalf, kOp, [&]<typename T>(auto ctx) {
    conv2d_forward(ctx, s, x.data<T>(), w.data<T>(), b.defined() ? b.data<T>() : nullptr,
                   y.data<T>(), scratch.fn());
  });
  return y;
}

// dx [N, C, H, W] from w and dy [N, O, H', W'] (dense in the kernels' layout).
Tensor backward_data(const Tensor& w, const Tensor& dy, const kernels::ConvShape& s) {
  Tensor dx = empty_for(s, s.n, s.c, s.h, s.w, dy.dtype(), dy.device());
  if (dx.numel() == 0) return dx;
  if (dy.numel() == 0 || w.numel() == 0) return dx.zero_();
  ConvScratch scratch(dy.device());  // Note [Conv search workspace]
  dispatch::run(dy, dispatch::kFloatingAndHalf, kOp, [&]<typename T>(auto ctx) {
    conv2d_backward_data(ctx, s, w.data<T>(), dy.data<T>(), dx.data<T>(), scratch.fn());
  });
  return dx;
}

// dw [O, C / groups, kH, kW] from x and dy (contiguous), summed over the batch.
Tensor backward_filter(const Tensor& x, const Tensor& dy, const kernels::ConvShape& s) {
  Tensor dw = empty_for(s, s.o, s.c / s.groups, s.kh, s.kw, dy.dtype(), dy.device());
  if (dw.numel() == 0) return dw;
  if (dy.numel() == 0 || x.numel() == 0) return dw.zero_();
  ConvScratch scratch(dy.device());  // Note [Conv search workspace]
  dispatch::run(dy, dispatch::kFloatingAndHalf, kOp, [&]<typename T>(auto ctx) {
    conv2d_backward_filter(ctx, s, x.data<T>(), dy.data<T>(), dw.data<T>(), scratch.fn());
  });
  return dw;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Conv2dParams params) {
  if (auto c = autocast::to_lower({x, weight, bias})) {
    return conv2d((*c)[0], (*c)[1], (*c)[2], params);
  }
  ConvSetup cs = check_and_plan(x, weight, bias, params);
  // Note [Channels-last convolutions]
  const bool channels_last = x.suggest_memory_format() == MemoryFormat::ChannelsLast;
  cs.shape.channels_last = channels_last && x.is_cuda();
  const MemoryFormat format = kernel_format(cs.shape);
  Tensor y;
  {
    NoGradGuard no_grad;
    y = forward(kernel_input(x.detach(), cs), weight.detach().contiguous(format),
                bias.defined() ? bias.detach().contiguous() : Tensor(), cs.shape);
    if (channels_last) y = y.contiguous(MemoryFormat::ChannelsLast);  // CPU: NCHW back to NHWC
  }
  if (autograd::needs_grad({&x, &weight, &bias})) {
    const bool gx = x.requires_grad(), gw = weight.requires_grad(),
               gb = bias.defined() && bias.requires_grad();
    // x is saved as given (not padded) so its version is checked; the padding of
    // Note [Odd "same" padding] is redone in backward.
    autograd::record(kOp, {x, weight, bias}, {y},
                     [gx, gw, gb, cs, format, sx = autograd::SavedTensor(gw ? x : Tensor(), kOp),
                      sw = autograd::SavedTensor(gx ? weight : Tensor(), kOp)](
                         std::vector<Tensor>& g) {
                       // x: [N, C, H, W], w: [O, C / groups, kH, kW], g: [N, O, H', W']
                       Tensor gy = g[0].contiguous(format);
                       Tensor dx, dw, db;
                       if (gx) {
                         dx = backward_data(sw.unpack().contiguous(format), gy, cs.shape);
                         if (cs.extra_h != 0 || cs.extra_w != 0) {
                           dx = dx.narrow(2, 0, cs.h).narrow(3, 0, cs.w).contiguous(format);
                         }
                       }
                       if (gw) {
                         // Weights stay row-major (an NCHW copy of cuDNN's NHWC gradient).
                         dw = backward_filter(kernel_input(sx.unpack(), cs), gy, cs.shape)
                                  .contiguous();
                       }
                       if (gb) db = sum(gy, {0, 2, 3});  // [O]
                       return std::vector<Tensor>{dx, dw, db};
                     });
  }
  return y;
}

}  // namespace ember
