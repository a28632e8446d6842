// ember::Half (IEEE float16) and ember::BFloat16: 16-bit storage, float arithmetic. They
// live in base, below kernels/, so that the CPU kernels and the CUDA kernels compute with
// the same types; users include them as <ember/core/half.h> (or through dtype.h).
//
// Note [16-bit floats]
// Both types hold their bits in one uint16_t and nothing else: trivially copyable and
// layout-identical to CUDA's __half and __nv_bfloat16, so a device buffer of either may be
// reinterpreted as ours. Like PyTorch's c10::Half and c10::BFloat16 they convert implicitly
// to and from float, and arithmetic happens in float (a Half + Half rounds the float sum
// once). float -> 16-bit rounds to nearest, ties to even, exactly as c10 does:
//  - float16: overflow past 65504 (from 65520 on) gives inf; results below 2^-14 are
//    float16 subnormals (rounded to a multiple of 2^-24); NaN gives the quiet NaN 0x7E00
//    with the sign kept.
//  - bfloat16: the top half of the float, rounded; any NaN gives 0x7FC0 (c10's choice).
// 16-bit -> float is exact (a NaN keeps its payload). The conversions are integer bit
// manipulation, the same on the host and on a GPU, so CPU results are the GPU's results.
// The functions are host-and-device under nvcc; this header includes no CUDA header.
#pragma once

#include <cstdint>
#include <cstring>
#include <ostream>
#include <type_traits>

#if defined(__CUDACC__)
#define EMBER_HALF_HD __host__ __device__
#else
#define EMBER_HALF_HD
#endif

namespace ember {

namespace detail {

EMBER_HALF_HD inline uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

EMBER_HALF_HD inline float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// float -> float16 bits, round to nearest even (Note [16-bit floats]).
EMBER_HALF_HD inline uint16_t float_to_half_bits(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t mag = u & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);  // NaN
  if (mag >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520: inf
  if (mag >= 0x38800000u) {
    // Normal: rebias the exponent (127 -> 15) and round away the 13 low mantissa bits.
    uint32_t h = (mag >> 13) - (112u << 10);
    const uint32_t rest = mag & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry may reach 2^-14
    return static_cast<uint16_t>(sign | h);
  }
  // Below 2^-14: a multiple of 2^-24. The float is m * 2^(e - 150) with m its 24-bit
  // significand, so the multiple is m >> (126 - e), rounded; under 2^-25 it rounds to 0.
  const uint32_t e = mag >> 23;
  if (e < 102u) return static_cast<uint16_t>(sign);
  const uint32_t m = (mag & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - e;  // 14..24
  uint32_t h = m >> shift;
  const uint32_t rest = m & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1u);
  if (rest > halfway || (rest == halfway && (h & 1u))) ++h;  // 0x400 is 2^-14: still right
  return static_cast<uint16_t>(sign | h);
}

// float16 bits -> float, exact.
EMBER_HALF_HD inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1Fu) return bits_float(sign | 0x7F800000u | (mant << 13));  // inf, NaN
  if (exp != 0u) return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0u) return bits_float(sign);  // +-0
  // Subnormal: normalize mant * 2^-24.
  uint32_t e = 113u;
  while ((mant & 0x400u) == 0u) {
    mant <<= 1;
    --e;
  }
  return bits_float(sign | (e << 23) | ((mant & 0x3FFu) << 13));
}

// float -> bfloat16 bits, round to nearest even; any NaN is 0x7FC0 (as c10).
EMBER_HALF_HD inline uint16_t float_to_bfloat16_bits(float f) {
  if (f != f) return 0x7FC0u;
  const uint32_t u = float_bits(f);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

EMBER_HALF_HD inline float bfloat16_bits_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

}  // namespace detail

// IEEE 754 binary16: 1 sign, 5 exponent, 10 mantissa bits.
struct alignas(2) Half {
  uint16_t x;

  Half() = default;
  EMBER_HALF_HD Half(float f) : x(detail::float_to_half_bits(f)) {}  // NOLINT: as c10
  EMBER_HALF_HD operator float() const { return detail::half_bits_to_float(x); }  // NOLINT

  EMBER_HALF_HD static constexpr Half from_bits(uint16_t bits) {
    Half h{};
    h.x = bits;
    return h;
  }
  EMBER_HALF_HD constexpr uint16_t bits() const { return x; }
};

// The upper half of an IEEE binary32: 1 sign, 8 exponent, 7 mantissa bits.
struct alignas(2) BFloat16 {
  uint16_t x;

  BFloat16() = default;
  EMBER_HALF_HD BFloat16(float f) : x(detail::float_to_bfloat16_bits(f)) {}  // NOLINT
  EMBER_HALF_HD operator float() const { return detail::bfloat16_bits_to_float(x); }  // NOLINT

