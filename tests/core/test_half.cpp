// Specification tests for ember::Half and ember::BFloat16 (core/half.h): every one of the
// 65,536 bit patterns of each decodes and re-encodes to itself, and float -> 16-bit rounds
// to nearest even exactly as an independent reference (nearest of the two neighbouring
// representable values) says, on all halfway points, one float ulp around them and random
// floats; the edge cases (NaN, inf, overflow, subnormals, -0) by name; float16 against the
// compiler's _Float16 where it has one; the dtypes' names and sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <type_traits>
#include <vector>

#include "ember/core/dtype.h"
#include "ember/core/half.h"

namespace {

using namespace ember;

float float_of_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
uint32_t bits_of_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// Both types described for the reference: the bit patterns of +0 .. +inf (increasing in
// value), the value inf stands for when rounding (2^(emax + 1): a value at or past the
// midpoint between the largest finite and it rounds to inf, as IEEE 754 says), and what a
// NaN encodes to.
struct Format {
  const char* name;
  uint16_t inf_bits;
  double inf_as;
  bool is_nan(uint16_t b) const { return (b & 0x7FFFu) > inf_bits; }
};
constexpr Format kHalfFormat{"float16", 0x7C00u, 65536.0};
constexpr Format kBFloat16Format{"bfloat16", 0x7F80u, 3.402823669209384634633746e38};  // 2^128

template <typename H>
constexpr Format format_of() {
  return std::is_same_v<H, Half> ? kHalfFormat : kBFloat16Format;
}

// The sorted values of the non-negative patterns 0 .. inf_bits, decoded independently of
// the code under test: from the bit fields, in double.
template <typename H>
std::vector<double> positive_table() {
  constexpr bool kHalf = std::is_same_v<H, Half>;
  const int mant_bits = kHalf ? 10 : 7;
  const int bias = kHalf ? 15 : 127;
  const Format fmt = format_of<H>();
  std::vector<double> table;
  for (uint32_t b = 0; b < fmt.inf_bits; ++b) {
    const int exp = static_cast<int>(b >> mant_bits);
    const double mant = static_cast<double>(b & ((1u << mant_bits) - 1u));
    table.push_back(exp == 0 ? std::ldexp(mant, 1 - bias - mant_bits)
                             : std::ldexp(1.0 + mant / (1 << mant_bits), exp - bias));
  }
  table.push_back(fmt.inf_as);
  return table;
}

// Round to nearest, ties to the even pattern, from the table; the sign is copied.
template <typename H>
uint16_t reference_round(float x, const std::vector<double>& table) {
  const Format fmt = format_of<H>();
  if (std::isnan(x)) return std::is_same_v<H, Half> ? (std::signbit(x) ? 0xFE00u : 0x7E00u)
                                                    : 0x7FC0u;
  const uint16_t sign = std::signbit(x) ? 0x8000u : 0u;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= fmt.inf_as) return sign | fmt.inf_bits;
  // table[lo] <= a < table[lo + 1]
  const size_t hi = static_cast<size_t>(std::upper_bound(table.begin(), table.end(), a) -
                                        table.begin());
  const size_t lo = hi - 1;
  const double d_lo = a - table[lo], d_hi = table[hi] - a;
  size_t pick = d_lo < d_hi ? lo : (d_hi < d_lo ? hi : (lo % 2 == 0 ? lo : hi));
  return static_cast<uint16_t>(sign | pick);
}

template <typename H>
class HalfTypes : public ::testing::Test {};
using Types16 = ::testing::Types<Half, BFloat16>;
TYPED_TEST_SUITE(HalfTypes, Types16);

TYPED_TEST(HalfTypes, IsTwoTriviallyCopyableBytes) {
  using H = TypeParam;
  static_assert(sizeof(H) == 2 && alignof(H) == 2);
  static_assert(std::is_trivially_copyable_v<H> && std::is_standard_layout_v<H>);
  EXPECT_EQ(H::from_bits(0x1234).bits(), 0x1234);
  H h = H::from_bits(0xABCD);
  uint16_t raw;
  std::memcpy(&raw, &h, 2);
  EXPECT_EQ(raw, 0xABCD);
}

