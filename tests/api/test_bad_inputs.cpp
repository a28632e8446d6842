// The bad-input table of the public API: every op of core/ops.h, the tensor methods and
// factories, and the layers and losses, called with wrong shapes, wrong dtypes, a CUDA
// device in a CPU-only build, empty tensors and non-contiguous views. A bad call must throw
// its typed error naming the op and the offending values; a valid call with an empty
// tensor or a view must give what the contiguous copy gives. After every row the library
// still works, no autograd node or tensor outlives the call, and the CPU pool holds no
// more than before.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

#include <ember/ember.h>

#include "support/error_table.h"

namespace {

using namespace ember;

using ember::testing::Expect;
using ember::testing::expect_name;
using ember::testing::is_expected;
using ember::testing::Row;
using ember::testing::type_of;

// Every tensor a row makes with requires_grad, so the row can check that nothing (a node
// left on the tape, a cache) keeps one alive after the call.
std::vector<std::weak_ptr<TensorImpl>>& tracked() {
  static std::vector<std::weak_ptr<TensorImpl>> t;
  return t;
}

Tensor f(const Shape& s) { return randn(s); }
Tensor g(const Shape& s) {
  Tensor t = randn(s).requires_grad_();
  tracked().push_back(t.impl_ptr());
  return t;
}
Tensor typed(const Shape& s, DType dt) { return ones(s).to(dt); }
Tensor labels(const std::vector<int64_t>& v) {
  return Tensor::from_vector<int64_t>(v, {static_cast<int64_t>(v.size())});
}
// 2 MiB, so that it comes from the CPU pool rather than from malloc.
Tensor big() { return randn({512, 1024}); }

// Throws unless `got` has `want`'s shape and dtype and (to 1e-5) its values, NaNs alike.
void check_same(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape() || got.dtype() != want.dtype()) {
    throw std::runtime_error("result " + shape_str(got.shape()) + " " + dtype_name(got.dtype()) +
                             ", expected " + shape_str(want.shape()) + " " +
                             dtype_name(want.dtype()));
  }
  const auto a = got.to(kFloat64).contiguous().to_vector<double>();
  const auto b = want.to(kFloat64).contiguous().to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (!(std::fabs(a[i] - b[i]) <= 1e-5 + 1e-5 * std::fabs(b[i]))) {
      throw std::runtime_error("element " + std::to_string(i) + " is " + std::to_string(a[i]) +
                               ", expected " + std::to_string(b[i]));
    }
  }
}

// A valid call on a view gives what it gives on the view's contiguous copy.
Row on_view(const std::string& name, std::function<Tensor()> make_view,
            std::function<Tensor(const Tensor&)> op) {
  return {name, Expect::None, {}, [make_view, op] {
            const Tensor v = make_view();
            if (v.is_contiguous() && v.numel() > 1)
              throw std::runtime_error("the view is contiguous");
            check_same(op(v), op(v.contiguous()));
          }};
}

// A valid call on an empty tensor gives `want`.
Row on_empty(const std::string& name, std::function<Tensor()> call, std::function<Tensor()> want) {
  return {name, Expect::None, {}, [call, want] { check_same(call(), want()); }};
}

// Non-contiguous [4, 3] views: a transpose (strides [1, 4]), every other column (stride
// 2), and a column expanded (stride 0).
Tensor tr() { return f({3, 4}).t(); }
Tensor every_other() { return f({4, 6}).slice(1, 0, 6, 2); }
Tensor bcast_col() { return f({4, 1}).expand({4, 3}); }
Tensor nchw_view() { return f({2, 5, 6, 3}).permute({0, 3, 1, 2}); }  // [2, 3, 5, 6] channels-last

