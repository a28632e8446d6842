// The arithmetic of every elementwise op (unary forward and derivative, binary,
// comparison, dtype conversion), written once for the CPU loops and the CUDA kernels.
#pragma once

#include <math.h>

#include <cstdint>
#include <type_traits>

#include "ember/core/base/error.h"
#include "ember/core/base/half.h"
#include "ember/kernels/hd.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels::math {

// Overloads that pick the float or double C function, so float ops compute in float on
// both host and device (the unqualified std:: names would promote or be host-only).
EMBER_HD inline float hd_exp(float x) { return ::expf(x); }
EMBER_HD inline double hd_exp(double x) { return ::exp(x); }
EMBER_HD inline float hd_log(float x) { return ::logf(x); }
EMBER_HD inline double hd_log(double x) { return ::log(x); }
EMBER_HD inline float hd_sqrt(float x) { return ::sqrtf(x); }
EMBER_HD inline double hd_sqrt(double x) { return ::sqrt(x); }
EMBER_HD inline float hd_tanh(float x) { return ::tanhf(x); }
EMBER_HD inline double hd_tanh(double x) { return ::tanh(x); }
EMBER_HD inline float hd_erf(float x) { return ::erff(x); }
EMBER_HD inline double hd_erf(double x) { return ::erf(x); }
EMBER_HD inline float hd_fabs(float x) { return ::fabsf(x); }
EMBER_HD inline double hd_fabs(double x) { return ::fabs(x); }
EMBER_HD inline float hd_pow(float x, float a) { return ::powf(x, a); }
EMBER_HD inline double hd_pow(double x, double a) { return ::pow(x, a); }

inline constexpr double kSqrt1_2 = 0.70710678118654752440;      // 1 / sqrt(2)
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1 / sqrt(2 pi)
inline constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)

// ---------------------------------------------------------------------------------
// Unary ops. Each functor has forward(x) -> y and derivative(x, y) -> dy/dx; backward
// is grad_x = grad_y * derivative(x, y). T is float or double.

template <typename T>
struct Neg {
  EMBER_HD T forward(T x) const { return -x; }
  EMBER_HD T derivative(T, T) const { return T(-1); }
};

template <typename T>
struct Exp {
  EMBER_HD T forward(T x) const { return hd_exp(x); }
  EMBER_HD T derivative(T, T y) const { return y; }
};

template <typename T>
struct Log {
  EMBER_HD T forward(T x) const { return hd_log(x); }
  EMBER_HD T derivative(T x, T) const { return T(1) / x; }
};

template <typename T>
struct Sqrt {
  EMBER_HD T forward(T x) const { return hd_sqrt(x); }
  EMBER_HD T derivative(T, T y) const { return T(0.5) / y; }
};

template <typename T>
struct Abs {
  EMBER_HD T forward(T x) const { return hd_fabs(x); }
  EMBER_HD T derivative(T x, T) const {
    return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
  }
};

template <typename T>
struct Pow {
  T a;
  EMBER_HD T forward(T x) const { return hd_pow(x, a); }
  // a == 0 is a constant function; a * x^(a-1) would give 0 * inf = NaN at x == 0.
  EMBER_HD T derivative(T x, T) const { return a == T(0) ? T(0) : a * hd_pow(x, a - T(1)); }
};

template <typename T>
struct Clamp {
  T a;  // lower bound
  T b;  // upper bound
  // min(max(x, a), b) in that order, so a > b gives b (as PyTorch), and NaN passes through.
  EMBER_HD T forward(T x) const {
    const T lo = x < a ? a : x;
    return lo > b ? b : lo;
  }
  EMBER_HD T derivative(T x, T) const { return (a <= x && x <= b) ? T(1) : T(0); }
};

template <typename T>
struct Relu {
  // Written as "x < 0 ? 0 : x" so that NaN passes through (as PyTorch's relu); a NaN
  // swallowed here would hide a diverged model from every NaN check downstream.
  EMBER_HD T forward(T x) const { return x < T(0) ? T(0) : x; }
  EMBER_HD T derivative(T x, T) const { return x > T(0) ? T(1) : T(0); }
};

template <typename T>
struct LeakyRelu {
  T a;  // negative slope
  EMBER_HD T forward(T x) const { return x > T(0) ? x : a * x; }
  EMBER_HD T derivative(T x, T) const { return x > T(0) ? T(1) : a; }
};

