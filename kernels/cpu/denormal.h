// Flush-to-zero for CPU loops that can meet subnormal floats. See Note [Subnormals].
#pragma once

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
#define EMBER_HAS_MXCSR 1
#else
#define EMBER_HAS_MXCSR 0
#endif

namespace ember::kernels::cpu {

// Note [Subnormals]
// Arithmetic on subnormal floats (below 1.2e-38 in float32) takes x86 cores about a
// hundred times longer than on normal ones. Adam's second moment is the usual source: a
// gradient of 1e-20 squares to one, and the moments of weights that stop receiving
// gradient decay into the range step after step. On image_folder_cnn (19 M weights in its
// Dense 512 layer) the Adam step grew from 3 % to 42 % of an epoch by the third epoch.
// The CPU optimizer updates therefore run with the SSE control register's flush-to-zero
// (a subnormal result becomes 0) and denormals-are-zero (a subnormal input reads as 0)
// bits set, as TensorFlow does for all its CPU work; the bits are restored when the
// update returns. The effect on results is below float32's resolution of every normal
// value; the GPU keeps subnormals (they cost nothing there). Elsewhere (other CPUs) this
// is a no-op.
class FlushDenormals {
 public:
#if EMBER_HAS_MXCSR
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
  ~FlushDenormals() { _mm_setcsr(saved_); }
#else
  FlushDenormals() = default;
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
#if EMBER_HAS_MXCSR
  static constexpr unsigned int kFlushToZero = 0x8000;      // MXCSR bit 15
  static constexpr unsigned int kDenormalsAreZero = 0x0040;  // MXCSR bit 6
  unsigned int saved_;
#endif
};

}  // namespace ember::kernels::cpu
