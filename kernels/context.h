// The first argument of every kernel entry point: the backend that runs it and what that
// backend needs. kernels::cpu::Context and kernels::cuda::Context are twins of one role,
// so a CPU kernel and its CUDA twin take the same arguments, and core's dispatch seam
// calls either with one line (see Note [Dispatch] in core/dispatch.h).
//
// No CUDA header here: the CUDA handle types are incomplete structs with the names the
// CUDA headers give them (cudaStream_t is CUstream_st*, cublasHandle_t cublasContext*,
// cudnnHandle_t cudnnContext*), so a CPU-only build reads this file too.
#pragma once

struct CUstream_st;
struct cublasContext;
struct cudnnContext;

namespace ember::kernels {

namespace cpu {

// The CPU backend needs nothing yet; it is a type so that overloads and ADL pick the
// CPU twin.
struct Context {};

}  // namespace cpu

namespace cuda {

// One device's compute stream and the library handles bound to it. Built by core for
// the device of an op's tensors, with that device current.
struct Context {
  CUstream_st* stream = nullptr;
  int device = 0;
  cublasContext* cublas = nullptr;
  cudnnContext* cudnn = nullptr;
  bool deterministic = false;  // deterministic algorithms only (cuDNN backward passes)
  bool cudnn_benchmark = false;  // cuDNN convolutions: measured algorithm search, cached
  bool allow_tf32 = false;       // TF32 math for float32 in cuDNN (cublas comes set for it)

  Context() = default;
  // Kernels that need only a stream (tests and benchmarks call them with one).
  Context(CUstream_st* s) : stream(s) {}  // NOLINT(google-explicit-constructor)
};

}  // namespace cuda
}  // namespace ember::kernels