TYPED_TEST(HalfTypes, EveryBitPatternDecodesExactlyAndReencodesToItself) {
  using H = TypeParam;
  const Format fmt = format_of<H>();
  const std::vector<double> table = positive_table<H>();
  for (uint32_t b = 0; b <= 0xFFFFu; ++b) {
    const H h = H::from_bits(static_cast<uint16_t>(b));
    const float f = h;
    if (fmt.is_nan(static_cast<uint16_t>(b))) {
      ASSERT_TRUE(std::isnan(f)) << fmt.name << " bits 0x" << std::hex << b;
      ASSERT_TRUE(fmt.is_nan(H(f).bits())) << fmt.name << " bits 0x" << std::hex << b;
      continue;
    }
    const double want = (b & 0x8000u) ? -table[b & 0x7FFFu] : table[b];
    if (std::isinf(f)) {
      ASSERT_EQ(b & 0x7FFFu, fmt.inf_bits);
    } else {
      ASSERT_EQ(static_cast<double>(f), want) << fmt.name << " bits 0x" << std::hex << b;
    }
    ASSERT_EQ(std::signbit(f), (b & 0x8000u) != 0);
    ASSERT_EQ(H(f).bits(), b) << fmt.name << " bits 0x" << std::hex << b;
  }
}

// Every midpoint between neighbours (positive and negative, inf's included), one float ulp
// on each side, the neighbours themselves, and a million random float bit patterns.
template <typename H>
std::vector<float> rounding_probes() {
  const std::vector<double> table = positive_table<H>();
  std::vector<float> probes;
  for (size_t i = 0; i + 1 < table.size(); ++i) {
    const float mid = static_cast<float>((table[i] + table[i + 1]) / 2);
    EXPECT_EQ(static_cast<double>(mid), (table[i] + table[i + 1]) / 2) << "midpoint not a float";
    for (float p : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY),
                    static_cast<float>(table[i])}) {
      probes.push_back(p);
      probes.push_back(-p);
    }
  }
  std::mt19937 gen(1234);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 1000000; ++i) probes.push_back(float_of_bits(any(gen)));
  return probes;
}

