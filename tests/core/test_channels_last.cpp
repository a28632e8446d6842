// The channels-last memory format: the layout queries and conversion, and conv2d, the pools
// and the unary ops taking channels-last inputs and answering channels-last, with the
// values and gradients of the row-major computation (on the CPU the kernels read NCHW, so
// they must agree exactly); on a GPU, cuDNN's NHWC convolutions against the CPU.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"
#include "ember/layers/layers.h"

#include "support/allclose.h"
#include "support/check.h"
#include "support/device.h"

namespace {

using namespace ember;
using ember::testing::contains;
using ember::testing::error_of;
using ember::testing::values;

const Shape kNhwcStrides{5 * 7 * 3, 1, 7 * 3, 3};

TEST(ChannelsLast, LayoutQueriesAndConversion) {
  manual_seed(1);
  const Tensor x = rand({2, 3, 5, 7});
  EXPECT_TRUE(x.is_contiguous(MemoryFormat::Contiguous));
  EXPECT_FALSE(x.is_contiguous(MemoryFormat::ChannelsLast));
  EXPECT_EQ(x.suggest_memory_format(), MemoryFormat::Contiguous);
  const Tensor y = x.contiguous(MemoryFormat::ChannelsLast);
  EXPECT_EQ(y.shape(), x.shape());
  EXPECT_EQ(y.strides(), kNhwcStrides);
  EXPECT_TRUE(y.is_contiguous(MemoryFormat::ChannelsLast));
  EXPECT_FALSE(y.is_contiguous());
  EXPECT_EQ(y.suggest_memory_format(), MemoryFormat::ChannelsLast);
  EXPECT_EQ(values(y), values(x));  // same indexing, other layout
  EXPECT_TRUE(y.contiguous(MemoryFormat::ChannelsLast).is_same(y));
  EXPECT_EQ(y.contiguous().strides(), x.strides());
  // One channel: both layouts at once, and row-major is suggested.
  const Tensor one = rand({2, 1, 4, 4});
  EXPECT_TRUE(one.is_contiguous(MemoryFormat::ChannelsLast));
  EXPECT_EQ(one.suggest_memory_format(), MemoryFormat::Contiguous);
  // Not 4-D.
  EXPECT_FALSE(rand({3, 4}).is_contiguous(MemoryFormat::ChannelsLast));
  const std::string msg =
      error_of<ShapeError>([] { rand({3, 4, 5}).contiguous(MemoryFormat::ChannelsLast); });
  EXPECT_TRUE(contains(msg, "contiguous(ChannelsLast)")) << msg;
  EXPECT_TRUE(contains(msg, "[3, 4, 5]")) << msg;
  // The conversion is differentiable.
  Tensor leaf = rand({2, 3, 5, 7}).requires_grad_();
  (leaf.contiguous(MemoryFormat::ChannelsLast) * 2.0).sum().backward();
  EXPECT_EQ(values(leaf.grad()), std::vector<double>(2 * 3 * 5 * 7, 2.0));
}

using Fn = std::function<Tensor(const Tensor&)>;

// f on a row-major input and on the same values channels-last: the second answers
// channels-last with the same values, and the input gradients agree.
void expect_same_in_both_layouts(const Fn& f, const Shape& shape, const std::string& what) {
  SCOPED_TRACE(what);
  const Tensor base = rand(shape) * 4.0 - 2.0;
  Tensor a = base.clone().requires_grad_();
  Tensor b = base.contiguous(MemoryFormat::ChannelsLast).detach().requires_grad_();
  ASSERT_EQ(b.suggest_memory_format(), MemoryFormat::ChannelsLast);
  const Tensor ya = f(a), yb = f(b);
  EXPECT_EQ(yb.suggest_memory_format(), MemoryFormat::ChannelsLast);
  EXPECT_EQ(ya.suggest_memory_format(), MemoryFormat::Contiguous);
  EXPECT_EQ(values(yb), values(ya));
  const Tensor w = rand(ya.shape());
  (ya * w).sum().backward();
  (yb * w).sum().backward();
  EXPECT_EQ(values(b.grad()), values(a.grad()));
}

TEST(ChannelsLast, Conv2dAnswersInItsInputsFormat) {
  manual_seed(2);
  const Tensor w = rand({8, 3, 3, 3}) - 0.5, bias = rand({8});
  expect_same_in_both_layouts([&](const Tensor& x) { return conv2d(x, w, bias); },
                              {2, 3, 9, 11}, "conv2d");
  expect_same_in_both_layouts(
      [&](const Tensor& x) { return conv2d(x, w, bias, {.stride = {2, 2}, .padding = {1, 1}}); },
      {2, 3, 9, 11}, "strided, padded");
  const Tensor wg = rand({6, 2, 3, 3}) - 0.5;
  expect_same_in_both_layouts(
      [&](const Tensor& x) { return conv2d(x, wg, Tensor(), {.groups = 2}); }, {2, 4, 7, 7},
      "grouped");
  // The weight's gradient is row-major like the weight, whatever the input's layout.
  Tensor wl = w.clone().requires_grad_();
  conv2d(rand({2, 3, 9, 11}).contiguous(MemoryFormat::ChannelsLast), wl, bias).sum().backward();
  EXPECT_TRUE(wl.grad().is_contiguous());
  // A layer, through a channels-last input.
  nn::Conv2d layer(3, 4, 3, {.padding = "same"});
  const Tensor x = rand({1, 3, 6, 6});
  const Tensor y = layer(x.contiguous(MemoryFormat::ChannelsLast));
  EXPECT_EQ(y.suggest_memory_format(), MemoryFormat::ChannelsLast);
  EXPECT_EQ(values(y), values(layer(x)));
}

TEST(ChannelsLast, PoolsAndUnaryOpsKeepTheFormat) {
  manual_seed(3);
  expect_same_in_both_layouts([](const Tensor& x) { return max_pool2d(x); }, {2, 3, 8, 8},
                              "max_pool2d");
  expect_same_in_both_layouts(
      [](const Tensor& x) { return avg_pool2d(x, {.kernel = {3, 3}, .padding = {1, 1}}); },
      {2, 3, 7, 7}, "avg_pool2d");
  expect_same_in_both_layouts([](const Tensor& x) { return adaptive_avg_pool2d(x, {2, 3}); },
                              {2, 3, 7, 7}, "adaptive_avg_pool2d");
  expect_same_in_both_layouts([](const Tensor& x) { return relu(x); }, {2, 3, 4, 5}, "relu");
  expect_same_in_both_layouts([](const Tensor& x) { return gelu(x); }, {2, 3, 4, 5}, "gelu");
  expect_same_in_both_layouts([](const Tensor& x) { return sigmoid(x); }, {2, 3, 4, 5},
                              "sigmoid");
}

// A small CNN run channels-last from its input computes what it computes row-major.
TEST(ChannelsLast, ACnnTrainsTheSameFromAChannelsLastInput) {
  manual_seed(4);
  auto make = [] {
    manual_seed(5);
    return nn::Sequential{nn::Conv2d(3, 8, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2),
                          nn::Conv2d(8, 8, 3, {.padding = 1}), nn::ReLU(),
                          nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(8, 4)};
  };
  nn::Sequential a = make(), b = make();
  const Tensor x = rand({4, 3, 8, 8});
  const Tensor target = Tensor::from_vector<int64_t>({0, 3, 1, 2}, {4});
  cross_entropy(a(x), target).backward();
  cross_entropy(b(x.contiguous(MemoryFormat::ChannelsLast)), target).backward();
  const auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(values(pb[i].grad()), values(pa[i].grad())) << "parameter " << i;
  }
}

