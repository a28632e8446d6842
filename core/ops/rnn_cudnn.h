// The cuDNN side of the rnn op (internal): the whole stack in one cuDNN call per direction
// of the pass, over weights in cuDNN's flat buffer (see Note [RNN weight buffer]). These
// are the CUDA overloads of Note [RNN backends] (core/ops/rnn.cpp), which calls them
// through dispatch::on_device; their file, rnn_cudnn.cpp, is CUDA-only and the one file of
// core that includes cuDNN. This header includes no CUDA header.
#pragma once

#include <vector>

#include "ember/core/ops.h"
#include "ember/kernels/context.h"

namespace ember::detail {

// Inputs already checked by rnn(); x is on ctx's device (made current). Throws DTypeError
// unless x is float32.
RnnResult rnn_on(kernels::cuda::Context ctx, const Tensor& x, const Tensor& hx, const Tensor& cx,
                 const std::vector<Tensor>& weights, const std::vector<int64_t>& lengths,
                 const RnnParams& p);
// `weights` non-empty and defined, on ctx's device.
bool rnn_weights_flat_on(kernels::cuda::Context ctx, const std::vector<Tensor>& weights,
                         const RnnParams& p);
// `weights` float32, on ctx's device.
RnnFlatWeights rnn_flatten_weights_on(kernels::cuda::Context ctx,
                                      const std::vector<Tensor>& weights, const RnnParams& p);

}  // namespace ember::detail
