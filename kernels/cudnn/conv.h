// 2-D convolution through cuDNN (float32, float16, bfloat16; NCHW): forward (+ bias), backward data
// and backward filter, with the same ConvShape contract as kernels/cpu/conv.h. Core calls the CUDA
// twins of kernels/cuda/conv.cuh, which run these.
//
// Note [cuDNN convolution plans]
// Descriptors (input, output, filter, bias, and one convolution descriptor per direction)
// are built once per (device, ConvShape, policy) and cached behind one mutex, the most
// recently used kPlanCacheCapacity of them (Note [Bounded plan caches] in plan_cache.h). The algorithm of each direction is chosen once per key and cached beside them:
// by cuDNN's heuristic (cudnnGet*Algorithm_v7, the first result that succeeded) by
// default, or by measured search (cudnnFind*AlgorithmEx) in benchmark mode. Both skip
// non-deterministic algorithms in deterministic mode and tensor-op math unless TF32 is
// allowed. The calls are two-phase so the caller can take the workspace from its own
// memory pool: `*_workspace` chooses the algorithm and returns its workspace size, the
// run call then takes a buffer of at least that size. The search needs real buffers to
// time on: the workspace query takes the same pointers as the run (the output is
// overwritten) and a `scratch` callback for the search's own workspace.
#pragma once

#include <cudnn.h>

#include <cstddef>
#include <functional>

#include "ember/kernels/conv_shape.h"

namespace ember::kernels::cudnn {

// How algorithms are chosen (part of the cache key).
struct ConvPolicy {
  bool benchmark = false;      // measured search instead of the heuristic
  bool deterministic = false;  // deterministic algorithms only
  bool allow_tf32 = false;     // TF32 tensor-core math for float32 (else FMA math only)
  // The tensors' data type. The calls below set it from their element type; a caller of
  // conv2d_chosen_algorithm sets it to name the dtype it asks about. float16 and bfloat16
  // convolve with a float compute type and tensor-core math.
  cudnnDataType_t data_type = CUDNN_DATA_FLOAT;
};

// Device memory of at least `bytes`, valid until the workspace query returns, or
// nullptr when it cannot be had (the search then considers only algorithms that fit).
using ScratchFn = std::function<void*(size_t bytes)>;

// All buffers contiguous T (float, Half, BFloat16; p.data_type is taken from T) on the
// handle's device, sizes as in `s`; outputs are overwritten (beta = 0). The handle is bound
// to the caller's stream.
template <typename T>
size_t conv2d_forward_workspace(cudnnHandle_t handle, const ConvShape& s, const ConvPolicy& p,
                                const T* x, const T* w, T* y,
                                const ScratchFn& scratch);
// y = conv(x, w) (+ bias[o], added in place by cudnnAddTensor, when bias is not null).
template <typename T>
void conv2d_forward(cudnnHandle_t handle, const ConvShape& s, const ConvPolicy& p,
                    const T* x, const T* w, const T* bias, T* y,
                    void* workspace, size_t workspace_bytes);

template <typename T>
size_t conv2d_backward_data_workspace(cudnnHandle_t handle, const ConvShape& s,
                                      const ConvPolicy& p, const T* w, const T* dy,
                                      T* dx, const ScratchFn& scratch);
template <typename T>
void conv2d_backward_data(cudnnHandle_t handle, const ConvShape& s, const ConvPolicy& p,
                          const T* w, const T* dy, T* dx, void* workspace,
                          size_t workspace_bytes);

template <typename T>
size_t conv2d_backward_filter_workspace(cudnnHandle_t handle, const ConvShape& s,
                                        const ConvPolicy& p, const T* x, const T* dy,
                                        T* dw, const ScratchFn& scratch);
template <typename T>
void conv2d_backward_filter(cudnnHandle_t handle, const ConvShape& s, const ConvPolicy& p,
                            const T* x, const T* dy, T* dw, void* workspace,
                            size_t workspace_bytes);

// --- read-only query ---------------------------------------------------------------------
// What the cache chose for one direction of (the handle's device, s, p), so that a benchmark can replay
// ember's cuDNN calls with its own descriptors and the same algorithm. Nothing is chosen
// here: the choice is made by the direction's `*_workspace` call (the first conv2d call
// of that shape and direction).
enum class ConvDirection { kForward, kBackwardData, kBackwardFilter };

struct ConvAlgorithm {
  int algo = 0;                // cudnnConvolutionFwdAlgo_t, BwdDataAlgo_t or BwdFilterAlgo_t
  size_t workspace_bytes = 0;  // what the run call needs
  cudnnMathType_t math = CUDNN_FMA_MATH;  // the math type the direction runs with
};

// False (and *out untouched) when that direction has not been chosen yet.
bool conv2d_chosen_algorithm(cudnnHandle_t handle, const ConvShape& s, const ConvPolicy& p,
                             ConvDirection dir, ConvAlgorithm* out);

}  // namespace ember::kernels::cudnn