// cuDNN reads and writes NHWC (Note [Channels-last convolutions]): the same values and
// gradients as the CPU, the output channels-last, the weight's gradient row-major;
// float32 and float16.
TEST(ChannelsLast, CudnnConvolutionsReadAndWriteNhwc) {
  EMBER_SKIP_WITHOUT_GPU();
  manual_seed(6);
  for (DType dt : {kFloat32, kFloat16}) {
    const Tensor x = (rand({2, 8, 9, 9}) - 0.5).to(dt), w = (rand({16, 8, 3, 3}) - 0.5).to(dt);
    auto run = [&](Device device) {
      Tensor xl = x.to(device).contiguous(MemoryFormat::ChannelsLast).detach().requires_grad_();
      Tensor wl = w.to(device).detach().requires_grad_();
      Tensor y = conv2d(xl, wl, Tensor(), {.stride = {2, 2}, .padding = {1, 1}});
      EXPECT_EQ(y.suggest_memory_format(), MemoryFormat::ChannelsLast);
      y.sum().backward();
      EXPECT_TRUE(wl.grad().is_contiguous());
      return std::vector<Tensor>{y.cpu(), xl.grad().cpu(), wl.grad().cpu()};
    };
    const auto c = run(Device::cpu()), g = run(Device::cuda());
    const double tol = dt == kFloat16 ? 8e-3 : 1e-4;
    for (size_t i = 0; i < c.size(); ++i) {
      EXPECT_TRUE(ember::testing::allclose_to_largest(g[i], c[i], tol)) << i << " " << dt;
    }
  }
}

}  // namespace
