// CPU <-> CUDA parity through the public API: an op runs on fresh leaves on both devices
// (inputs as stored, transposed or narrowed, so kernels see non-contiguous views and
// misaligned starts), backprops the same upstream gradient, and the outputs and every
// input's gradient must agree within the dtype's tolerance (tests/support/allclose.h).
// The CUDA run starts from a NaN-poisoned pool.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/device.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "support/allclose.h"
#include "support/device.h"
#include "support/random.h"

namespace ember::testing {

// ---- inputs and layouts ------------------------------------------------------------------

// How an op sees its input: as stored, through a transpose of the last two dims, or
// narrowed along the last dim (a row stride larger than the row; for 1-D a contiguous view
// at an offset of one element, which also defeats 16-byte alignment).
enum class Layout { Contiguous, Transposed, Narrowed };

inline const char* layout_name(Layout l) {
  return l == Layout::Contiguous   ? "contiguous"
         : l == Layout::Transposed ? "transposed"
                                   : "narrowed";
}

inline constexpr int64_t kNarrowExtra = 3;

inline Shape stored_shape(Shape s, Layout layout) {
  if (layout == Layout::Transposed && s.size() >= 2) std::swap(s[s.size() - 1], s[s.size() - 2]);
  if (layout == Layout::Narrowed && !s.empty()) s.back() += kNarrowExtra;
  return s;
}

inline Tensor arrange(const Tensor& stored, Layout layout) {
  if (layout == Layout::Transposed && stored.dim() >= 2) return stored.transpose(-1, -2);
  if (layout == Layout::Narrowed && stored.dim() >= 1) {
    return stored.narrow(-1, 1, stored.size(-1) - kNarrowExtra);
  }
  return stored;
}

struct Input {
  Tensor stored;  // on the CPU; copied to each device
  Layout layout = Layout::Contiguous;
  bool grad = false;
};

// A float32 input that the op sees with `shape` through `layout`.
inline Input input(const Shape& shape, double lo, double hi, uint64_t seed,
                   Layout layout = Layout::Contiguous, bool grad = true) {
  return {uniform(stored_shape(shape, layout), lo, hi, seed, kFloat32), layout, grad};
}

// Small whole numbers: many ties, for max/min/argmax and the comparisons.
inline Input ties(const Shape& shape, uint64_t seed, Layout layout = Layout::Contiguous,
                  bool grad = true) {
  auto v = uniform_values(shape_numel(stored_shape(shape, layout)), 0, 3, seed);
  for (auto& x : v) x = std::floor(x);
  return {Tensor::from_vector(v, stored_shape(shape, layout)).to(kFloat32), layout, grad};
}

inline Input constant(const Tensor& t) { return {t, Layout::Contiguous, false}; }

// Extents drawn from sizes that matter to the kernels: 0, 1, odd, below and above the
// 128-element row threshold of the block reductions.
inline std::vector<Shape> random_shapes(size_t rank, int count, uint64_t seed) {
  static const int64_t kExtents[] = {0, 1, 2, 3, 5, 7, 13, 31, 130};
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> pick(0, 8);
  std::vector<Shape> shapes;
  for (int i = 0; i < count; ++i) {
    Shape s;
    for (size_t d = 0; d < rank; ++d) s.push_back(kExtents[pick(gen)]);
    shapes.push_back(s);
  }
  return shapes;
}

// The binary elementwise ops, by name.
struct BinaryCase {
  const char* name;
  Tensor (*op)(const Tensor&, const Tensor&);
};

inline const std::vector<BinaryCase>& binary_cases() {
  using Fn = Tensor (*)(const Tensor&, const Tensor&);
  static const std::vector<BinaryCase> cases = {{"add", static_cast<Fn>(&add)},
                                                {"sub", &sub},
                                                {"mul", static_cast<Fn>(&mul)},
                                                {"div", &div},
                                                {"maximum", &maximum},
                                                {"minimum", &minimum}};
  return cases;
}

// ---- running on both devices -----------------------------------------------------------

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct DeviceRun {
  Tensor out;
  std::vector<Tensor> grads;  // one per input (undefined where none)
};

// Runs `fn` on fresh leaves on `device` and, when the output is differentiable, backprops
// a fixed random upstream gradient (the same values on both devices).
inline DeviceRun run_on(Device device, const OpFn& fn, const std::vector<Input>& inputs) {
  std::vector<Tensor> leaves, args;
  for (const auto& in : inputs) {
    Tensor l = device.is_cpu() ? in.stored.clone() : in.stored.to(device);
    if (in.grad) l.requires_grad_(true);
    leaves.push_back(l);
    args.push_back(arrange(l, in.layout));
  }
  if (device.is_cuda()) poison_cuda_pool(device.index());
  DeviceRun r;
  r.out = fn(args);
  if (r.out.requires_grad()) {
    Tensor g = uniform(r.out.shape(), 0.5, 1.5, 977, kFloat32).to(device);
    r.out.backward(g);
  }
  for (const auto& l : leaves) r.grads.push_back(l.requires_grad() ? l.grad() : Tensor());
  return r;
}

// The CPU and CUDA results agree: defined on both or neither, the CUDA one on the GPU,
// same shape and dtype, values within the dtype's tolerance (exact for integers).
inline ::testing::AssertionResult same(const Tensor& cpu, const Tensor& gpu) {
  if (cpu.defined() && gpu.defined() && !gpu.is_cuda()) {
    return ::testing::AssertionFailure() << "the CUDA result is on " << gpu.device();
  }
  return allclose(gpu, cpu);
}

// Forward values and every input's gradient agree between the CPU and the GPU.
inline void expect_parity(const OpFn& fn, const std::vector<Input>& inputs) {
  const DeviceRun c = run_on(Device::cpu(), fn, inputs);
  const DeviceRun g = run_on(Device::cuda(), fn, inputs);
  EXPECT_TRUE(same(c.out, g.out)) << "forward";
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(same(c.grads[i], g.grads[i])) << "gradient of input " << i;
  }
}

}  // namespace ember::testing