TYPED_TEST(HalfTypes, FloatRoundsToNearestEvenLikeTheReference) {
  using H = TypeParam;
  const std::vector<double> table = positive_table<H>();
  int64_t mismatches = 0;
  for (float x : rounding_probes<H>()) {
    const uint16_t got = H(x).bits(), want = reference_round<H>(x, table);
    if (got != want && ++mismatches <= 10) {
      ADD_FAILURE() << format_of<H>().name << "(" << x << ", bits 0x" << std::hex
                    << bits_of_float(x) << "): got 0x" << got << ", want 0x" << want;
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Half, EdgeCases) {
  EXPECT_EQ(Half(0.0f).bits(), 0x0000);
  EXPECT_EQ(Half(-0.0f).bits(), 0x8000);
  EXPECT_EQ(Half(1.0f).bits(), 0x3C00);
  EXPECT_EQ(Half(-2.0f).bits(), 0xC000);
  EXPECT_EQ(Half(65504.0f).bits(), 0x7BFF);     // largest finite
  EXPECT_EQ(Half(65519.996f).bits(), 0x7BFF);   // just under the midpoint to inf
  EXPECT_EQ(Half(65520.0f).bits(), 0x7C00);     // the midpoint: ties to even (inf)
  EXPECT_EQ(Half(1e10f).bits(), 0x7C00);
  EXPECT_EQ(Half(-1e10f).bits(), 0xFC00);
  EXPECT_EQ(Half(INFINITY).bits(), 0x7C00);
  EXPECT_EQ(Half(-INFINITY).bits(), 0xFC00);
  EXPECT_EQ(Half(std::numeric_limits<float>::quiet_NaN()).bits(), 0x7E00);
  EXPECT_EQ(Half(-std::numeric_limits<float>::quiet_NaN()).bits(), 0xFE00);
  EXPECT_EQ(Half(float_of_bits(0x7F800001u)).bits(), 0x7E00);  // signalling NaN: quiet
  EXPECT_EQ(Half(std::ldexp(1.0f, -14)).bits(), 0x0400);        // smallest normal
  EXPECT_EQ(Half(std::ldexp(1.0f, -24)).bits(), 0x0001);        // smallest subnormal
  EXPECT_EQ(Half(std::ldexp(1.0f, -25)).bits(), 0x0000);        // half of it: ties to 0
  EXPECT_EQ(Half(std::nextafter(std::ldexp(1.0f, -25), 1.0f)).bits(), 0x0001);
  EXPECT_EQ(Half(std::ldexp(3.0f, -25)).bits(), 0x0002);        // 1.5 ulp: ties to even 2
  EXPECT_EQ(Half(-std::ldexp(1.0f, -26)).bits(), 0x8000);       // underflow keeps the sign
  EXPECT_EQ(Half(std::numeric_limits<float>::denorm_min()).bits(), 0x0000);
  // 1 + 2^-11 is the midpoint of 1 and 1 + 2^-10: ties to even (1).
  EXPECT_EQ(Half(1.0f + std::ldexp(1.0f, -11)).bits(), 0x3C00);
  EXPECT_EQ(Half(1.0f + 3 * std::ldexp(1.0f, -11)).bits(), 0x3C02);
  EXPECT_EQ(float(Half::from_bits(0x0001)), std::ldexp(1.0f, -24));
  EXPECT_EQ(float(Half::from_bits(0x03FF)), std::ldexp(1023.0f, -24));
  EXPECT_TRUE(std::isnan(float(Half::from_bits(0x7C01))));
}

TEST(BFloat16, EdgeCases) {
  EXPECT_EQ(BFloat16(0.0f).bits(), 0x0000);
  EXPECT_EQ(BFloat16(-0.0f).bits(), 0x8000);
  EXPECT_EQ(BFloat16(1.0f).bits(), 0x3F80);
  EXPECT_EQ(BFloat16(float_of_bits(0x3F808000u)).bits(), 0x3F80);  // tie: to even
  EXPECT_EQ(BFloat16(float_of_bits(0x3F818000u)).bits(), 0x3F82);  // tie: to even (up)
  EXPECT_EQ(BFloat16(float_of_bits(0x3F808001u)).bits(), 0x3F81);
  EXPECT_EQ(BFloat16(std::numeric_limits<float>::max()).bits(), 0x7F80);  // rounds to inf
  EXPECT_EQ(BFloat16(float_of_bits(0x7F7F7FFFu)).bits(), 0x7F7F);         // stays finite
  EXPECT_EQ(BFloat16(INFINITY).bits(), 0x7F80);
  EXPECT_EQ(BFloat16(-INFINITY).bits(), 0xFF80);
  EXPECT_EQ(BFloat16(std::numeric_limits<float>::quiet_NaN()).bits(), 0x7FC0);
  EXPECT_EQ(BFloat16(-std::numeric_limits<float>::quiet_NaN()).bits(), 0x7FC0);  // as c10
  EXPECT_EQ(BFloat16(float_of_bits(0x7F800001u)).bits(), 0x7FC0);  // never rounds to inf
  EXPECT_EQ(BFloat16(float_of_bits(0x00010000u)).bits(), 0x0001);  // subnormals carry over
  EXPECT_EQ(BFloat16(float_of_bits(0x00008000u)).bits(), 0x0000);  // tie to even 0
  EXPECT_EQ(BFloat16(float_of_bits(0x80008001u)).bits(), 0x8001);
  EXPECT_EQ(float(BFloat16::from_bits(0x4049)), 3.140625f);
}

TYPED_TEST(HalfTypes, ArithmeticIsFloatArithmeticRoundedOnce) {
  using H = TypeParam;
  const H a(1.5f), b(0.25f);
  static_assert(std::is_same_v<decltype(a + b), H>);
  static_assert(std::is_same_v<decltype(a * 2.0f), float>);
  static_assert(std::is_same_v<decltype(a * 2.0), double>);
  static_assert(std::is_same_v<decltype(a * 2), H>);
  static_assert(std::is_same_v<decltype(a / int64_t{2}), H>);
  EXPECT_EQ(float(a + b), 1.75f);
  EXPECT_EQ(float(a - b), 1.25f);
  EXPECT_EQ(float(a * b), 0.375f);
  EXPECT_EQ(float(a / b), 6.0f);
  EXPECT_EQ(float(-a), -1.5f);
  EXPECT_EQ(a * 2.0f, 3.0f);
  EXPECT_EQ(2.0 * a, 3.0);
  EXPECT_EQ(float(a * 2), 3.0f);
  // Rounded once, from the float result: 1 + 1/3 in float, then to 16 bits.
  const H third = H(1.0f) / H(3.0f);
  EXPECT_EQ(third.bits(), H(1.0f / 3.0f).bits());
  H c = a;
  c += b;
  c *= H(2.0f);
  c -= H(0.5f);
  c /= H(2.0f);
  EXPECT_EQ(float(c), 1.5f);
  EXPECT_TRUE(a > b && b < a && a == H(1.5f) && a != b);
  std::ostringstream os;
  os << a;
  EXPECT_EQ(os.str(), "1.5");
}

TEST(HalfDType, NamesSizesAndTypeMapping) {
  EXPECT_EQ(static_cast<int>(kFloat16), 6);
  EXPECT_EQ(static_cast<int>(kBFloat16), 7);
  EXPECT_STREQ(dtype_name(kFloat16), "float16");
  EXPECT_STREQ(dtype_name(kBFloat16), "bfloat16");
  EXPECT_EQ(dtype_size(kFloat16), 2u);
  EXPECT_EQ(dtype_size(kBFloat16), 2u);
  EXPECT_TRUE(is_floating(kFloat16));
  EXPECT_TRUE(is_floating(kBFloat16));
  EXPECT_TRUE(is_reduced_float(kBFloat16));
  EXPECT_FALSE(is_reduced_float(kFloat32));
  EXPECT_EQ(dtype_of_v<Half>, kFloat16);
  EXPECT_EQ(dtype_of_v<BFloat16>, kBFloat16);
}

#if defined(__FLT16_MAX__)
// The compiler's own float16 (software rounding on x86-64 with SSE2, F16C or AVX512-FP16
// instructions where enabled) agrees with ours bit for bit.
_Float16 to_float16(float x) { return static_cast<_Float16>(x); }

TEST(Half, AgreesWithTheCompilersFloat16) {
  for (uint32_t b = 0; b <= 0xFFFFu; ++b) {
    _Float16 hw;
    const uint16_t bits = static_cast<uint16_t>(b);
    std::memcpy(&hw, &bits, 2);
    const float want = static_cast<float>(hw);
    const float got = Half::from_bits(bits);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got));
    } else {
      ASSERT_EQ(bits_of_float(got), bits_of_float(want)) << "bits 0x" << std::hex << b;
    }
  }
  int64_t mismatches = 0;
  for (float x : rounding_probes<Half>()) {
    if (std::isnan(x)) continue;  // NaN payloads differ between implementations
    const _Float16 hw = to_float16(x);
    uint16_t want;
    std::memcpy(&want, &hw, 2);
    if (Half(x).bits() != want && ++mismatches <= 10) {
      ADD_FAILURE() << x << ": got 0x" << std::hex << Half(x).bits() << ", _Float16 0x" << want;
    }
  }
  EXPECT_EQ(mismatches, 0);
}
#endif

}  // namespace