template <typename T>
struct Sigmoid {
  // exp only ever sees a non-positive argument: no overflow for large |x|, and full
  // relative precision in the left tail (1 - sigmoid(-x) would cancel).
  EMBER_HD T forward(T x) const {
    if (x >= T(0)) return T(1) / (T(1) + hd_exp(-x));
    const T e = hd_exp(x);
    return e / (T(1) + e);
  }
  EMBER_HD T derivative(T, T y) const { return y * (T(1) - y); }
};

template <typename T>
struct Tanh {
  EMBER_HD T forward(T x) const { return hd_tanh(x); }
  EMBER_HD T derivative(T, T y) const { return T(1) - y * y; }
};

template <typename T>
struct Gelu {
  // Exact GELU: x * Phi(x) with Phi the standard normal CDF.
  EMBER_HD T forward(T x) const { return T(0.5) * x * (T(1) + hd_erf(x * T(kSqrt1_2))); }
  // Phi(x) + x * phi(x).
  EMBER_HD T derivative(T x, T) const {
    const T cdf = T(0.5) * (T(1) + hd_erf(x * T(kSqrt1_2)));
    const T pdf = T(kInvSqrt2Pi) * hd_exp(T(-0.5) * x * x);
    return cdf + x * pdf;
  }
};

template <typename T>
struct GeluTanh {
  // PyTorch's gelu(approximate="tanh") and cuBLASLt's GELU epilogue:
  // 0.5 x (1 + tanh(u)), u = sqrt(2 / pi) (x + 0.044715 x^3).
  EMBER_HD T forward(T x) const {
    const T u = T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x);
    return T(0.5) * x * (T(1) + hd_tanh(u));
  }
  // 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx, t = tanh(u), du/dx = sqrt(2 / pi) (1 + 3 0.044715 x^2).
  EMBER_HD T derivative(T x, T) const {
    const T t = hd_tanh(T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x));
    const T du = T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x * x);
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
  }
};

template <typename T>
struct AddScalar {
  T a;
  EMBER_HD T forward(T x) const { return x + a; }
  EMBER_HD T derivative(T, T) const { return T(1); }
};

template <typename T>
struct MulScalar {
  T a;
  EMBER_HD T forward(T x) const { return x * a; }
  EMBER_HD T derivative(T, T) const { return a; }
};

// ---------------------------------------------------------------------------------
// Binary ops: operator()(a, b). T: float, double, int32_t, int64_t.

template <typename T>
struct Add {
  EMBER_HD T operator()(T a, T b) const { return a + b; }
};

template <typename T>
struct Sub {
  EMBER_HD T operator()(T a, T b) const { return a - b; }
};

template <typename T>
struct Mul {
  EMBER_HD T operator()(T a, T b) const { return a * b; }
};

template <typename T>
struct Div {
  EMBER_HD T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      // Integer x / 0 and MIN / -1 trap on x86; give 0 and the wrapped -MIN instead.
      if (b == T(0)) return T(0);
      if (b == T(-1)) return static_cast<T>(-static_cast<std::make_unsigned_t<T>>(a));
    }
    return a / b;
  }
};

// Maximum and Minimum propagate NaN from either side (as PyTorch's maximum/minimum).
template <typename T>
struct Maximum {
  EMBER_HD T operator()(T a, T b) const { return (a != a || a > b) ? a : b; }
};

template <typename T>
struct Minimum {
  EMBER_HD T operator()(T a, T b) const { return (a != a || a < b) ? a : b; }
};

// ---------------------------------------------------------------------------------
// Comparisons: operator()(a, b) -> bool. Any comparison with NaN is false except Ne.

template <typename T>
struct Eq {
  EMBER_HD bool operator()(T a, T b) const { return a == b; }
};
template <typename T>
struct Ne {
  EMBER_HD bool operator()(T a, T b) const { return a != b; }
};
template <typename T>
struct Lt {
  EMBER_HD bool operator()(T a, T b) const { return a < b; }
};
template <typename T>
struct Le {
  EMBER_HD bool operator()(T a, T b) const { return a <= b; }
};
template <typename T>
struct Gt {
  EMBER_HD bool operator()(T a, T b) const { return a > b; }
};
template <typename T>
struct Ge {
  EMBER_HD bool operator()(T a, T b) const { return a >= b; }
};

// ---------------------------------------------------------------------------------
// dtype conversion, for cast and fill.

