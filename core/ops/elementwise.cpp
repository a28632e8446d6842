// Elementwise ops: broadcasting arithmetic (add, sub, mul, div, maximum, minimum),
// unary math (neg, exp, log, sqrt, abs, pow, clamp, scalar add/mul), comparisons.
#include <cmath>
#include <limits>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/kernels/cpu/elementwise.h"
#include "ember/kernels/cuda/elementwise.cuh"

namespace ember {

using kernels::BinaryOp;
using kernels::CompareOp;
using kernels::UnaryOp;
using kernels::UnaryParams;

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    const int64_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
    const int64_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
    EMBER_CHECK_T(ShapeError, da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a),
                  " and ", shape_str(b), " cannot be broadcast together (dimension ", i,
                  ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  // sum_to is public: a `shape` that does not broadcast to x's is the caller's error.
  bool reducible = lead >= 0;
  for (int64_t d = 0; reducible && d < static_cast<int64_t>(shape.size()); ++d) {
    reducible = shape[d] == x.size(lead + d) || shape[d] == 1;
  }
  EMBER_CHECK_T(ShapeError, reducible, "sum_to: cannot sum ", shape_str(x.shape()), " down to ",
                shape_str(shape), " (that shape does not broadcast to the input's)");
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead || (shape[d - lead] == 1 && x.size(d) != 1)) dims.push_back(d);
  }
  Tensor s = dims.empty() ? x : sum(x, dims, /*keepdim=*/true);
  return s.reshape(shape);
}

// --- unary ----------------------------------------------------------------------------

namespace detail {

// Runs a UnaryOp forward and records its backward (which uses both x and y).
Tensor unary(const Tensor& x, UnaryOp op, UnaryParams p, const char* name) {
  check_floating(x, name);
  // In memory order: a channels-last tensor stays channels-last.
  Tensor xc = dense(x);
  Tensor y = empty_dense_like(xc);
  const int64_t n = xc.numel();
  dispatch::run(xc, dispatch::kFloatingAndHalf, name, [&]<typename T>(auto ctx) {
    unary_forward(ctx, op, xc.data<T>(), y.data<T>(), n, p);
  });
  if (autograd::needs_grad({&x})) {
    autograd::record(name, {x}, {y},
                     [op, p, name, sx = autograd::SavedTensor(xc, name),
                      sy = autograd::SavedTensor(y, name)](std::vector<Tensor>& g) {
                       // x, y, g: same shape
                       Tensor xs = sx.unpack(), ys = sy.unpack();
                       Tensor gy = g[0].contiguous(xs.suggest_memory_format());
                       Tensor gx = empty_dense_like(xs);
                       const int64_t m = xs.numel();
                       constexpr auto kTypes = dispatch::kFloatingAndHalf;
                       dispatch::run(xs, kTypes, name, [&]<typename T>(auto ctx) {
                         unary_backward(ctx, op, xs.data<T>(), ys.data<T>(), gy.data<T>(),
                                        gx.data<T>(), m, p);
                       });
                       return std::vector<Tensor>{gx};
                     });
  }
  return y;
}

}  // namespace detail

Tensor neg(const Tensor& x) {
  detail::check_defined(x, "neg");
  EMBER_CHECK_T(DTypeError, x.dtype() != kBool, "neg: negating a bool tensor is not supported (",
                detail::describe(x), "); eq(x, zeros_like(x)) is its logical not");
  if (!is_floating(x.dtype())) return sub(zeros({}, {.dtype = x.dtype(), .device = x.device()}), x);
  return detail::unary(x, UnaryOp::Neg, {}, "neg");
}
Tensor exp(const Tensor& x) {
  if (auto c = autocast::to_float32({x})) return exp((*c)[0]);
  return detail::unary(x, UnaryOp::Exp, {}, "exp");
}
Tensor log(const Tensor& x) {
  if (auto c = autocast::to_float32({x})) return log((*c)[0]);
  return detail::unary(x, UnaryOp::Log, {}, "log");
}
Tensor sqrt(const Tensor& x) { return detail::unary(x, UnaryOp::Sqrt, {}, "sqrt"); }
Tensor abs(const Tensor& x) { return detail::unary(x, UnaryOp::Abs, {}, "abs"); }
Tensor pow(const Tensor& x, double exponent) {
  if (auto c = autocast::to_float32({x})) return pow((*c)[0], exponent);
  return detail::unary(x, UnaryOp::Pow, {exponent, 0.0}, "pow");
}

Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  const double lo = min.value_or(-std::numeric_limits<double>::infinity());
  const double hi = max.value_or(std::numeric_limits<double>::infinity());
  EMBER_CHECK_T(ValueError, !(lo > hi), "clamp: min ", lo, " is greater than max ", hi);
  return detail::unary(x, UnaryOp::Clamp, {lo, hi}, "clamp");
}

