// Activations: relu, leaky_relu, sigmoid, tanh, gelu (through the shared unary kernels)
// and softmax / log_softmax along a dimension.
#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/kernels/cpu/reduce.h"
#include "ember/kernels/cuda/reduce.cuh"

namespace ember {

using kernels::UnaryOp;

Tensor relu(const Tensor& x) { return detail::unary(x, UnaryOp::Relu, {}, "relu"); }
Tensor leaky_relu(const Tensor& x, double negative_slope) {
  return detail::unary(x, UnaryOp::LeakyRelu, {negative_slope, 0.0}, "leaky_relu");
}
Tensor sigmoid(const Tensor& x) { return detail::unary(x, UnaryOp::Sigmoid, {}, "sigmoid"); }
Tensor tanh(const Tensor& x) { return detail::unary(x, UnaryOp::Tanh, {}, "tanh"); }
Tensor gelu(const Tensor& x, std::string_view approximate) {
  EMBER_CHECK_T(ValueError, approximate == "none" || approximate == "tanh",
                "gelu: approximate must be \"none\" or \"tanh\", got \"", approximate, "\"");
  return detail::unary(x, approximate == "tanh" ? UnaryOp::GeluTanh : UnaryOp::Gelu, {}, "gelu");
}

namespace {

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  if (auto c = autocast::to_float32({x})) return softmax_impl((*c)[0], dim, log);
  const char* name = log ? "log_softmax" : "softmax";
  detail::check_floating(x, name);
  const int64_t d = detail::wrap_dim(dim, x.dim(), name);
  Tensor xc = x.contiguous();
  Tensor y = detail::empty_like(xc);
  const auto l = detail::reduce_layout(xc.shape(), x.dim() == 0 ? 0 : d);
  dispatch::run(xc, dispatch::kFloatingAndHalf, name, [&]<typename T>(auto ctx) {
    softmax_forward(ctx, xc.data<T>(), y.data<T>(), l.outer, l.n, l.inner, log);
  });
  if (autograd::needs_grad({&x})) {
    autograd::record(name, {x}, {y},
                     [l, log, name, sy = autograd::SavedTensor(y, name)](
                         std::vector<Tensor>& g) {
                       // y, g: x's shape; reduction along the softmax dim
                       Tensor ys = sy.unpack();
                       Tensor gy = g[0].contiguous();
                       Tensor gx = detail::empty_like(ys);
                       constexpr auto kTypes = dispatch::kFloatingAndHalf;
                       dispatch::run(ys, kTypes, name, [&]<typename T>(auto ctx) {
                         softmax_backward(ctx, ys.data<T>(), gy.data<T>(), gx.data<T>(), l.outer,
                                          l.n, l.inner, log);
                       });
                       return std::vector<Tensor>{gx};
                     });
  }
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

}  // namespace ember