std::vector<Row> table() {
  using E = Expect;
  std::vector<Row> rows;
  const auto add_row = [&](std::string name, E e, std::vector<std::string> parts,
                           std::function<void()> fn) {
    rows.push_back({std::move(name), e, std::move(parts), std::move(fn)});
  };

  // --- elementwise: shapes that do not broadcast -------------------------------------------
  using Binary = Tensor (*)(const Tensor&, const Tensor&);
  const std::vector<std::pair<const char*, Binary>> binaries = {
      {"add", add},         {"sub", sub},         {"mul", mul}, {"div", div},
      {"maximum", maximum}, {"minimum", minimum}, {"eq", eq},   {"ne", ne},
      {"lt", lt},           {"le", le},           {"gt", gt},   {"ge", ge}};
  for (const auto& [name, op] : binaries) {
    add_row(std::string(name) + " [2, 3] with [4]", E::Shape, {name, "[2, 3]", "[4]"}, [op = op] {
      op(g({2, 3}), f({4}));
    });
  }
  add_row("add big with a mismatch", E::Shape, {"add", "[512, 1024]", "[3, 1024]"}, [] {
    add(big(), f({3, 1024}));
  });
  add_row("mul [2, 3, 4] with [3, 3, 4]", E::Shape, {"mul", "[2, 3, 4]", "[3, 3, 4]"}, [] {
    mul(f({2, 3, 4}), g({3, 3, 4}));
  });
  // --- elementwise: dtypes ------------------------------------------------------------------
  add_row("add float16 with float32", E::DType, {"add", "float16", "float32"},
          [] { add(typed({2}, kFloat16), f({2})); });
  add_row("mul bfloat16 with float32", E::DType, {"mul", "bfloat16", "float32"},
          [] { mul(f({2}), typed({2}, kBFloat16)); });
  add_row("sub float64 with float32", E::DType, {"sub", "float64", "float32"},
          [] { sub(typed({2}, kFloat64), f({2})); });
  add_row("div int64 with float32", E::DType, {"div", "int64", "float32"},
          [] { div(typed({2}, kInt64), f({2})); });
  for (const char* name : {"exp", "log", "sqrt", "neg", "abs"}) {
    add_row(std::string(name) + " of bool", E::DType, {name, "bool"}, [name = std::string(name)] {
      const Tensor b = typed({3}, kBool);
      if (name == "exp") exp(b);
      if (name == "log") log(b);
      if (name == "sqrt") sqrt(b);
      if (name == "neg") neg(b);
      if (name == "abs") abs(b);
    });
  }
  add_row("exp of int64", E::DType, {"exp", "int64"}, [] { exp(typed({3}, kInt64)); });
  add_row("log of int32", E::DType, {"log", "int32"}, [] { log(typed({3}, kInt32)); });
  add_row("pow of int64", E::DType, {"pow", "int64"}, [] { pow(typed({3}, kInt64), 2.0); });
  add_row("clamp with min > max", E::Value, {"clamp", "2", "1"}, [] { clamp(g({3}), 2.0, 1.0); });
  add_row("clamp of bool", E::DType, {"clamp", "bool"}, [] { clamp(typed({3}, kBool), 0.0, 1.0); });
  add_row("add scalar to bool", E::DType, {"add", "bool"}, [] { add(typed({3}, kBool), 1.5); });
  add_row("mul int64 by a fraction", E::DType, {"mul", "0.5", "int64"},
          [] { mul(typed({3}, kInt64), 0.5); });
  add_row("add undefined", E::Error, {"add", "undefined"}, [] { add(Tensor(), f({2})); });
  add_row("exp undefined", E::Error, {"exp", "undefined"}, [] { exp(Tensor()); });
  add_row("broadcast_shapes [2] and [3]", E::Shape, {"myop", "[2]", "[3]"},
          [] { broadcast_shapes({2}, {3}, "myop"); });
  add_row("sum_to [2, 3] to [4]", E::Shape, {"sum_to", "[2, 3]", "[4]"}, [] {
    sum_to(f({2, 3}), {4});
  });

  // --- activations ---------------------------------------------------------------------------
  add_row("relu of int64", E::DType, {"relu", "int64"}, [] { relu(typed({3}, kInt64)); });
  add_row("leaky_relu of bool", E::DType, {"leaky_relu", "bool"},
          [] { leaky_relu(typed({3}, kBool)); });
  add_row("sigmoid of int32", E::DType, {"sigmoid", "int32"}, [] { sigmoid(typed({3}, kInt32)); });
  add_row("tanh of uint8", E::DType, {"tanh", "uint8"}, [] { tanh(typed({3}, kUInt8)); });
  add_row("gelu of int64", E::DType, {"gelu", "int64"}, [] { gelu(typed({3}, kInt64)); });
  add_row("softmax dim 2 of [2, 3]", E::Shape, {"softmax", "2", "rank 2"}, [] {
    softmax(g({2, 3}), 2);
  });
  add_row("softmax dim -3 of [2, 3]", E::Shape, {"softmax", "-3", "rank 2"}, [] {
    softmax(g({2, 3}), -3);
  });
  add_row("log_softmax dim 5 of [4]", E::Shape, {"log_softmax", "5", "rank 1"},
          [] { log_softmax(g({4}), 5); });
  add_row("softmax of int64", E::DType, {"softmax", "int64"}, [] {
    softmax(typed({2, 3}, kInt64), 1);
  });
  add_row("log_softmax of bool", E::DType, {"log_softmax", "bool"}, [] {
    log_softmax(typed({2, 3}, kBool), 1);
  });
  add_row("softmax of a scalar over dim 1", E::Shape, {"softmax", "1"},
          [] { softmax(scalar_tensor(1.0), 1); });

  // --- reductions --------------------------------------------------------------------------
  add_row("sum over dim 3 of [2, 3]", E::Shape, {"sum", "3", "rank 2"}, [] {
    sum(g({2, 3}), {3});
  });
  add_row("sum over dims 0 and 0", E::Shape, {"sum", "dimension 0", "[0, 0]"}, [] {
    sum(g({2, 3}), {0, 0});
  });
  add_row("mean over dim -3 of [2, 3]", E::Shape, {"mean", "-3", "rank 2"}, [] {
    mean(g({2, 3}), {-3});
  });
  add_row("mean of int64", E::DType, {"mean", "int64"}, [] { mean(typed({2, 3}, kInt64)); });
  add_row("mean over a dim of bool", E::DType, {"mean", "bool"}, [] {
    mean(typed({2, 3}, kBool), {1});
  });
  add_row("max of an empty tensor", E::Shape, {"max", "[0, 3]", "empty"}, [] { max(f({0, 3})); });
  add_row("min of an empty tensor", E::Shape, {"min", "[0]", "empty"}, [] { min(f({0})); });
  add_row("max over an empty dim", E::Shape, {"max", "[2, 0]", "empty"}, [] { max(f({2, 0}), 1); });
  add_row("argmax over an empty dim", E::Shape, {"argmax", "[0, 3]", "empty"}, [] {
    argmax(f({0, 3}), 0);
  });
  add_row("max over dim 2 of [2, 3]", E::Shape, {"max", "2", "rank 2"}, [] { max(g({2, 3}), 2); });
  add_row("min over dim -3 of [2, 3]", E::Shape, {"min", "-3", "rank 2"}, [] {
    min(g({2, 3}), -3);
  });
  add_row("argmax over dim 2 of [2, 3]", E::Shape, {"argmax", "2", "rank 2"}, [] {
    argmax(f({2, 3}), 2);
  });
  add_row("argmin over dim 1 of [4]", E::Shape, {"argmin", "1", "rank 1"},
          [] { argmin(f({4}), 1); });
  rows.push_back({"max over a dim of bool is valid", E::None, {}, [] {
                    const Tensor b = gt(f({2, 3}), zeros({2, 3}));
                    check_same(max(b, 1).values.to(kInt64), max(b.to(kInt64), 1).values);
                  }});

  // --- linear algebra ----------------------------------------------------------------------
  add_row("matmul [2, 3] @ [4, 5]", E::Shape, {"matmul", "[2, 3]", "[4, 5]"}, [] {
    matmul(g({2, 3}), f({4, 5}));
  });
  add_row("matmul [3] @ [4]", E::Shape, {"matmul", "[3]", "[4]"}, [] { matmul(f({3}), g({4})); });
  add_row("matmul of a scalar", E::Shape, {"matmul", "[]", "[3]"},
          [] { matmul(scalar_tensor(2.0), f({3})); });
  add_row("matmul [2, 2, 3] @ [3, 3, 4]", E::Shape, {"matmul", "[2, 2, 3]", "[3, 3, 4]"}, [] {
    matmul(f({2, 2, 3}), f({3, 3, 4}));
  });
  add_row("matmul [2, 3, 4] @ [5, 6]", E::Shape, {"matmul", "[2, 3, 4]", "[5, 6]"}, [] {
    matmul(f({2, 3, 4}), f({5, 6}));
  });
  add_row("matmul big @ [3, 5]", E::Shape, {"matmul", "[512, 1024]", "[3, 5]"}, [] {
    matmul(big(), f({3, 5}));
  });
  add_row("matmul float32 @ float64", E::DType, {"matmul", "float32", "float64"}, [] {
    matmul(f({2, 3}), typed({3, 2}, kFloat64));
  });
  add_row("matmul float16 @ float32", E::DType, {"matmul", "float16", "float32"}, [] {
    matmul(typed({2, 3}, kFloat16), f({3, 2}));
  });
  add_row("matmul int64 @ int64", E::DType, {"matmul", "int64"}, [] {
    matmul(typed({2, 3}, kInt64), typed({3, 2}, kInt64));
  });
  add_row("linear weight [3, 5] for input [2, 4]", E::Shape, {"linear", "[2, 4]", "[3, 5]"}, [] {
    linear(g({2, 4}), g({3, 5}));
  });
  add_row("linear bias [4] for weight [3, 4]", E::Shape, {"linear", "bias [4]", "[3]"}, [] {
    linear(f({2, 4}), g({3, 4}), g({4}));
  });
  add_row("linear weight of rank 1", E::Shape, {"linear", "[4]"}, [] {
    linear(f({2, 4}), f({4}));
  });
  add_row("linear int64 input", E::DType, {"linear", "int64"}, [] {
    linear(typed({2, 4}, kInt64), f({3, 4}));
  });
  add_row("linear float16 input, float32 weight", E::DType, {"linear", "float16", "float32"}, [] {
    linear(typed({2, 4}, kFloat16), f({3, 4}));
  });

  // --- joining and splitting -----------------------------------------------------------------
  add_row("cat of nothing", E::Value, {"cat", "empty"}, [] { cat({}); });
  add_row("cat [2, 3] and [2, 4] along 0", E::Shape, {"cat", "[2, 3]", "[2, 4]"}, [] {
    cat({g({2, 3}), f({2, 4})}, 0);
  });
  add_row("cat along dim 2 of rank 2", E::Shape, {"cat", "2"}, [] {
    cat({f({2, 3}), f({2, 3})}, 2);
  });
  add_row("cat float32 and int64", E::DType, {"cat", "float32", "int64"}, [] {
    cat({f({2}), typed({2}, kInt64)});
  });
  add_row("cat ranks 1 and 2", E::Shape, {"cat", "[2]", "[2, 2]"}, [] {
    cat({f({2}), f({2, 2})});
  });
  add_row("cat big with a mismatch", E::Shape, {"cat", "[512, 1024]", "[2, 3]"}, [] {
    cat({big(), f({2, 3})});
  });
  add_row("stack of nothing", E::Value, {"stack", "empty"}, [] { stack({}); });
  add_row("stack [2, 3] and [3, 2]", E::Shape, {"stack", "[2, 3]", "[3, 2]"}, [] {
    stack({g({2, 3}), f({3, 2})});
  });
  add_row("stack along dim 3 of rank 1", E::Shape, {"stack", "3"}, [] {
    stack({f({2}), f({2})}, 3);
  });
  add_row("stack float32 and float64", E::DType, {"stack", "float32", "float64"}, [] {
    stack({f({2}), typed({2}, kFloat64)});
  });
  add_row("split sizes 2 + 2 of 5", E::Shape, {"split", "4", "5", "[5]"}, [] {
    split(f({5}), {2, 2});
  });
  add_row("split with a negative size", E::Shape, {"split", "-1"}, [] { split(f({5}), {6, -1}); });
  add_row("split along dim 1 of rank 1", E::Shape, {"split", "1"}, [] { split(f({5}), {5}, 1); });
  add_row("chunk into 0", E::Value, {"chunk", "0"}, [] { chunk(f({5}), 0); });
  add_row("chunk along dim 2 of rank 1", E::Shape, {"chunk", "2"}, [] { chunk(f({5}), 2, 2); });

  // --- embedding -----------------------------------------------------------------------------
  add_row("embedding index 10 of 10 rows", E::Shape, {"embedding", "index 10", "[10, 4]"}, [] {
    embedding(g({10, 4}), labels({1, 10}));
  });
  add_row("embedding index -1", E::Shape, {"embedding", "index -1", "[10, 4]"}, [] {
    embedding(g({10, 4}), labels({-1, 2}));
  });
  add_row("embedding float indices", E::DType, {"embedding", "float32"}, [] {
    embedding(g({10, 4}), f({3}));
  });
  add_row("embedding weight of rank 1", E::Shape, {"embedding", "[10]"},
          [] { embedding(f({10}), labels({1})); });
  add_row("embedding int64 weight", E::DType, {"embedding", "int64"}, [] {
    embedding(typed({10, 4}, kInt64), labels({1}));
  });
  add_row("embedding padding_idx 12 of 10", E::Value, {"embedding", "12", "10"}, [] {
    embedding(g({10, 4}), labels({1}), 12);
  });

  // --- losses --------------------------------------------------------------------------------
  add_row("cross_entropy float targets", E::DType, {"cross_entropy", "float32"}, [] {
    cross_entropy(g({2, 3}), f({2}));
  });
  add_row("cross_entropy 3 targets for 2 rows", E::Shape, {"cross_entropy", "[2, 3]", "[3]"}, [] {
    cross_entropy(g({2, 3}), labels({0, 1, 2}));
  });
  add_row("cross_entropy label 3 of 3 classes", E::Shape,
          {"cross_entropy", "target[1] = 3", "[0, 3)"}, [] {
            cross_entropy(g({2, 3}), labels({0, 3}));
          });
  add_row("cross_entropy label -2", E::Shape, {"cross_entropy", "target[0] = -2"}, [] {
    cross_entropy(g({2, 3}), labels({-2, 0}));
  });
  add_row("cross_entropy int64 logits", E::DType, {"cross_entropy", "int64"}, [] {
    cross_entropy(typed({2, 3}, kInt64), labels({0, 1}));
  });
  add_row("cross_entropy label_smoothing 1.5", E::Value, {"cross_entropy", "1.5"}, [] {
    cross_entropy(g({2, 3}), labels({0, 1}), {.label_smoothing = 1.5});
  });
  add_row("cross_entropy weight [2] for 3 classes", E::Shape, {"cross_entropy", "[2]", "3"}, [] {
    cross_entropy(g({2, 3}), labels({0, 1}), {.weight = f({2})});
  });
  add_row("cross_entropy float64 weight", E::DType, {"cross_entropy", "float64"}, [] {
    cross_entropy(g({2, 3}), labels({0, 1}), {.weight = typed({3}, kFloat64)});
  });
  add_row("nll_loss 1 target for 2 rows", E::Shape, {"nll_loss", "[2, 3]", "[1]"}, [] {
    nll_loss(g({2, 3}), labels({0}));
  });
  add_row("nll_loss label 7", E::Shape, {"nll_loss", "target[0] = 7"}, [] {
    nll_loss(g({2, 3}), labels({7, 0}));
  });
  add_row("nll_loss float targets", E::DType, {"nll_loss", "float32"}, [] {
    nll_loss(g({2, 3}), f({2}));
  });
  add_row("mse_loss [2, 3] vs [3, 2]", E::Shape, {"mse_loss", "[2, 3]", "[3, 2]"}, [] {
    mse_loss(g({2, 3}), f({3, 2}));
  });
  add_row("mse_loss float32 vs float64", E::DType, {"mse_loss", "float32", "float64"},
          [] { mse_loss(g({2}), typed({2}, kFloat64)); });
  add_row("mse_loss int64", E::DType, {"mse_loss", "int64"},
          [] { mse_loss(typed({2}, kInt64), typed({2}, kInt64)); });
  add_row("l1_loss [4] vs [5]", E::Shape, {"l1_loss", "[4]", "[5]"},
          [] { l1_loss(g({4}), f({5})); });
  add_row("l1_loss float16 vs float32", E::DType, {"l1_loss", "float16", "float32"},
          [] { l1_loss(typed({2}, kFloat16), f({2})); });
  add_row("binary_cross_entropy [4] vs [2, 2]", E::Shape, {"binary_cross_entropy", "[4]", "[2, 2]"},
          [] {
            binary_cross_entropy(sigmoid(g({4})), rand({2, 2}));
          });
  add_row("binary_cross_entropy int64 targets", E::DType, {"binary_cross_entropy", "int64"},
          [] { binary_cross_entropy(rand({2}), typed({2}, kInt64)); });
  add_row("binary_cross_entropy input outside [0, 1]", E::Value,
          {"binary_cross_entropy", "input", "between 0 and 1", "1 of 3"},
          [] { binary_cross_entropy(full({3}, 0.5) + arange(0, 3) * 0.3, full({3}, 1.0)); });
  add_row("binary_cross_entropy target outside [0, 1]", E::Value,
          {"binary_cross_entropy", "target", "between 0 and 1"},
          [] { binary_cross_entropy(full({3}, 0.5), full({3}, 2.0)); });
  add_row("bce_with_logits [3] vs [4]", E::Shape,
          {"binary_cross_entropy_with_logits", "[3]", "[4]"},
          [] { binary_cross_entropy_with_logits(g({3}), rand({4})); });
  add_row("bce_with_logits int64 targets", E::DType, {"binary_cross_entropy_with_logits", "int64"},
          [] { binary_cross_entropy_with_logits(g({3}), typed({3}, kInt64)); });
  add_row("bce_with_logits pos_weight [3] for [2, 4]", E::Shape,
          {"binary_cross_entropy_with_logits", "[3]", "[2, 4]"}, [] {
            binary_cross_entropy_with_logits(g({2, 4}), rand({2, 4}),
                                             BCEWithLogitsOptions{.pos_weight = f({3})});
          });
  add_row("CrossEntropy layer label 5 of 3", E::Shape, {"5", "3"}, [] {
    loss::CrossEntropy()(g({2, 3}), labels({5, 0}));
  });
  add_row("MSE layer [2] vs [3]", E::Shape, {"[2]", "[3]"}, [] { loss::MSE()(g({2}), f({3})); });
  add_row("BCEWithLogits layer [2] vs [3, 1]", E::Shape, {"[2]", "[3, 1]"}, [] {
    loss::BCEWithLogits()(g({2}), rand({3, 1}));
  });
  rows.push_back({"BCEWithLogits layer [N] vs [N, 1] targets is valid (as Keras)", E::None, {}, [] {
                    const Tensor x = f({2}), t = rand({2, 1});
                    check_same(loss::BCEWithLogits()(x, t),
                               binary_cross_entropy_with_logits(x, t.reshape({2})));
                  }});
  add_row("NLL layer float targets", E::DType, {"float32"}, [] { loss::NLL()(g({2, 3}), f({2})); });

  // --- dropout ---------------------------------------------------------------------------------
  add_row("dropout p 1.5", E::Value, {"dropout", "1.5"}, [] { dropout(g({3}), 1.5); });
  add_row("dropout p -0.1", E::Value, {"dropout", "-0.1"}, [] { dropout(g({3}), -0.1); });
  add_row("dropout of int64", E::DType, {"dropout", "int64"},
          [] { dropout(typed({3}, kInt64), 0.5); });
  add_row("Dropout layer p 2", E::Value, {"Dropout", "2"}, [] { nn::Dropout(2.0); });

  // --- convolution -------------------------------------------------------------------------------
  add_row("conv2d input of rank 3", E::Shape, {"conv2d", "[3, 8, 8]"}, [] {
    conv2d(g({3, 8, 8}), g({4, 3, 3, 3}));
  });
  add_row("conv2d 4 channels for weight of 3", E::Shape, {"conv2d", "[1, 4, 8, 8]", "[4, 3, 3, 3]"},
          [] {
            conv2d(g({1, 4, 8, 8}), g({4, 3, 3, 3}));
          });
  add_row("conv2d weight of rank 3", E::Shape, {"conv2d", "[4, 3, 3]"}, [] {
    conv2d(f({1, 3, 8, 8}), f({4, 3, 3}));
  });
  add_row("conv2d bias [5] for 4 outputs", E::Shape, {"conv2d", "[5]", "4"}, [] {
    conv2d(f({1, 3, 8, 8}), f({4, 3, 3, 3}), f({5}));
  });
  add_row("conv2d kernel larger than the input", E::Shape,
          {"conv2d", "[1, 3, 2, 2]", "[4, 3, 3, 3]"}, [] {
            conv2d(f({1, 3, 2, 2}), f({4, 3, 3, 3}));
          });
  add_row("conv2d stride 0", E::Value, {"conv2d", "stride", "0"}, [] {
    conv2d(f({1, 3, 8, 8}), f({4, 3, 3, 3}), Tensor(), {.stride = {0, 1}});
  });
  add_row("conv2d padding -1", E::Value, {"conv2d", "padding", "-1"}, [] {
    conv2d(f({1, 3, 8, 8}), f({4, 3, 3, 3}), Tensor(), {.padding = {-1, 0}});
  });
  add_row("conv2d dilation 0", E::Value, {"conv2d", "dilation", "0"}, [] {
    conv2d(f({1, 3, 8, 8}), f({4, 3, 3, 3}), Tensor(), {.dilation = {1, 0}});
  });
  add_row("conv2d groups 2 of 3 channels", E::Shape, {"conv2d", "groups", "2"}, [] {
    conv2d(f({1, 3, 8, 8}), f({4, 1, 3, 3}), Tensor(), {.groups = 2});
  });
  add_row("conv2d groups 0", E::Value, {"conv2d", "groups", "0"}, [] {
    conv2d(f({1, 3, 8, 8}), f({4, 3, 3, 3}), Tensor(), {.groups = 0});
  });
  add_row("conv2d int64 input", E::DType, {"conv2d", "int64"}, [] {
    conv2d(typed({1, 3, 8, 8}, kInt64), f({4, 3, 3, 3}));
  });
  add_row("conv2d float16 input, float32 weight", E::DType, {"conv2d", "float16", "float32"}, [] {
    conv2d(typed({1, 3, 8, 8}, kFloat16), f({4, 3, 3, 3}));
  });
  add_row("conv2d same with stride 2", E::Value, {"conv2d", "same", "2"}, [] {
    conv2d(f({1, 3, 8, 8}), f({4, 3, 3, 3}), Tensor(), {.stride = {2, 2}, .same = true});
  });
  add_row("conv2d big input, wrong channels", E::Shape, {"conv2d", "[8, 16, 64, 64]"}, [] {
    conv2d(f({8, 16, 64, 64}), f({4, 3, 3, 3}));
  });
  add_row("Conv2d layer 4 channels for 3", E::Shape, {"Conv2d", "[1, 4, 8, 8]", "3"}, [] {
    nn::Conv2d(3, 8, 3)(g({1, 4, 8, 8}));
  });
  add_row("Conv2d layer 0 in channels", E::Value, {"Conv2d", "0"}, [] { nn::Conv2d(0, 8, 3); });
  add_row("Conv2d layer groups 3 of 4 channels", E::Value, {"Conv2d", "groups", "3"},
          [] { nn::Conv2d(4, 6, 3, {.groups = 3}); });
  add_row("Conv2d layer kernel 0", E::Value, {"Conv2d", "0"}, [] { nn::Conv2d(3, 8, 0); });

  // --- pooling -----------------------------------------------------------------------------------
  add_row("max_pool2d of rank 2", E::Shape, {"max_pool2d", "[4, 4]"}, [] {
    max_pool2d(g({4, 4}));
  });
  add_row("max_pool2d kernel 0", E::Value, {"max_pool2d", "kernel", "0"}, [] {
    max_pool2d(f({1, 1, 4, 4}), {.kernel = {0, 2}});
  });
  add_row("max_pool2d stride -1", E::Value, {"max_pool2d", "stride", "-1"}, [] {
    max_pool2d(f({1, 1, 4, 4}), {.stride = {-1, 1}});
  });
  add_row("max_pool2d padding 2 for kernel 2", E::Value, {"max_pool2d", "padding", "2"}, [] {
    max_pool2d(f({1, 1, 4, 4}), {.padding = {2, 0}});
  });
  add_row("max_pool2d kernel larger than the input", E::Shape, {"max_pool2d", "[1, 1, 2, 2]"}, [] {
    max_pool2d(f({1, 1, 2, 2}), {.kernel = {3, 3}});
  });
  add_row("max_pool2d of int64", E::DType, {"max_pool2d", "int64"}, [] {
    max_pool2d(typed({1, 1, 4, 4}, kInt64));
  });
  add_row("avg_pool2d of rank 5", E::Shape, {"avg_pool2d", "[1, 1, 1, 4, 4]"}, [] {
    avg_pool2d(g({1, 1, 1, 4, 4}));
  });
  add_row("avg_pool2d kernel -2", E::Value, {"avg_pool2d", "kernel", "-2"}, [] {
    avg_pool2d(f({1, 1, 4, 4}), {.kernel = {-2, 2}});
  });
  add_row("avg_pool2d of bool", E::DType, {"avg_pool2d", "bool"}, [] {
    avg_pool2d(typed({1, 1, 4, 4}, kBool));
  });
  add_row("adaptive_avg_pool2d output 0", E::Value, {"adaptive_avg_pool2d", "0"}, [] {
    adaptive_avg_pool2d(f({1, 1, 4, 4}), {0, 2});
  });
  add_row("adaptive_avg_pool2d of rank 3", E::Shape, {"adaptive_avg_pool2d", "[1, 4, 4]"}, [] {
    adaptive_avg_pool2d(g({1, 4, 4}), {2, 2});
  });
  add_row("adaptive_avg_pool2d of int64", E::DType, {"adaptive_avg_pool2d", "int64"}, [] {
    adaptive_avg_pool2d(typed({1, 1, 4, 4}, kInt64), {2, 2});
  });
  add_row("MaxPool2d layer of rank 2", E::Shape, {"[4, 4]"}, [] { nn::MaxPool2d(2)(g({4, 4})); });
  add_row("AvgPool2d layer kernel 0", E::Value, {"AvgPool2d", "0"}, [] { nn::AvgPool2d(0); });
  add_row("AdaptiveAvgPool2d layer output -1", E::Value, {"AdaptiveAvgPool2d", "-1"},
          [] { nn::AdaptiveAvgPool2d(-1); });

  // --- normalization -----------------------------------------------------------------------------
  add_row("batch_norm running stats [4] for 3 channels", E::Shape, {"batch_norm", "[4]", "3"}, [] {
    batch_norm(g({2, 3}), zeros({4}), ones({4}), Tensor(), Tensor(), false);
  });
  add_row("batch_norm weight [2] for 3 channels", E::Shape, {"batch_norm", "[2]", "3"}, [] {
    batch_norm(g({2, 3}), zeros({3}), ones({3}), f({2}), Tensor(), true);
  });
  add_row("batch_norm of rank 1", E::Shape, {"batch_norm", "[3]"},
          [] { batch_norm(g({3}), Tensor(), Tensor(), Tensor(), Tensor(), true); });
  add_row("batch_norm one value per channel in training", E::Value, {"batch_norm", "[1, 3]"}, [] {
    batch_norm(g({1, 3}), zeros({3}), ones({3}), Tensor(), Tensor(), true);
  });
  add_row("batch_norm eval without running stats", E::Value, {"batch_norm", "running"}, [] {
    batch_norm(g({2, 3}), Tensor(), Tensor(), Tensor(), Tensor(), false);
  });
  add_row("batch_norm of int64", E::DType, {"batch_norm", "int64"}, [] {
    batch_norm(typed({2, 3}, kInt64), zeros({3}), ones({3}), Tensor(), Tensor(), true);
  });
  add_row("batch_norm negative eps", E::Value, {"batch_norm", "eps", "-1"}, [] {
    batch_norm(g({2, 3}), zeros({3}), ones({3}), Tensor(), Tensor(), true, 0.1, -1.0);
  });
  add_row("layer_norm over [5] of [2, 4]", E::Shape, {"layer_norm", "[5]", "[2, 4]"}, [] {
    layer_norm(g({2, 4}), {5});
  });
  add_row("layer_norm over more dims than the input has", E::Shape,
          {"layer_norm", "[2, 2, 4]", "[4]"}, [] {
            layer_norm(g({4}), {2, 2, 4});
          });
  add_row("layer_norm weight [3] for [4]", E::Shape, {"layer_norm", "[3]", "[4]"}, [] {
    layer_norm(g({2, 4}), {4}, f({3}));
  });
  add_row("layer_norm of int64", E::DType, {"layer_norm", "int64"}, [] {
    layer_norm(typed({2, 4}, kInt64), {4});
  });
  add_row("layer_norm float64 weight", E::DType, {"layer_norm", "float64"}, [] {
    layer_norm(g({2, 4}), {4}, typed({4}, kFloat64));
  });
  add_row("BatchNorm2d layer of rank 2", E::Shape, {"BatchNorm2d", "[2, 3]"}, [] {
    nn::BatchNorm2d(3)(g({2, 3}));
  });
  add_row("BatchNorm2d layer 4 channels for 3", E::Shape, {"BatchNorm2d", "[2, 4, 3, 3]", "3"}, [] {
    nn::BatchNorm2d(3)(g({2, 4, 3, 3}));
  });
  add_row("BatchNorm1d layer of rank 4", E::Shape, {"BatchNorm1d", "[2, 3, 4, 4]"}, [] {
    nn::BatchNorm1d(3)(g({2, 3, 4, 4}));
  });
  add_row("BatchNorm1d layer 0 features", E::Value, {"BatchNorm1d", "0"},
          [] { nn::BatchNorm1d(0); });
  add_row("LayerNorm layer [4] for [2, 5]", E::Shape, {"LayerNorm", "[2, 5]", "[*, 4]"}, [] {
    nn::LayerNorm({4})(g({2, 5}));
  });

  // --- layers
  // --------------------------------------------------------------------------------------
  add_row("Linear(4, 3) of [2, 5]", E::Shape, {"Linear(in_features=4, out_features=3)", "[2, 5]"},
          [] {
            nn::Linear(4, 3)(g({2, 5}));
          });
  add_row("Linear(4, 3) of a scalar", E::Shape, {"Linear(in_features=4, out_features=3)", "[]"},
          [] { nn::Linear(4, 3)(scalar_tensor(1.0)); });
  add_row("Linear(4, 3) of int64", E::DType, {"linear", "int64", "[2, 4]"}, [] {
    nn::Linear(4, 3)(typed({2, 4}, kInt64));
  });
  add_row("Linear(4, 3) of float64", E::DType, {"linear", "float64", "float32"}, [] {
    nn::Linear(4, 3)(typed({2, 4}, kFloat64));
  });
  add_row("Linear(-1, 3)", E::Value, {"Linear", "-1"}, [] { nn::Linear(-1, 3); });
  add_row("Linear(4, 3) to cuda", E::Device, {"cuda"}, [] { nn::Linear(4, 3).to(Device::cuda()); });
  add_row("Flatten(3) of [2, 3]", E::Shape, {"flatten", "3", "rank 2"}, [] {
    nn::Flatten(3)(g({2, 3}));
  });
  add_row("Softmax(2) of [2, 3]", E::Shape, {"softmax", "2", "rank 2"}, [] {
    nn::Softmax(2)(g({2, 3}));
  });
  add_row("LogSoftmax(-3) of [2, 3]", E::Shape, {"log_softmax", "-3", "rank 2"}, [] {
    nn::LogSoftmax(-3)(g({2, 3}));
  });
  add_row("ReLU of int64", E::DType, {"relu", "int64"}, [] { nn::ReLU()(typed({3}, kInt64)); });
  add_row("Sequential, second Linear of the wrong size", E::Shape,
          {"Linear(in_features=5, out_features=2)", "[2, 3]"}, [] {
            nn::Sequential{nn::Linear(4, 3), nn::ReLU(), nn::Linear(5, 2)}(g({2, 4}));
          });
  add_row("Embedding(10, 4) index 11", E::Shape, {"11", "10"},
          [] { nn::Embedding(10, 4)(labels({11})); });
  add_row("Embedding(10, 4) float indices", E::DType, {"float32"},
          [] { nn::Embedding(10, 4)(f({2})); });
  add_row("Embedding(0, 4)", E::Value, {"Embedding", "0"}, [] { nn::Embedding(0, 4); });
  add_row("LSTM(4, 8) input size 5", E::Shape, {"LSTM(4, 8)", "5"}, [] {
    nn::LSTM(4, 8)(g({3, 2, 5}));
  });
  add_row("LSTM(4, 8) input of rank 4", E::Shape, {"LSTM(4, 8)", "[3, 2, 4, 1]"}, [] {
    nn::LSTM(4, 8)(g({3, 2, 4, 1}));
  });
  add_row("LSTM(4, 8) h0 of the wrong batch", E::Shape, {"LSTM(4, 8)", "[1, 3, 8]"}, [] {
    nn::LSTM(4, 8).forward(g({3, 2, 4}), nn::LSTMState{f({1, 3, 8}), f({1, 3, 8})});
  });
  add_row("LSTM(4, 8) length 4 of 3 steps", E::Shape, {"LSTM(4, 8)", "4", "3"}, [] {
    nn::LSTM(4, 8).forward(g({3, 2, 4}), nn::LSTMState{}, {4, 2});
  });
  add_row("LSTM(4, 8) length 0", E::Shape, {"LSTM(4, 8)", "0"}, [] {
    nn::LSTM(4, 8).forward(g({3, 2, 4}), nn::LSTMState{}, {0, 2});
  });
  add_row("LSTM(4, 8) 3 lengths for a batch of 2", E::Shape, {"LSTM(4, 8)", "3", "2"}, [] {
    nn::LSTM(4, 8).forward(g({3, 2, 4}), nn::LSTMState{}, {1, 2, 3});
  });
  add_row("LSTM(4, 8) int64 input", E::DType, {"LSTM(4, 8)", "int64"}, [] {
    nn::LSTM(4, 8)(typed({3, 2, 4}, kInt64));
  });
  add_row("GRU(4, 8) input size 3", E::Shape, {"GRU(4, 8)", "3"}, [] {
    nn::GRU(4, 8)(g({3, 2, 3}));
  });
  add_row("GRU(4, 8) h0 of 2 layers", E::Shape, {"GRU(4, 8)", "[2, 2, 8]"}, [] {
    nn::GRU(4, 8).forward(g({3, 2, 4}), f({2, 2, 8}));
  });
  add_row("RNN(4, 8) nonlinearity sine", E::Value, {"RNN", "sine"},
          [] { nn::RNN(4, 8, {.nonlinearity = "sine"}); });
  add_row("RNN(4, 8) input of rank 1", E::Shape, {"RNN(4, 8)", "[4]"},
          [] { nn::RNN(4, 8)(g({4})); });
  add_row("LSTM(4, 8) dropout 1.5", E::Value, {"LSTM", "1.5"},
          [] { nn::LSTM(4, 8, {.num_layers = 2, .dropout = 1.5}); });
  add_row("LSTM(4, 0)", E::Value, {"LSTM", "0"}, [] { nn::LSTM(4, 0); });
  add_row("rnn with 3 weights for an LSTM", E::Value, {"rnn", "3"}, [] {
    rnn(f({3, 2, 4}), Tensor(), Tensor(), {f({32, 4}), f({32, 8}), f({32})}, {},
        {.mode = RnnMode::Lstm, .input_size = 4, .hidden_size = 8});
  });
  add_row("rnn weight_ih [32, 5] for input 4", E::Shape, {"rnn", "[32, 5]"}, [] {
    rnn(f({3, 2, 4}), Tensor(), Tensor(), {f({32, 5}), f({32, 8}), f({32}), f({32})}, {},
        {.mode = RnnMode::Lstm, .input_size = 4, .hidden_size = 8});
  });

  // --- tensor views, conversions and factories
  // ------------------------------------------------------
  add_row("view [2, 3] as [4]", E::Shape, {"view", "[2, 3]", "[4]"}, [] { g({2, 3}).view({4}); });
  add_row("view with two -1", E::Shape, {"view", "-1"}, [] { f({2, 3}).view({-1, -1}); });
  add_row("view of a transpose as flat", E::Shape, {"view", "[3, 2]"}, [] {
    f({2, 3}).t().view({6});
  });
  add_row("reshape [2, 3] to [5]", E::Shape, {"reshape", "[2, 3]", "[5]"}, [] {
    g({2, 3}).reshape({5});
  });
  add_row("reshape with -2", E::Shape, {"reshape", "-2"}, [] { f({2, 3}).reshape({-2, 3}); });
  add_row("transpose dims 0 and 2 of rank 2", E::Shape, {"transpose", "2"}, [] {
    g({2, 3}).transpose(0, 2);
  });
  add_row("t of rank 3", E::Shape, {"t", "[2, 3, 4]"}, [] { f({2, 3, 4}).t(); });
  add_row("permute with a repeated dim", E::Shape, {"permute", "0", "[0, 0]", "[2, 3]"}, [] {
    g({2, 3}).permute({0, 0});
  });
  add_row("permute with too few dims", E::Shape, {"permute", "[2, 3, 4]"}, [] {
    f({2, 3, 4}).permute({1, 0});
  });
  add_row("narrow past the end", E::Shape, {"narrow", "2", "3", "[4]"},
          [] { g({4}).narrow(0, 2, 3); });
  add_row("narrow negative length", E::Shape, {"narrow", "-1"}, [] { f({4}).narrow(0, 0, -1); });
  add_row("slice step 0", E::Value, {"slice", "step", "0"}, [] { f({4}).slice(0, 0, 4, 0); });
  add_row("slice step -1", E::Value, {"slice", "step", "-1"}, [] { f({4}).slice(0, 0, 4, -1); });
  add_row("select index 5 of 4", E::Shape, {"select", "5", "4"}, [] { g({4, 2}).select(0, 5); });
  add_row("select dim 2 of rank 2", E::Shape, {"select", "2"}, [] { f({4, 2}).select(2, 0); });
  add_row("squeeze dim 3 of rank 2", E::Shape, {"squeeze", "3"}, [] { f({4, 1}).squeeze(3); });
  add_row("unsqueeze dim 4 of rank 2", E::Shape, {"unsqueeze", "4"}, [] {
    g({4, 1}).unsqueeze(4);
  });
  add_row("expand [2, 3] to [4, 3]", E::Shape, {"expand", "[2, 3]", "[4, 3]"}, [] {
    g({2, 3}).expand({4, 3});
  });
  add_row("expand to fewer dims", E::Shape, {"expand", "[2, 3]", "[3]"}, [] {
    f({2, 3}).expand({3});
  });
  add_row("flatten start 2 after end 1", E::Shape, {"flatten", "2", "1", "[2, 3, 4]"}, [] {
    f({2, 3, 4}).flatten(2, 1);
  });
  add_row("size(5) of rank 2", E::Shape, {"size", "5"}, [] { f({2, 3}).size(5); });
  add_row("item of [2, 3]", E::Shape, {"item", "[2, 3]"}, [] { f({2, 3}).item(); });
  add_row("item of an empty tensor", E::Shape, {"item", "[0]"}, [] { f({0}).item(); });
  add_row("to_vector<int64_t> of float32", E::DType, {"int64", "float32"},
          [] { f({2}).to_vector<int64_t>(); });
  add_row("data<double> of float32", E::DType, {"float64", "float32"},
          [] { f({2}).data<double>(); });
  add_row("requires_grad_ on int64", E::DType, {"requires_grad", "int64"},
          [] { typed({2}, kInt64).requires_grad_(); });
  add_row("backward of a non-scalar without a gradient", E::Shape, {"backward", "[2, 3]"}, [] {
    mul(g({2, 3}), 2.0).backward();
  });
  add_row("backward of a tensor that needs no grad", E::Value, {"backward", "grad"},
          [] { sum(f({3})).backward(); });
  add_row("backward twice without retain_graph", E::Value, {"backward", "retain_graph"}, [] {
    const Tensor x = g({3});
    const Tensor y = sum(mul(x, x));
    y.backward();
    y.backward();
  });
  add_row("backward with a gradient of the wrong shape", E::Shape, {"backward", "[2]", "[3]"},
          [] { mul(g({3}), 2.0).backward(f({2})); });
  add_row("in-place change of a tensor in a graph", E::Value, {"fill_", "graph"}, [] {
    Tensor y = exp(g({3}));
    y.fill_(1.0);
  });
  add_row("backward after a saved tensor changed under NoGradGuard", E::Value,
          {"gradient of exp", "modified by an in-place operation", "version 1"}, [] {
            Tensor y = exp(g({3}));
            const Tensor z = sum(exp(y));
            {
              NoGradGuard no_grad;
              y.fill_(1.0);
            }
            z.backward();
          });
  add_row("fill_ of a leaf that requires grad", E::Value, {"fill_", "leaf"},
          [] { g({3}).fill_(0.0); });
  add_row("copy_ [3] into [2]", E::Shape, {"copy_", "[3]", "[2]"}, [] { f({2}).copy_(f({3})); });
  add_row("zeros of shape [-1]", E::Shape, {"zeros", "[-1]"}, [] { zeros({-1}); });
  add_row("full of shape [2, -3]", E::Shape, {"full", "[2, -3]", "-3 at dimension 1"}, [] {
    full({2, -3}, 1.0);
  });
  add_row("ones of shape [-2]", E::Shape, {"ones", "[-2]"}, [] { ones({-2}); });
  add_row("empty of shape [3, -1]", E::Shape, {"empty", "[3, -1]"}, [] { empty({3, -1}); });
  add_row("randn of shape [-4]", E::Shape, {"randn", "[-4]"}, [] { randn({-4}); });
  add_row("randn of int64", E::DType, {"randn", "int64"}, [] { randn({2}, {.dtype = kInt64}); });
  add_row("rand of bool", E::DType, {"rand", "bool"}, [] { rand({2}, {.dtype = kBool}); });
  add_row("arange step 0", E::Value, {"arange", "step", "0"}, [] { arange(0.0, 5.0, 0.0); });
  add_row("arange step of the wrong sign", E::Value, {"arange", "-1"},
          [] { arange(0.0, 5.0, -1.0); });
  add_row("from_vector 5 values for [2, 3]", E::Shape, {"from_vector", "5", "[2, 3]"}, [] {
    Tensor::from_vector<float>({1, 2, 3, 4, 5}, {2, 3});
  });
  add_row("zeros on cuda", E::Device, {"cuda"}, [] { zeros({2}, {.device = Device::cuda()}); });
  add_row("to cuda", E::Device, {"cuda"}, [] { f({2}).to(Device::cuda()); });
  add_row("Device::parse cuda:1", E::Device, {"cuda"}, [] { Device::parse("cuda:1"); });
  add_row("Device::parse tpu", E::Device, {"tpu"}, [] { Device::parse("tpu"); });
  add_row("Device::cuda(-1)", E::Device, {"-1"}, [] { Device::cuda(-1); });

  // --- valid: non-contiguous views give the contiguous answer ------------------------------------
  rows.push_back({"view: add of a transpose and a row slice", E::None, {}, [] {
                    const Tensor a = tr(), b = f({6, 3}).slice(0, 1, 6, 2).slice(0, 0, 1);
                    check_same(add(a, b), add(a.contiguous(), b.contiguous()));
                  }});
  for (const auto& [name, op] : binaries) {
    rows.push_back({std::string("view: ") + name + " of a transpose and a strided slice",
                    Expect::None,
                    {},
                    [op = op] {
                      const Tensor a = tr(), b = every_other();
                      check_same(op(a, b), op(a.contiguous(), b.contiguous()));
                    }});
  }
  rows.push_back({"view: add of an expanded column", Expect::None, {}, [] {
                    const Tensor a = bcast_col(), b = tr();
                    check_same(add(a, b), add(a.contiguous(), b.contiguous()));
                  }});
  rows.push_back(
      on_view("view: exp of a strided slice", every_other, [](const Tensor& v) { return exp(v); }));
  rows.push_back(on_view("view: log of |transpose| + 1", tr,
                         [](const Tensor& v) { return log(add(abs(v), 1.0)); }));
  rows.push_back(
      on_view("view: sqrt of |transpose|", tr, [](const Tensor& v) { return sqrt(abs(v)); }));
  rows.push_back(on_view("view: neg of an expanded column", bcast_col,
                         [](const Tensor& v) { return neg(v); }));
  rows.push_back(
      on_view("view: pow of a transpose", tr, [](const Tensor& v) { return pow(v, 3.0); }));
  rows.push_back(on_view("view: clamp of a slice", every_other,
                         [](const Tensor& v) { return clamp(v, -0.5, 0.5); }));
  rows.push_back(on_view("view: mul by a scalar", tr, [](const Tensor& v) { return mul(v, 2.5); }));
  rows.push_back(on_view("view: relu of a transpose", tr, [](const Tensor& v) { return relu(v); }));
  rows.push_back(on_view("view: leaky_relu of a slice", every_other,
                         [](const Tensor& v) { return leaky_relu(v, 0.2); }));
  rows.push_back(
      on_view("view: sigmoid of a transpose", tr, [](const Tensor& v) { return sigmoid(v); }));
  rows.push_back(
      on_view("view: tanh of a slice", every_other, [](const Tensor& v) { return tanh(v); }));
  rows.push_back(on_view("view: gelu of a transpose", tr, [](const Tensor& v) { return gelu(v); }));
  rows.push_back(on_view("view: softmax dim 0 of a transpose", tr,
                         [](const Tensor& v) { return softmax(v, 0); }));
  rows.push_back(on_view("view: softmax dim 1 of a transpose", tr,
                         [](const Tensor& v) { return softmax(v, 1); }));
  rows.push_back(on_view("view: log_softmax of a slice", every_other,
                         [](const Tensor& v) { return log_softmax(v, 1); }));
  rows.push_back(on_view("view: sum of a transpose", tr, [](const Tensor& v) { return sum(v); }));
  rows.push_back(
      on_view("view: sum dim 1 of a transpose", tr, [](const Tensor& v) { return sum(v, {1}); }));
  rows.push_back(on_view("view: mean dim 0 of a slice", every_other,
                         [](const Tensor& v) { return mean(v, {0}, true); }));
  rows.push_back(on_view("view: max of an expanded column", bcast_col,
                         [](const Tensor& v) { return max(v); }));
  rows.push_back(on_view("view: max dim 1 of a transpose", tr,
                         [](const Tensor& v) { return max(v, 1).values; }));
  rows.push_back(on_view("view: min dim 0 indices of a slice", every_other,
                         [](const Tensor& v) { return min(v, 0).indices; }));
  rows.push_back(
      on_view("view: argmax of a transpose", tr, [](const Tensor& v) { return argmax(v, 0); }));
  rows.push_back(on_view("view: matmul transpose @ [3, 5]", tr, [](const Tensor& v) {
    manual_seed(3);
    return matmul(v, f({3, 5}));
  }));
  rows.push_back({"view: matmul [5, 4] @ transpose", Expect::None, {}, [] {
                    const Tensor a = f({5, 4}), b = tr();
                    check_same(matmul(a, b), matmul(a, b.contiguous()));
                  }});
  rows.push_back(
      {"view: batched matmul of permuted operands", Expect::None, {}, [] {
         const Tensor a = f({3, 2, 4}).permute({1, 0, 2}), b = f({2, 5, 4}).transpose(1, 2);
         check_same(matmul(a, b), matmul(a.contiguous(), b.contiguous()));
       }});
  rows.push_back(
      {"view: linear of a transposed input and weight", Expect::None, {}, [] {
         const Tensor x = f({3, 2}).t(), w = f({3, 5}).t(), bias = f({10}).slice(0, 0, 10, 2);
         check_same(linear(x, w, bias), linear(x.contiguous(), w.contiguous(), bias.contiguous()));
       }});
  rows.push_back({"view: cat of a transpose and a slice", Expect::None, {}, [] {
                    const Tensor a = tr(), b = every_other();
                    check_same(cat({a, b}, 1), cat({a.contiguous(), b.contiguous()}, 1));
                  }});
  rows.push_back({"view: stack of a transpose and a slice", Expect::None, {}, [] {
                    const Tensor a = tr(), b = every_other();
                    check_same(stack({a, b}, 2), stack({a.contiguous(), b.contiguous()}, 2));
                  }});
  rows.push_back(on_view("view: conv2d of a channels-last input", nchw_view, [](const Tensor& v) {
    manual_seed(4);
    return conv2d(v, f({4, 3, 3, 3}), f({4}), {.padding = {1, 1}});
  }));
  rows.push_back(
      on_view("view: grouped conv2d of a channels-last input", nchw_view, [](const Tensor& v) {
        manual_seed(5);
        return conv2d(v, f({6, 1, 3, 3}), Tensor(), {.stride = {2, 1}, .groups = 3});
      }));
  rows.push_back({"view: conv2d with a transposed weight", Expect::None, {}, [] {
                    const Tensor x = f({1, 3, 6, 6}), w = f({4, 3, 3, 3}).transpose(2, 3);
                    check_same(conv2d(x, w), conv2d(x, w.contiguous()));
                  }});
  rows.push_back(on_view("view: max_pool2d of a channels-last input", nchw_view,
                         [](const Tensor& v) { return max_pool2d(v); }));
  rows.push_back(
      on_view("view: avg_pool2d of a channels-last input", nchw_view, [](const Tensor& v) {
        return avg_pool2d(v, {.kernel = {3, 3}, .stride = {1, 2}, .padding = {1, 1}});
      }));
  rows.push_back(
      on_view("view: adaptive_avg_pool2d of a channels-last input", nchw_view, [](const Tensor& v) {
        return adaptive_avg_pool2d(v, {2, 4});
      }));
  rows.push_back(on_view("view: batch_norm (training) of a channels-last input", nchw_view,
                         [](const Tensor& v) {
                           return batch_norm(v, Tensor(), Tensor(), ones({3}), zeros({3}), true);
                         }));
  rows.push_back(on_view("view: batch_norm (eval) of a transpose", tr, [](const Tensor& v) {
    return batch_norm(v, full({3}, 0.5), full({3}, 2.0), Tensor(), Tensor(), false);
  }));
  rows.push_back(on_view("view: layer_norm of a transpose", tr, [](const Tensor& v) {
    return layer_norm(v, {3}, full({3}, 2.0), full({3}, 0.5));
  }));
  rows.push_back(on_view("view: layer_norm of a slice", every_other, [](const Tensor& v) {
    return layer_norm(v, {4, 3});
  }));
  rows.push_back(on_view("view: cross_entropy of transposed logits", tr, [](const Tensor& v) {
    return cross_entropy(v, labels({0, 2, 1, 2}), {.label_smoothing = 0.1});
  }));
  rows.push_back(on_view("view: nll_loss of sliced log-probs", every_other, [](const Tensor& v) {
    return nll_loss(v, labels({2, 0, 1, 1}), {.reduction = Reduction::None});
  }));
  rows.push_back({"view: mse_loss and l1_loss of a transpose", Expect::None, {}, [] {
                    const Tensor a = tr(), b = f({4, 3});
                    check_same(mse_loss(a, b), mse_loss(a.contiguous(), b));
                    check_same(l1_loss(a, b, Reduction::Sum),
                               l1_loss(a.contiguous(), b, Reduction::Sum));
                  }});
  rows.push_back({"view: bce_with_logits of a transpose", Expect::None, {}, [] {
                    const Tensor a = tr(), t = rand({3, 4}).t();
                    check_same(binary_cross_entropy_with_logits(a, t),
                               binary_cross_entropy_with_logits(a.contiguous(), t.contiguous()));
                    check_same(binary_cross_entropy(sigmoid(a), t),
                               binary_cross_entropy(sigmoid(a.contiguous()), t.contiguous()));
                  }});
  rows.push_back({"view: embedding of a column-major table, strided indices", E::None, {}, [] {
                    const Tensor w = f({4, 10}).t();  // [10, 4], strides [1, 10]
                    const Tensor idx = Tensor::from_vector<int64_t>({1, 9, 3, 3, 0, 7}, {3, 2}).t();
                    check_same(embedding(w, idx), embedding(w.contiguous(), idx.contiguous()));
                  }});
  rows.push_back(on_view("view: dropout p 0 of a transpose", tr,
                         [](const Tensor& v) { return dropout(v, 0.0, true); }));
  rows.push_back(on_view("view: comparison of a transpose with itself", tr,
                         [](const Tensor& v) { return eq(v, v); }));
  rows.push_back(
      {"view: gradients through a transpose match the contiguous ones", Expect::None, {}, [] {
         const Tensor w = f({3, 4});
         const Tensor a = f({4, 3}).t().requires_grad_(false);
         Tensor x1 = a.clone().requires_grad_(), x2 = a.contiguous().clone().requires_grad_();
         sum(mul(matmul(x1.t(), w), 2.0)).backward();
         sum(mul(matmul(x2.contiguous().t(), w), 2.0)).backward();
         check_same(x1.grad(), x2.grad());
       }});
  rows.push_back({"view: in-place add_ into a transposed view", Expect::None, {}, [] {
                    Tensor base = f({3, 4});
                    Tensor copy = base.clone();
                    base.t().add_(ones({4, 3}));
                    check_same(base, add(copy, 1.0));
                  }});

  // --- valid: empty tensors
  // ------------------------------------------------------------------------
  rows.push_back(on_empty(
      "empty: add [0, 3] + [3]",
      [] {
        return add(f({0, 3}), f({3}));
      },
      [] {
        return zeros({0, 3});
      }));
  rows.push_back(on_empty(
      "empty: exp of [0]", [] { return exp(f({0})); }, [] { return zeros({0}); }));
  rows.push_back(on_empty(
      "empty: relu of [2, 0]",
      [] {
        return relu(f({2, 0}));
      },
      [] {
        return zeros({2, 0});
      }));
  rows.push_back(on_empty(
      "empty: softmax of [0, 5]",
      [] {
        return softmax(f({0, 5}), 1);
      },
      [] {
        return zeros({0, 5});
      }));
  rows.push_back(on_empty(
      "empty: sum of [0, 3]",
      [] {
        return sum(f({0, 3}));
      },
      [] { return scalar_tensor(0.0); }));
  rows.push_back(on_empty(
      "empty: sum dim 0 of [0, 3]",
      [] {
        return sum(f({0, 3}), {0});
      },
      [] { return zeros({3}); }));
  rows.push_back(on_empty(
      "empty: sum dim 1 of [0, 3]",
      [] {
        return sum(f({0, 3}), {1});
      },
      [] { return zeros({0}); }));
  rows.push_back(on_empty(
      "empty: mean of [0]", [] { return mean(f({0})); },
      [] { return scalar_tensor(std::nan("")); }));
  rows.push_back(on_empty(
      "empty: max dim 1 of [0, 3]",
      [] {
        return max(f({0, 3}), 1).values;
      },
      [] { return zeros({0}); }));
  rows.push_back(on_empty(
      "empty: matmul [0, 3] @ [3, 4]",
      [] {
        return matmul(f({0, 3}), f({3, 4}));
      },
      [] {
        return zeros({0, 4});
      }));
  rows.push_back(on_empty(
      "empty: matmul [2, 0] @ [0, 3]",
      [] {
        return matmul(f({2, 0}), f({0, 3}));
      },
      [] {
        return zeros({2, 3});
      }));
  rows.push_back(on_empty(
      "empty: linear of [0, 4]",
      [] {
        return linear(f({0, 4}), f({3, 4}), f({3}));
      },
      [] {
        return zeros({0, 3});
      }));
  rows.push_back(on_empty(
      "empty: cat with [0, 3]",
      [] {
        return cat({zeros({0, 3}), ones({2, 3})});
      },
      [] {
        return ones({2, 3});
      }));
  rows.push_back(on_empty(
      "empty: conv2d of a batch of 0",
      [] {
        return conv2d(f({0, 3, 8, 8}), f({4, 3, 3, 3}));
      },
      [] {
        return zeros({0, 4, 6, 6});
      }));
  rows.push_back(on_empty(
      "empty: max_pool2d of a batch of 0",
      [] {
        return max_pool2d(f({0, 2, 4, 4}));
      },
      [] {
        return zeros({0, 2, 2, 2});
      }));
  rows.push_back(on_empty(
      "empty: layer_norm of [0, 4]",
      [] {
        return layer_norm(f({0, 4}), {4});
      },
      [] {
        return zeros({0, 4});
      }));
  rows.push_back(on_empty(
      "empty: embedding of no indices",
      [] {
        return embedding(f({10, 4}), labels({}));
      },
      [] {
        return zeros({0, 4});
      }));
  rows.push_back(on_empty(
      "empty: cross_entropy sum of no rows",
      [] {
        return cross_entropy(f({0, 3}), labels({}), {.reduction = Reduction::Sum});
      },
      [] { return scalar_tensor(0.0); }));
  rows.push_back(on_empty(
      "empty: mse_loss None of [0]", [] { return mse_loss(f({0}), f({0}), Reduction::None); },
      [] { return zeros({0}); }));
  rows.push_back(on_empty(
      "empty: backward through [0, 3]",
      [] {
        Tensor x = zeros({0, 3}).requires_grad_();
        sum(mul(x, 2.0)).backward();
        return x.grad();
      },
      [] {
        return zeros({0, 3});
      }));
  rows.push_back(on_empty(
      "empty: Linear layer of [0, 4]",
      [] {
        return nn::Linear(4, 3)(f({0, 4}));
      },
      [] {
        return zeros({0, 3});
      }));
  return rows;
}

