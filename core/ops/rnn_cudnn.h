// The cuDNN half of the rnn op (internal): the whole stack in one cuDNN call per direction
// of the pass, over weights in cuDNN's flat buffer (see Note [RNN weight buffer]).
#pragma once

#include <vector>

#include "ember/core/ops.h"

namespace ember::detail {

// Inputs already checked by rnn(): float32 CUDA tensors.
RnnResult rnn_cudnn(const Tensor& x, const Tensor& hx, const Tensor& cx,
                    const std::vector<Tensor>& weights, const std::vector<int64_t>& lengths,
                    const RnnParams& p);
bool rnn_cudnn_weights_flat(const std::vector<Tensor>& weights, const RnnParams& p);
RnnFlatWeights rnn_cudnn_flatten_weights(const std::vector<Tensor>& weights, const RnnParams& p);

}  // namespace ember::detail
