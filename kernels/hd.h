// EMBER_HD marks a function that both compilers build: __host__ __device__ under nvcc,
// plain C++ under g++, so one definition of the math serves the CPU and the GPU.
#pragma once

#if defined(__CUDACC__)
#define EMBER_HD __host__ __device__
#else
#define EMBER_HD
#endif

// Unrolls a fixed-trip loop (over kMaxDims) in device code, which keeps index structs in
// registers; only the device pass knows the pragma.
#if defined(__CUDA_ARCH__)
#define EMBER_UNROLL _Pragma("unroll")
#else
#define EMBER_UNROLL
#endif