namespace {

// An integer tensor meets a scalar as a rank-0 tensor of its own dtype. ember does no type
// promotion, so a scalar with a fraction (int * 2.5) is refused instead of truncated.
Tensor integer_scalar(const Tensor& a, double b, const char* op) {
  EMBER_CHECK_T(DTypeError, std::isfinite(b) && b == std::trunc(b), op, ": scalar ", b,
                " is not a whole number and ", detail::describe(a),
                " is an integer tensor (no type promotion); convert it with .to(kFloat32) first");
  return full({}, b, {.dtype = a.dtype(), .device = a.device()});
}

}  // namespace

Tensor add(const Tensor& a, double b) {
  detail::check_defined(a, "add");
  if (!is_floating(a.dtype())) return add(a, integer_scalar(a, b, "add"));
  return detail::unary(a, UnaryOp::AddScalar, {b, 0.0}, "add");
}

Tensor mul(const Tensor& a, double b) {
  detail::check_defined(a, "mul");
  if (!is_floating(a.dtype())) return mul(a, integer_scalar(a, b, "mul"));
  return detail::unary(a, UnaryOp::MulScalar, {b, 0.0}, "mul");
}

// --- binary ---------------------------------------------------------------------------

namespace {

void check_binary_inputs(const Tensor& a, const Tensor& b, const char* op) {
  detail::check_defined(a, op, "first input");
  detail::check_defined(b, op, "second input");
  detail::check_same_device(a, b, op);
  detail::check_same_dtype(a, b, op);
}

Tensor binary_forward(const Tensor& a, const Tensor& b, BinaryOp op, const char* name) {
  check_binary_inputs(a, b, name);
  const DType dt = a.dtype();
  EMBER_CHECK_T(DTypeError, dt != kUInt8 && dt != kBool, name,
                ": arithmetic on ", dtype_name(dt), " tensors is not supported; convert with "
                ".to(kInt64) or .to(kFloat32) first (inputs ", detail::describe(a), " and ",
                detail::describe(b), ")");
  EMBER_CHECK_T(DTypeError, !(dt == kFloat64 && a.is_cuda()), name,
                ": float64 is supported on the CPU only");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = detail::empty_on(shape, dt, a.device());
  const auto idx = detail::broadcast_index(shape, a, b);
  const int64_t n = out.numel();
  dispatch::run(a, dispatch::kArithmeticAndHalf, name, [&]<typename T>(auto ctx) {
    binary(ctx, op, a.data<T>(), b.data<T>(), out.data<T>(), idx, n);
  });
  return out;
}

Tensor compare(const Tensor& a, const Tensor& b, CompareOp op, const char* name) {
  check_binary_inputs(a, b, name);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = detail::empty_on(shape, kBool, a.device());
  const auto idx = detail::broadcast_index(shape, a, b);
  const int64_t n = out.numel();
  dispatch::run(a, dispatch::kAllAndHalf, name, [&]<typename T>(auto ctx) {
    compare(ctx, op, a.data<T>(), b.data<T>(), out.data<bool>(), idx, n);
  });
  return out;
}

// A float mask (1 where `m` holds) in x's dtype.
Tensor as_mask(const Tensor& m, const Tensor& like) { return m.to(like.dtype()); }

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  if (auto c = autocast::to_widest({a, b})) return add((*c)[0], (*c)[1]);
  Tensor out = binary_forward(a, b, BinaryOp::Add, "add");
  if (autograd::needs_grad({&a, &b})) {
    autograd::record("add", {a, b}, {out}, [sa = a.shape(), sb = b.shape()](std::vector<Tensor>& g) {
      return std::vector<Tensor>{sum_to(g[0], sa), sum_to(g[0], sb)};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  if (auto c = autocast::to_widest({a, b})) return sub((*c)[0], (*c)[1]);
  Tensor out = binary_forward(a, b, BinaryOp::Sub, "sub");
  if (autograd::needs_grad({&a, &b})) {
    autograd::record("sub", {a, b}, {out}, [sa = a.shape(), sb = b.shape()](std::vector<Tensor>& g) {
      return std::vector<Tensor>{sum_to(g[0], sa), sum_to(neg(g[0]), sb)};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  if (auto c = autocast::to_widest({a, b})) return mul((*c)[0], (*c)[1]);
  Tensor out = binary_forward(a, b, BinaryOp::Mul, "mul");
  if (autograd::needs_grad({&a, &b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    autograd::record("mul", {a, b}, {out},
                     [ga, gb, sa = autograd::SavedTensor(gb ? a : Tensor(), "mul"),
                      sb = autograd::SavedTensor(ga ? b : Tensor(), "mul"), shape_a = a.shape(),
                      shape_b = b.shape()](std::vector<Tensor>& g) {
                       Tensor da, db;
                       if (ga) da = sum_to(mul(g[0], sb.unpack()), shape_a);
                       if (gb) db = sum_to(mul(g[0], sa.unpack()), shape_b);
                       return std::vector<Tensor>{da, db};
                     });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  if (auto c = autocast::to_widest({a, b})) return div((*c)[0], (*c)[1]);
  Tensor out = binary_forward(a, b, BinaryOp::Div, "div");
  if (autograd::needs_grad({&a, &b})) {
    const bool gb = b.requires_grad();
    autograd::record("div", {a, b}, {out},
                     [gb, sb = autograd::SavedTensor(b, "div"),
                      so = autograd::SavedTensor(gb ? out : Tensor(), "div"), shape_a = a.shape(),
                      shape_b = b.shape()](std::vector<Tensor>& g) {
                       Tensor bb = sb.unpack();
                       Tensor da = sum_to(div(g[0], bb), shape_a);
                       Tensor db;
                       // d(a/b)/db = -(a/b)/b
                       if (gb) db = sum_to(neg(div(mul(g[0], so.unpack()), bb)), shape_b);
                       return std::vector<Tensor>{da, db};
                     });
  }
  return out;
}

static Tensor extremum(const Tensor& a, const Tensor& b, bool is_max) {
  if (auto c = autocast::to_widest({a, b})) return extremum((*c)[0], (*c)[1], is_max);
  const char* name = is_max ? "maximum" : "minimum";
  Tensor out = binary_forward(a, b, is_max ? BinaryOp::Maximum : BinaryOp::Minimum, name);
  if (autograd::needs_grad({&a, &b})) {
    autograd::record(name, {a, b}, {out},
                     [is_max, sa = autograd::SavedTensor(a, name), sb = autograd::SavedTensor(b, name)](
                         std::vector<Tensor>& g) {
                       Tensor x = sa.unpack(), y = sb.unpack();
                       // Ties send the gradient to the first input.
                       Tensor pick_a = as_mask(is_max ? ge(x, y) : le(x, y), x);
                       Tensor pick_b = as_mask(is_max ? lt(x, y) : gt(x, y), x);
                       return std::vector<Tensor>{sum_to(mul(g[0], pick_a), x.shape()),
                                                  sum_to(mul(g[0], pick_b), y.shape())};
                     });
  }
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(a, b, true); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(a, b, false); }

Tensor eq(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Eq, "eq"); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Ne, "ne"); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Lt, "lt"); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Le, "le"); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Gt, "gt"); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Ge, "ge"); }

}  // namespace ember