  EMBER_HALF_HD static constexpr BFloat16 from_bits(uint16_t bits) {
    BFloat16 b{};
    b.x = bits;
    return b;
  }
  EMBER_HALF_HD constexpr uint16_t bits() const { return x; }
};

static_assert(sizeof(Half) == 2 && alignof(Half) == 2 && std::is_trivially_copyable_v<Half>);
static_assert(sizeof(BFloat16) == 2 && alignof(BFloat16) == 2 &&
              std::is_trivially_copyable_v<BFloat16>);

// Half or BFloat16: the types that store 16 bits and compute in float.
template <typename T>
inline constexpr bool is_reduced_float_v =
    std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

// Restricts the operators below to them. A template parameter rather than a concept: clang
// forms the operator's signature (float * float) before checking a constraint, and rejects it.
template <typename T>
using EnableIfReducedFloat = std::enable_if_t<is_reduced_float_v<T>, int>;

// Arithmetic as c10 defines it: with its own type the float result is rounded back; with a
// float, double or integer the result has the wider type (int: the 16-bit type). Explicit
// overloads, so that h * 2.0 or h + 1 is never ambiguous between the built-in operators
// (through operator float) and these.
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline H operator+(H a, H b) { return H(float(a) + float(b)); }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline H operator-(H a, H b) { return H(float(a) - float(b)); }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline H operator*(H a, H b) { return H(float(a) * float(b)); }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline H operator/(H a, H b) { return H(float(a) / float(b)); }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline H operator-(H a) { return H(-float(a)); }

template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline H& operator+=(H& a, H b) { return a = a + b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline H& operator-=(H& a, H b) { return a = a - b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline H& operator*=(H& a, H b) { return a = a * b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline H& operator/=(H& a, H b) { return a = a / b; }

template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline float operator+(H a, float b) { return float(a) + b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline float operator-(H a, float b) { return float(a) - b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline float operator*(H a, float b) { return float(a) * b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline float operator/(H a, float b) { return float(a) / b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline float operator+(float a, H b) { return a + float(b); }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline float operator-(float a, H b) { return a - float(b); }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline float operator*(float a, H b) { return a * float(b); }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline float operator/(float a, H b) { return a / float(b); }

template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline double operator+(H a, double b) { return double(float(a)) + b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline double operator-(H a, double b) { return double(float(a)) - b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline double operator*(H a, double b) { return double(float(a)) * b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline double operator/(H a, double b) { return double(float(a)) / b; }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline double operator+(double a, H b) { return a + double(float(b)); }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline double operator-(double a, H b) { return a - double(float(b)); }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline double operator*(double a, H b) { return a * double(float(b)); }
template <typename H, EnableIfReducedFloat<H> = 0>
EMBER_HALF_HD inline double operator/(double a, H b) { return a / double(float(b)); }

// With an integer (int, int64_t, ...), as c10 does for int and int64_t: the integer
// converted through float to H, the result H.
template <typename H, typename I>
using EnableIfReducedFloatAndInteger =
    std::enable_if_t<is_reduced_float_v<H> && std::is_integral_v<I>, int>;

template <typename H, typename I, EnableIfReducedFloatAndInteger<H, I> = 0>
EMBER_HALF_HD inline H operator+(H a, I b) { return a + H(float(b)); }
template <typename H, typename I, EnableIfReducedFloatAndInteger<H, I> = 0>
EMBER_HALF_HD inline H operator-(H a, I b) { return a - H(float(b)); }
template <typename H, typename I, EnableIfReducedFloatAndInteger<H, I> = 0>
EMBER_HALF_HD inline H operator*(H a, I b) { return a * H(float(b)); }
template <typename H, typename I, EnableIfReducedFloatAndInteger<H, I> = 0>
EMBER_HALF_HD inline H operator/(H a, I b) { return a / H(float(b)); }
template <typename H, typename I, EnableIfReducedFloatAndInteger<H, I> = 0>
EMBER_HALF_HD inline H operator+(I a, H b) { return H(float(a)) + b; }
template <typename H, typename I, EnableIfReducedFloatAndInteger<H, I> = 0>
EMBER_HALF_HD inline H operator-(I a, H b) { return H(float(a)) - b; }
template <typename H, typename I, EnableIfReducedFloatAndInteger<H, I> = 0>
EMBER_HALF_HD inline H operator*(I a, H b) { return H(float(a)) * b; }
template <typename H, typename I, EnableIfReducedFloatAndInteger<H, I> = 0>
EMBER_HALF_HD inline H operator/(I a, H b) { return H(float(a)) / b; }

// Prints the value as a float does.
inline std::ostream& operator<<(std::ostream& os, Half h) { return os << float(h); }
inline std::ostream& operator<<(std::ostream& os, BFloat16 b) { return os << float(b); }

}  // namespace ember

#undef EMBER_HALF_HD
