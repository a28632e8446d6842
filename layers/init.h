// Parameter initialisers (nn::init), drawn from the seeded CPU generator so the same
// seed gives the same model on every device. Names follow PyTorch and Keras.
#pragma once

#include <string>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember::nn::init {

// fan_in / fan_out as PyTorch computes them: dims 1 and 0 times the receptive field.
EMBER_API int64_t fan_in(const Tensor& t);
EMBER_API int64_t fan_out(const Tensor& t);

// Each overwrites `t` in place (no gradient is recorded) and returns it.
EMBER_API Tensor& uniform_(Tensor& t, double low, double high);
EMBER_API Tensor& normal_(Tensor& t, double mean = 0.0, double std = 1.0);
EMBER_API Tensor& zeros_(Tensor& t);
EMBER_API Tensor& ones_(Tensor& t);
// He/Kaiming: gain sqrt(2 / (1 + a^2)) for leaky_relu with slope a (a = 0: relu).
EMBER_API Tensor& kaiming_uniform_(Tensor& t, double a = 0.0, bool fan_in_mode = true);
EMBER_API Tensor& kaiming_normal_(Tensor& t, double a = 0.0, bool fan_in_mode = true);
// Glorot/Xavier (Keras's default "glorot_uniform").
EMBER_API Tensor& xavier_uniform_(Tensor& t, double gain = 1.0);
EMBER_API Tensor& xavier_normal_(Tensor& t, double gain = 1.0);

// By name, for layer options: "default" (PyTorch's layer default), "glorot_uniform" /
// "xavier_uniform", "glorot_normal" / "xavier_normal", "he_uniform" / "kaiming_uniform",
// "he_normal" / "kaiming_normal", "zeros", "ones". Unknown names throw listing these.
EMBER_API Tensor& by_name(Tensor& t, const std::string& name);

}  // namespace ember::nn::init