// The library still works after a row: a plain op and a fresh backward pass.
void check_still_working() {
  const Tensor s = add(ones({2, 2}), ones({2, 2}));
  if (s.to_vector<float>() != std::vector<float>(4, 2.0f))
    throw std::runtime_error("add gave a wrong answer");
  Tensor x = Tensor::from_vector<float>({1, 2, 3}, {3}).requires_grad_();
  sum(mul(x, x)).backward();
  if (x.grad().to_vector<float>() != std::vector<float>{2, 4, 6})
    throw std::runtime_error("backward gave a wrong gradient");
}

}  // namespace

TEST(BadInputs, EveryRowThrowsItsTypedErrorOrGivesTheContiguousAnswerAndLeavesNothingBehind) {
  const bool verbose = std::getenv("EMBER_BAD_INPUTS_VERBOSE") != nullptr;
  const std::vector<Row> rows = table();
  int errors = 0, valid = 0;
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    if (verbose) std::fprintf(stderr, "row: %s\n", row.name.c_str());
    tracked().clear();
    cpu::empty_cache();
    const size_t pool_before = cpu::memory_stats().allocated_bytes;
    std::string outcome;
    try {
      row.call();
      outcome = "no error";
      if (row.expect != Expect::None)
        ADD_FAILURE() << "expected " << expect_name(row.expect) << ", got no error";
    } catch (const std::exception& e) {
      outcome = type_of(e) + ": " + e.what();
      if (row.expect == Expect::None) {
        ADD_FAILURE() << "valid call failed: " << outcome;
      } else if (!is_expected(row.expect, e)) {
        ADD_FAILURE() << "expected " << expect_name(row.expect) << ", got " << outcome;
      } else {
        for (const auto& part : row.parts) {
          EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
              << "message \"" << e.what() << "\" does not mention \"" << part << "\"";
        }
      }
    }
    if (verbose) std::fprintf(stderr, "  -> %s\n", outcome.c_str());
    (row.expect == Expect::None ? valid : errors) += 1;
    for (const auto& t : tracked())
      EXPECT_TRUE(t.expired()) << "a tensor of the call is still alive (a node kept it?)";
    EXPECT_EQ(cpu::memory_stats().allocated_bytes, pool_before) << "CPU pool bytes leaked";
    EXPECT_NO_THROW(check_still_working());
  }
  RecordProperty("error_rows", errors);
  RecordProperty("valid_rows", valid);
  std::printf("%zu rows: %d bad calls, %d valid calls on views or empty tensors\n", rows.size(),
              errors, valid);
  EXPECT_GE(rows.size(), 150u);
}
