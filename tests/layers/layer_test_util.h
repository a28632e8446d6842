// Helpers shared by the layer tests (CPU and CPU-vs-GPU).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <ember/ember.h>

#include "support/allclose.h"

namespace ember::testing {

inline Tensor f32(const std::vector<float>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

// Uniform values in [lo, hi) from a generator seeded with `seed`.
inline Tensor random_f64(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& e : v) e = dist(gen);
  return Tensor::from_vector(v, shape);
}

inline Tensor random_f32(const Shape& shape, std::mt19937_64& gen, float lo = -1.0f,
                         float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& e : v) e = dist(gen);
  return Tensor::from_vector(v, shape);
}

// Every element of `got` within tol * (1 + |want|) of `want`.
inline void expect_close(const Tensor& got, const std::vector<double>& want, double tol,
                         const std::string& what = "") {
  EXPECT_TRUE(allclose(got, want, Tolerance{tol, tol})) << what;
}

// A GPU result against its CPU twin: same shape, finite, every element within tol times
// the largest |CPU value| (at least 1).
inline void expect_gpu_matches_cpu(const Tensor& on_gpu, const Tensor& on_cpu, double tol,
                                   const std::string& what) {
  ASSERT_TRUE(on_gpu.defined()) << what << ": undefined on the GPU";
  ASSERT_TRUE(on_cpu.defined()) << what << ": undefined on the CPU";
  ASSERT_TRUE(on_gpu.is_cuda()) << what;
  ASSERT_EQ(on_gpu.shape(), on_cpu.shape()) << what;
  const auto g = values(on_gpu);
  const auto c = values(on_cpu);
  double scale = 1.0;
  for (double v : c) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < g.size(); ++i) {
    ASSERT_TRUE(std::isfinite(g[i])) << what << " element " << i;
    ASSERT_NEAR(g[i], c[i], tol * scale) << what << " element " << i;
  }
}

// Sets some of a layer's parameters and buffers by name, as a user would: through a
// non-strict load_state_dict.
inline void set_state(nn::Module& m, const std::vector<std::pair<std::string, Tensor>>& entries) {
  nn::StateDict sd;
  for (const auto& [n, t] : entries) sd.insert(n, t);
  m.load_state_dict(sd, /*strict=*/false);
}

// The layer with float64 parameters and buffers, the gradient checker's dtype. A layer's
// parameters live in slots that only a subclass can re-seat (Module::to() changes the
// device, not the dtype), so the test derives from the layer to do it.
template <typename Layer>
class Float64 : public Layer {
 public:
  template <typename... Args>
  explicit Float64(Args&&... args) : Layer(std::forward<Args>(args)...) {
    for (const auto& [n, t] : this->named_parameters(false)) {
      this->parameter_slot(n) = t.detach().to(kFloat64).requires_grad_();
    }
    for (const auto& [n, t] : this->named_buffers(false)) {
      if (t.dtype() == kFloat32) this->buffer_slot(n) = t.to(kFloat64);
    }
  }
};

}  // namespace ember::testing