// To bool: x != 0. Floating -> integer truncates toward zero through int64, so a
// narrower or unsigned target wraps the same way on host and device (a direct
// float -> uint8 conversion of a negative value is undefined, and the GPU saturates).
// Half and BFloat16 convert through float (as PyTorch's casts do: a double or an int64
// reaching float16 is rounded to float first).
template <typename D, typename S>
EMBER_HD D convert(S x) {
  if constexpr (is_reduced_float_v<S>) {
    return convert<D>(static_cast<float>(x));
  } else if constexpr (is_reduced_float_v<D>) {
    return D(convert<float>(x));
  } else if constexpr (std::is_same_v<D, bool>) {
    return x != S(0);
  } else if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) {
    return static_cast<D>(static_cast<int64_t>(x));
  } else {
    return static_cast<D>(x);
  }
}

// ---------------------------------------------------------------------------------
// Host-side dispatch: one switch per op kind, shared by the CPU loops and the CUDA
// launchers. `visit` is called with the functor for `op`.

template <typename T, typename Visitor>
void visit_unary(UnaryOp op, UnaryParams p, Visitor&& visit) {
  const T a = static_cast<T>(p.a);
  const T b = static_cast<T>(p.b);
  switch (op) {
    case UnaryOp::Neg: return visit(Neg<T>{});
    case UnaryOp::Exp: return visit(Exp<T>{});
    case UnaryOp::Log: return visit(Log<T>{});
    case UnaryOp::Sqrt: return visit(Sqrt<T>{});
    case UnaryOp::Abs: return visit(Abs<T>{});
    case UnaryOp::Pow: return visit(Pow<T>{a});
    case UnaryOp::Clamp: return visit(Clamp<T>{a, b});
    case UnaryOp::Relu: return visit(Relu<T>{});
    case UnaryOp::LeakyRelu: return visit(LeakyRelu<T>{a});
    case UnaryOp::Sigmoid: return visit(Sigmoid<T>{});
    case UnaryOp::Tanh: return visit(Tanh<T>{});
    case UnaryOp::Gelu: return visit(Gelu<T>{});
    case UnaryOp::GeluTanh: return visit(GeluTanh<T>{});
    case UnaryOp::AddScalar: return visit(AddScalar<T>{a});
    case UnaryOp::MulScalar: return visit(MulScalar<T>{a});
  }
  EMBER_CHECK(false, "unary elementwise: unknown UnaryOp code ", static_cast<int>(op));
}

template <typename T, typename Visitor>
void visit_binary(BinaryOp op, Visitor&& visit) {
  switch (op) {
    case BinaryOp::Add: return visit(Add<T>{});
    case BinaryOp::Sub: return visit(Sub<T>{});
    case BinaryOp::Mul: return visit(Mul<T>{});
    case BinaryOp::Div: return visit(Div<T>{});
    case BinaryOp::Maximum: return visit(Maximum<T>{});
    case BinaryOp::Minimum: return visit(Minimum<T>{});
  }
  EMBER_CHECK(false, "binary elementwise: unknown BinaryOp code ", static_cast<int>(op));
}

template <typename T, typename Visitor>
void visit_compare(CompareOp op, Visitor&& visit) {
  switch (op) {
    case CompareOp::Eq: return visit(Eq<T>{});
    case CompareOp::Ne: return visit(Ne<T>{});
    case CompareOp::Lt: return visit(Lt<T>{});
    case CompareOp::Le: return visit(Le<T>{});
    case CompareOp::Gt: return visit(Gt<T>{});
    case CompareOp::Ge: return visit(Ge<T>{});
  }
  EMBER_CHECK(false, "compare: unknown CompareOp code ", static_cast<int>(op));
}

// Names the C++ type of a dtype code for `visit_dtype`.
template <typename T>
struct DTypeTag {
  using type = T;
};

// Calls visit(DTypeTag<T>{}) for dtype code 0 f32, 1 f64, 2 i32, 3 i64, 4 u8, 5 bool,
// 6 f16 (Half), 7 bf16 (BFloat16).
template <typename Visitor>
void visit_dtype(const char* op_name, int dtype, Visitor&& visit) {
  switch (dtype) {
    case 0: return visit(DTypeTag<float>{});
    case 1: return visit(DTypeTag<double>{});
    case 2: return visit(DTypeTag<int32_t>{});
    case 3: return visit(DTypeTag<int64_t>{});
    case 4: return visit(DTypeTag<uint8_t>{});
    case 5: return visit(DTypeTag<bool>{});
    case 6: return visit(DTypeTag<Half>{});
    case 7: return visit(DTypeTag<BFloat16>{});
  }
  EMBER_CHECK_T(DTypeError, false, op_name, ": unknown dtype code ", dtype,
                " (expected 0 f32, 1 f64, 2 i32, 3 i64, 4 u8, 5 bool, 6 f16 or 7 bf16)");
}

}  // namespace ember::kernels::math
