// Element types. Codes match the `int dtype` arguments of kernels/ (0 f32 ... 5 bool,
// 6 f16, 7 bf16).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "ember/core/base/export.h"
#include "ember/core/half.h"

namespace ember {

enum class DType : uint8_t {
  Float32 = 0,
  Float64 = 1,
  Int32 = 2,
  Int64 = 3,
  UInt8 = 4,
  Bool = 5,
  Float16 = 6,   // ember::Half
  BFloat16 = 7,  // ember::BFloat16
};

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kInt32 = DType::Int32;
inline constexpr DType kInt64 = DType::Int64;
inline constexpr DType kUInt8 = DType::UInt8;
inline constexpr DType kBool = DType::Bool;
inline constexpr DType kFloat16 = DType::Float16;
inline constexpr DType kBFloat16 = DType::BFloat16;

EMBER_API size_t dtype_size(DType t);
EMBER_API const char* dtype_name(DType t);  // "float32", "int64", ... as PyTorch prints them
inline bool is_floating(DType t) {
  return t == kFloat32 || t == kFloat64 || t == kFloat16 || t == kBFloat16;
}
// float16 and bfloat16: stored in 16 bits, computed in float32.
inline bool is_reduced_float(DType t) { return t == kFloat16 || t == kBFloat16; }
inline int dtype_code(DType t) { return static_cast<int>(t); }

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

// The C++ type <-> DType mapping used by data<T>(), from_vector and to_vector.
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = kFloat32; };
template <> struct dtype_of<double> { static constexpr DType value = kFloat64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = kInt32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = kInt64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = kUInt8; };
template <> struct dtype_of<bool> { static constexpr DType value = kBool; };
template <> struct dtype_of<Half> { static constexpr DType value = kFloat16; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = kBFloat16; };
template <typename T> inline constexpr DType dtype_of_v = dtype_of<T>::value;

}  // namespace ember
