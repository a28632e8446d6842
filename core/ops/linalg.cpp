// matmul (1-D, 2-D and batched 3-D) and linear, through the GEMM kernels
// (kernels/cpu/gemm.h, OpenBLAS, and its CUDA twin, cuBLAS / cuBLASLt). Transposed views
// are passed to the GEMM as transpose flags, not copied. linear fuses its bias, activation
// and bias gradient into the GEMMs (Note [Fused linear]).
#include <tuple>
#include <utility>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/kernels/cpu/elementwise.h"
#include "ember/kernels/cpu/gemm.h"
#include "ember/kernels/cuda/elementwise.cuh"
#include "ember/kernels/cuda/gemm.cuh"

namespace ember {

namespace {

// A rank-2 or rank-3 operand as the GEMM sees it: row-major, possibly transposed, with
// its leading dimension and batch stride (0 when the one matrix is shared by the batch).
struct GemmOperand {
  Tensor t;  // what the pointer refers to (kept alive)
  bool trans = false;
  int64_t ld = 0;
  int64_t batch_stride = 0;
};

GemmOperand gemm_operand(const Tensor& x) {
  const int64_t r = x.dim();
  const int64_t rows = x.size(r - 2), cols = x.size(r - 1);
  auto fits = [&](const Tensor& t, bool* trans, int64_t* ld) {
    const int64_t s0 = t.stride(r - 2), s1 = t.stride(r - 1);
    if ((s1 == 1 || cols <= 1) && s0 >= std::max<int64_t>(cols, 1)) {
      *trans = false;
      *ld = std::max<int64_t>(s0, std::max<int64_t>(cols, 1));
      return true;
    }
    if ((s0 == 1 || rows <= 1) && s1 >= std::max<int64_t>(rows, 1)) {
      *trans = true;
      *ld = std::max<int64_t>(s1, std::max<int64_t>(rows, 1));
      return true;
    }
    return false;
  };
  GemmOperand op;
  op.t = x;
  if (!fits(x, &op.trans, &op.ld) || (r == 3 && x.size(0) > 1 && x.stride(0) == 0)) {
    op.t = x.contiguous();
    fits(op.t, &op.trans, &op.ld);
  }
  op.batch_stride = r == 3 ? op.t.stride(0) : 0;
  return op;
}

// c [batch, m, n] (contiguous) = a @ b (+ beta * c). `op` names the caller in errors.
void run_gemm(const GemmOperand& a, const GemmOperand& b, Tensor& c, int64_t m, int64_t n,
              int64_t k, int64_t batch, double beta, const char* op) {
  const int64_t sc = batch > 1 ? m * n : 0;
  dispatch::run(c, dispatch::kFloatingAndHalf, op, [&]<typename T>(auto ctx) {
    gemm(ctx, a.trans, b.trans, m, n, k, T(1), a.t.data<T>(), a.ld, a.batch_stride,
         b.t.data<T>(), b.ld, b.batch_stride, static_cast<T>(beta), c.data<T>(), n, sc, batch);
  });
}

void check_matmul_inputs(const Tensor& a, const Tensor& b, const char* op) {
  detail::check_floating(a, op);
  detail::check_floating(b, op);
  detail::check_same_device(a, b, op);
  detail::check_same_dtype(a, b, op);
}

// 2-D/3-D forward without recording.
Tensor matmul_forward(const Tensor& a, const Tensor& b, const char* op = "matmul") {
  const int64_t ra = a.dim(), rb = b.dim();
  const int64_t m = a.size(ra - 2), k = a.size(ra - 1), n = b.size(rb - 1);
  EMBER_CHECK_T(ShapeError, b.size(rb - 2) == k, "matmul: shapes ", shape_str(a.shape()), " and ",
                shape_str(b.shape()), " cannot be multiplied (", k, " != ", b.size(rb - 2), ")");
  int64_t batch = 1;
  if (ra == 3 && rb == 3) {
    EMBER_CHECK_T(ShapeError, a.size(0) == b.size(0), "matmul: batch sizes differ: ",
                  shape_str(a.shape()), " and ", shape_str(b.shape()));
    batch = a.size(0);
  } else if (ra == 3) {
    batch = a.size(0);
  } else if (rb == 3) {
    batch = b.size(0);
  }
  Shape out_shape = (ra == 3 || rb == 3) ? Shape{batch, m, n} : Shape{m, n};
  Tensor c = detail::empty_on(out_shape, a.dtype(), a.device());
  if (c.numel() == 0) return c;
  run_gemm(gemm_operand(a), gemm_operand(b), c, m, n, k, batch, 0.0, op);
  return c;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (auto c = autocast::to_lower({a, b})) return matmul((*c)[0], (*c)[1]);
  check_matmul_inputs(a, b, "matmul");
  const int64_t ra = a.dim(), rb = b.dim();
  EMBER_CHECK_T(ShapeError, ra >= 1 && ra <= 3 && rb >= 1 && rb <= 3, "matmul: supports tensors of "
                "rank 1 to 3, got shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()));
  // Vectors become matrices and the extra dimension is dropped afterwards, like NumPy.
  // Checked here so that the message names the caller's shapes, not the unsqueezed ones.
  if (ra == 1 || rb == 1) {
    const int64_t k_a = a.size(-1), k_b = b.size(rb == 1 ? 0 : -2);
    EMBER_CHECK_T(ShapeError, k_a == k_b, "matmul: shapes ", shape_str(a.shape()), " and ",
                  shape_str(b.shape()), " cannot be multiplied (", k_a, " != ", k_b, ")");
    Tensor a2 = ra == 1 ? a.unsqueeze(0) : a;
    Tensor b2 = rb == 1 ? b.unsqueeze(1) : b;
    Tensor y = matmul(a2, b2);
    if (rb == 1) y = y.squeeze(-1);
    if (ra == 1) y = y.squeeze(ra == 1 && rb == 1 ? 0 : -2);
    return y;
  }
  Tensor y = matmul_forward(a, b);
  if (autograd::needs_grad({&a, &b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    autograd::record("mm", {a, b}, {y},
                     [ga, gb, sa = autograd::SavedTensor(gb ? a : Tensor(), "matmul"),
                      sb = autograd::SavedTensor(ga ? b : Tensor(), "matmul"), ra, rb](
                         std::vector<Tensor>& g) {
                       // a: [(B,) M, K], b: [(B,) K, N], g: [(B,) M, N]
                       Tensor da, db;
                       if (ga) {
                         Tensor bb = sb.unpack();
                         da = matmul_forward(g[0], bb.transpose(-1, -2));
                         if (ra == 2 && rb == 3) da = sum(da, {0});
                       }
                       if (gb) {
                         Tensor aa = sa.unpack();
                         if (ra == 3 && rb == 2) {
                           // Shared b: sum over the batch as one GEMM on flattened rows
                           // (row counts spelled out: -1 cannot be inferred when K or N is 0).
                           const int64_t rows = aa.size(0) * aa.size(1);
                           Tensor a2 = aa.reshape({rows, aa.size(2)});
                           db = matmul_forward(a2.t(), g[0].reshape({rows, g[0].size(2)}));
                         } else {
                           db = matmul_forward(aa.transpose(-1, -2), g[0]);
                           if (rb == 2 && ra == 3) db = sum(db, {0});
                         }
                       }
                       return std::vector<Tensor>{da, db};
                     });
  }
  return y;
}

// Note [Fused linear]
// A linear layer is a GEMM, a bias and often an activation; its backward is two GEMMs and a
// column sum. Composed, the bias, the activation and the sum each read and write the whole
// [N, out] matrix once more. cuBLASLt fuses them into the GEMMs (its epilogues), as
// PyTorch's addmm with a bias and its _addmm_activation do:
//  - forward: y = act(x W^T + b) in one call (BIAS, RELU_BIAS, GELU_BIAS). Training with
//    the tanh GELU also needs z = x W^T + b: GELU_AUX_BIAS writes it beside y. ReLU's
//    backward needs no z: y > 0 exactly where z > 0, so y is what is saved.
//  - backward: the activation's derivative (the elementwise kernel), dx = g W, and
//    dW = g^T x with db = the column sums of g in the same call (BGRADB).
// The CPU twins (kernels/cpu/gemm.h) compute the same in float with one rounding per
// output, and the tests hold both to the composed ops. Where cuBLASLt has no fused kernel
// (a case its heuristic refuses, an unaligned bias view, k == 0) the CUDA twin says so
// and the op composes: bias broadcast, GEMM accumulating onto it, activation kernel. The
// exact GELU has no cuBLASLt epilogue: linear(..., kGelu) is gelu() of the fused bias.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return linear(x, weight, bias, LinearActivation::kNone);
}

namespace {

// The composed forward (Note [Fused linear]): z = bias broadcast + x W^T, then y = act(z).
// Returns y; `pre` receives z when asked for (an activation and a recorded backward).
Tensor linear_composed(const GemmOperand& xa, const GemmOperand& w_t, const Tensor& bias,
                       kernels::GemmActivation act, int64_t n_rows, int64_t out_features,
                       int64_t in_features, bool want_pre, Tensor* pre) {
  // clone(), not contiguous(): for one row the expanded bias is already contiguous, and
  // contiguous() would hand back the bias itself for the GEMM to accumulate into.
  Tensor z = bias.defined()
                 ? bias.detach().unsqueeze(0).expand({n_rows, out_features}).clone()
                 : detail::empty_on({n_rows, out_features}, xa.t.dtype(), xa.t.device());
  run_gemm(xa, w_t, z, n_rows, out_features, in_features, 1, bias.defined() ? 1.0 : 0.0,
           "linear");
  if (act == kernels::GemmActivation::kNone) return z;
  // In place unless z must be kept.
  Tensor y = want_pre ? detail::empty_like(z) : z;
  const kernels::UnaryOp op = kernels::unary_op_of(act);
  dispatch::run(z, dispatch::kFloatingAndHalf, "linear", [&]<typename T>(auto ctx) {
    unary_forward(ctx, op, z.data<T>(), y.data<T>(), z.numel(), {});
  });
  if (want_pre) *pre = z;
  return y;
}

// dW = g^T x and db = the column sums of g (g [N, out], x [N, in]), in one GEMM where the
// backend fuses them.
std::pair<Tensor, Tensor> linear_weight_bias_grad(const Tensor& g2, const Tensor& x2) {
  const int64_t n_rows = g2.size(0), out_features = g2.size(1), in_features = x2.size(1);
  Tensor dw = detail::empty_on({out_features, in_features}, g2.dtype(), g2.device());
  Tensor db = detail::empty_on({out_features}, g2.dtype(), g2.device());
  const GemmOperand ga = gemm_operand(g2.t());
  const GemmOperand xb = gemm_operand(x2);
  bool fused = false;
  dispatch::run(dw, dispatch::kFloatingAndHalf, "linear", [&]<typename T>(auto ctx) {
    fused = gemm_bias_grad(ctx, ga.trans, xb.trans, out_features, in_features, n_rows,
                           ga.t.data<T>(), ga.ld, xb.t.data<T>(), xb.ld, dw.data<T>(),
                           in_features, db.data<T>());
  });
  if (fused) return {dw, db};
  return {matmul_forward(g2.t(), x2), sum(g2, {0})};
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
              LinearActivation activation) {
  if (auto c = autocast::to_lower({x, weight, bias})) {
    return linear((*c)[0], (*c)[1], (*c)[2], activation);
  }
  check_matmul_inputs(x, weight, "linear");
  EMBER_CHECK_T(ShapeError, weight.dim() == 2, "linear: weight must be [out_features, "
                "in_features], got ", shape_str(weight.shape()));
  EMBER_CHECK_T(ShapeError, x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ",
                shape_str(x.shape()), " has ", x.dim() ? x.size(-1) : 0,
                " features in its last dimension, weight ", shape_str(weight.shape()),
                " expects ", weight.size(1));
  const int64_t out_features = weight.size(0), in_features = weight.size(1);
  if (bias.defined()) {
    detail::check_same_device(x, bias, "linear");
    detail::check_same_dtype(x, bias, "linear");
    EMBER_CHECK_T(ShapeError, bias.dim() == 1 && bias.size(0) == out_features, "linear: bias ",
                  shape_str(bias.shape()), " must be [", out_features, "]");
  }
  EMBER_CHECK_T(ValueError,
                activation >= LinearActivation::kNone && activation <= LinearActivation::kGeluTanh,
                "linear: unknown activation code ", static_cast<int>(activation));
  if (activation == LinearActivation::kGelu) return gelu(linear(x, weight, bias), "none");
  const kernels::GemmActivation act =
      activation == LinearActivation::kRelu       ? kernels::GemmActivation::kRelu
      : activation == LinearActivation::kGeluTanh ? kernels::GemmActivation::kGeluTanh
                                                  : kernels::GemmActivation::kNone;
  // x: [*, in] -> [N, in]; y = act(x w^T + b): [N, out]
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_features);
  // The row count is spelled out: -1 cannot be inferred when in_features is 0.
  int64_t n_rows = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) n_rows *= x.size(d);
  Tensor x2 = x.dim() == 2 ? x : x.reshape({n_rows, x.size(-1)});
  const bool record = autograd::needs_grad({&x, &weight, &bias});
  // The GELU's backward reads its input z (ReLU's reads y: Note [Fused linear]).
  const bool want_pre = record && act == kernels::GemmActivation::kGeluTanh;
  Tensor y, pre;
  {
    NoGradGuard no_grad;
    y = detail::empty_on({n_rows, out_features}, x.dtype(), x.device());
    if (y.numel() > 0) {
      const GemmOperand xa = gemm_operand(x2.detach());
      GemmOperand w_t = gemm_operand(weight.detach());
      w_t.trans = !w_t.trans;  // weight^T
      bool fused = false;
      if (bias.defined()) {
        const Tensor b = bias.detach().contiguous();
        if (want_pre) pre = detail::empty_like(y);
        dispatch::run(y, dispatch::kFloatingAndHalf, "linear", [&]<typename T>(auto ctx) {
          fused = gemm_bias_act(ctx, xa.trans, w_t.trans, n_rows, out_features, in_features,
                                xa.t.data<T>(), xa.ld, w_t.t.data<T>(), w_t.ld, b.data<T>(),
                                act, y.data<T>(), out_features,
                                want_pre ? pre.data<T>() : nullptr);
        });
      }
      if (!fused) {
        y = linear_composed(xa, w_t, bias, act, n_rows, out_features, in_features, want_pre,
                            &pre);
      }
    } else if (want_pre) {
      pre = y;
    }
  }
  Tensor y2 = y.detach();
  y = y2.reshape(out_shape);
  if (record) {
    const bool gx = x.requires_grad(), gw = weight.requires_grad(),
               gb = bias.defined() && bias.requires_grad();
    const bool relu = act == kernels::GemmActivation::kRelu;
    autograd::record(
        "linear", {x, weight, bias}, {y},
        [gx, gw, gb, act, sx = autograd::SavedTensor(gw ? x2 : Tensor(), "linear"),
         sw = autograd::SavedTensor(gx ? weight : Tensor(), "linear"),
         // The activation's input (GELU) or output (ReLU) for its derivative.
         sa = autograd::SavedTensor(relu ? y2 : pre, "linear"), x_shape = x.shape(), n_rows,
         out_features](std::vector<Tensor>& g) {
          Tensor g2 = g[0].reshape({n_rows, out_features});  // [N, out]
          if (act != kernels::GemmActivation::kNone) {
            // dz = dy * act'(z): for ReLU z's sign is y's, and y stands in for z.
            const Tensor za = sa.unpack();
            const Tensor gy = g2.contiguous();
            Tensor gz = detail::empty_like(za);
            const kernels::UnaryOp op = kernels::unary_op_of(act);
            dispatch::run(za, dispatch::kFloatingAndHalf, "linear", [&]<typename T>(auto ctx) {
              unary_backward(ctx, op, za.data<T>(), za.data<T>(), gy.data<T>(), gz.data<T>(),
                             za.numel(), {});
            });
            g2 = gz;
          }
          Tensor dx, dw, db;
          if (gx) dx = matmul_forward(g2, sw.unpack()).reshape(x_shape);  // [N, in]
          if (gw && gb) {
            std::tie(dw, db) = linear_weight_bias_grad(g2, sx.unpack());   // [out, in], [out]
          } else if (gw) {
            dw = matmul_forward(g2.t(), sx.unpack());
          } else if (gb) {
            db = sum(g2, {0});
          }
          return std::vector<Tensor>{dx, dw, db};
        });
  }
  return y;
}

}  // namespace ember
