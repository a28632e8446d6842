// nn::Module and nn::Sequential: registration, names, train/eval, state_dict, printing.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <typeinfo>
#include <vector>

#include <ember/ember.h>

using namespace ember;

namespace {

// A model written by subclassing, as users do.
class TwoLayer : public nn::Module {
 public:
  TwoLayer() {
    fc1 = register_module("fc1", nn::Linear(4, 3));
    fc2 = register_module("fc2", nn::Linear(3, 2, {.bias = false}));
  }
  Tensor forward(const Tensor& x) override { return (*fc2)(relu((*fc1)(x))); }
  std::string name() const override { return "TwoLayer"; }

  std::shared_ptr<nn::Linear> fc1, fc2;
};

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (auto& [n, t] : v) out.push_back(n);
  return out;
}

}  // namespace

TEST(Module, NamedParametersUseDottedPathsLikePyTorch) {
  TwoLayer m;
  EXPECT_EQ(names_of(m.named_parameters()),
            (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight"}));
  EXPECT_EQ(m.num_parameters(), 4 * 3 + 3 + 3 * 2);
  for (auto& p : m.parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(Module, SequentialNamesChildrenByIndex) {
  nn::Sequential s{nn::Linear(2, 3), nn::ReLU(), nn::Linear(3, 1)};
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(names_of(s.named_parameters()),
            (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_EQ(s[1].name(), "ReLU");
  EXPECT_EQ(s.at<nn::Linear>(2).weight().shape(), (Shape{1, 3}));
  EXPECT_THROW(s[3], Error);
  EXPECT_THROW(s.at<nn::Linear>(1), Error);
  s.push_back(nn::Sigmoid());
  EXPECT_EQ(s.size(), 4u);
  Tensor y = s(ones({5, 2}));
  EXPECT_EQ(y.shape(), (Shape{5, 1}));
}

TEST(Module, ForwardMatchesTheOpsItIsMadeOf) {
  manual_seed(1);
  nn::Linear fc(3, 2);
  Tensor x = randn({4, 3});
  Tensor expected = add(matmul(x, fc.weight().t()), fc.bias());
  auto a = fc(x).to_vector<float>(), b = expected.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5);
}

TEST(Module, DefaultInitIsPyTorchsUniformBound) {
  manual_seed(0);
  nn::Linear fc(100, 50);
  const double bound = 1.0 / std::sqrt(100.0);
  for (float v : fc.weight().to_vector<float>()) {
    EXPECT_LE(std::fabs(v), bound + 1e-7);
  }
  for (float v : fc.bias().to_vector<float>()) EXPECT_LE(std::fabs(v), bound + 1e-7);
}

TEST(Module, SameSeedGivesTheSameModel) {
  manual_seed(42);
  nn::Linear a(8, 4);
  manual_seed(42);
  nn::Linear b(8, 4);
  EXPECT_EQ(a.weight().to_vector<float>(), b.weight().to_vector<float>());
}

TEST(Module, NamedInitsAreAvailable) {
  manual_seed(0);
  nn::Linear g(200, 100, {.init = "glorot_uniform"});
  const double bound = std::sqrt(6.0 / 300.0);
  double max_abs = 0;
  for (float v : g.weight().to_vector<float>()) max_abs = std::max(max_abs, double(std::fabs(v)));
  EXPECT_LE(max_abs, bound + 1e-7);
  EXPECT_GT(max_abs, 0.9 * bound);
  for (float v : g.bias().to_vector<float>()) EXPECT_EQ(v, 0.0f);
  EXPECT_THROW(nn::Linear(2, 2, {.init = "no_such_init"}), Error);
}

TEST(Module, TrainAndEvalPropagateToChildren) {
  nn::Sequential s{nn::Linear(2, 2), nn::Dropout(0.5)};
  EXPECT_TRUE(s.is_training());
  s.eval();
  EXPECT_FALSE(s[1].is_training());
  // Dropout is the identity in eval mode.
  Tensor x = ones({10, 2});
  EXPECT_EQ(s[1](x).to_vector<float>(), x.to_vector<float>());
  s.train();
  EXPECT_TRUE(s[1].is_training());
}

TEST(Module, ZeroGradClearsGradients) {
  TwoLayer m;
  sum(m(ones({2, 4}))).backward();
  EXPECT_TRUE(m.fc1->weight().grad().defined());
  m.zero_grad();
  for (auto& p : m.parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Module, StateDictRoundTripRestoresOutputs) {
  manual_seed(3);
  TwoLayer a;
  manual_seed(4);
  TwoLayer b;
  Tensor x = randn({3, 4});
  EXPECT_NE(a(x).to_vector<float>(), b(x).to_vector<float>());
  nn::StateDict sd = a.state_dict();
  EXPECT_EQ(sd.keys(), (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight"}));
  b.load_state_dict(sd);
  EXPECT_EQ(a(x).to_vector<float>(), b(x).to_vector<float>());
  // The state dict holds values, not the live parameters' graph.
  EXPECT_FALSE(sd.at("fc1.weight").requires_grad());
}

TEST(Module, LoadStateDictNamesMissingUnexpectedAndMisshapedKeys) {
  TwoLayer m;
  nn::StateDict sd = m.state_dict();
  nn::StateDict bad;
  bad.insert("fc1.weight", zeros({3, 5}));
  bad.insert("fc1.bias", sd.at("fc1.bias"));
  bad.insert("extra.weight", zeros({1}));
  try {
    m.load_state_dict(bad);
    FAIL() << "expected an error";
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("missing keys: fc2.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected keys: extra.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fc1.weight: checkpoint [3, 5], model [3, 4]"), std::string::npos) << msg;
  }
  // Non-strict loading ignores missing and unexpected keys but never a wrong shape.
  nn::StateDict partial;
  partial.insert("fc1.bias", zeros({3}));
  partial.insert("other", zeros({2}));
  m.load_state_dict(partial, /*strict=*/false);
  EXPECT_EQ(m.fc1->bias().to_vector<float>(), std::vector<float>(3, 0.0f));
}

TEST(Module, LinearRejectsWrongFeatureCountNamingTheLayer) {
  nn::Linear fc(784, 10);
  try {
    fc(ones({2, 100}));
    FAIL() << "expected an error";
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("Linear(in_features=784, out_features=10)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 100]"), std::string::npos) << msg;
  }
}

TEST(Module, ReprPrintsTheTreeLikePyTorch) {
  nn::Sequential s{nn::Linear(2, 3), nn::ReLU()};
  EXPECT_EQ(s.repr(),
            "Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n  (1): ReLU()\n)");
}

TEST(Module, SummaryListsOutputShapesAndParameterCounts) {
  nn::Sequential s{nn::Flatten(), nn::Linear(784, 128), nn::ReLU(), nn::Linear(128, 10)};
  const std::string text = s.summary({1, 1, 28, 28});
  EXPECT_NE(text.find("1 (Linear)"), std::string::npos) << text;
  EXPECT_NE(text.find("[None, 128]"), std::string::npos) << text;
  EXPECT_NE(text.find("100480"), std::string::npos) << text;  // 784 * 128 + 128
  EXPECT_NE(text.find("Total params: 101770"), std::string::npos) << text;
  EXPECT_TRUE(s.is_training());  // summary() restores the mode
}

TEST(Module, ToMovesParametersInPlace) {
  nn::Linear fc(2, 2);
  Tensor w = fc.weight();
  fc.to(Device::cpu());
  EXPECT_TRUE(w.is_same(fc.weight()));
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
  fc.to(Device::cuda(0));
  EXPECT_TRUE(w.is_cuda());  // the handle held elsewhere sees the move
  EXPECT_TRUE(fc(ones({1, 2}, {.device = Device::cuda(0)})).is_cuda());
}

// --- ModuleHolder: layers called like functions ------------------------------------------------

namespace {

// The subclassing pattern docs/layers.md shows: holders as members, no name() override.
class HeldNet : public nn::Module {
 public:
  HeldNet() {
    fc1 = register_module("fc1", nn::Linear(4, 3));
    fc2 = register_module("fc2", nn::Linear(3, 2));
  }
  Tensor forward(const Tensor& x) override { return fc2(relu(fc1(x))); }

  nn::ModuleHolder<nn::Linear> fc1, fc2;
};

template <typename T>
class Wrapper : public nn::Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
};

}  // namespace

TEST(ModuleHolder, CallsTheRegisteredLayerLikeAFunction) {
  manual_seed(2);
  HeldNet net;
  Tensor x = randn({5, 4});
  const Tensor want = (*net.fc2.ptr())(relu((*net.fc1.ptr())(x)));
  EXPECT_EQ(net(x).to_vector<float>(), want.to_vector<float>());
  // The holder shares the registered module: one set of parameters, reachable both ways.
  EXPECT_EQ(names_of(net.named_parameters()),
            (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(net.named_children()[0].second.get(), net.fc1.get());
  EXPECT_EQ(net.fc1->weight().data_ptr(), net.state_dict().at("fc1.weight").data_ptr());
  EXPECT_EQ((*net.fc2).name(), "Linear");
}

TEST(ModuleHolder, SummarySeesLayersCalledThroughHolders) {
  HeldNet net;
  const std::string text = net.summary({2, 4});
  EXPECT_NE(text.find("Model: \"HeldNet\""), std::string::npos) << text;
  EXPECT_NE(text.find("fc1 (Linear)"), std::string::npos) << text;
  EXPECT_NE(text.find("fc2 (Linear)"), std::string::npos) << text;
}

TEST(ModuleHolder, SharesItsModuleWithSequential) {
  nn::ModuleHolder<nn::Linear> fc = nn::Linear(2, 3);
  nn::Sequential seq{fc, nn::ReLU()};
  EXPECT_EQ(&seq.at<nn::Linear>(0), fc.get());
  {
    NoGradGuard no_grad;
    fc->weight().fill_(1.0);
    fc->bias().zero_();
  }
  // seq sees the holder's weights: relu([1, -3] @ ones[3, 2]^T) = relu(-2) = 0 per unit.
  EXPECT_EQ(seq(Tensor::from_vector<float>({1, -3}, {1, 2})).to_vector<float>(),
            (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(fc(Tensor::from_vector<float>({1, 2}, {1, 2})).to_vector<float>(),
            (std::vector<float>{3, 3, 3}));
}

TEST(ModuleHolder, RegisterModuleAcceptsAHolder) {
  struct Outer : nn::Module {
    explicit Outer(nn::ModuleHolder<nn::Linear> shared) { fc = register_module("fc", shared); }
    Tensor forward(const Tensor& x) override { return fc(x); }
    nn::ModuleHolder<nn::Linear> fc;
  };
  nn::ModuleHolder<nn::Linear> shared = nn::Linear(2, 2);
  Outer a(shared), b(shared);
  EXPECT_EQ(a.fc.get(), b.fc.get());
  EXPECT_EQ(names_of(a.named_parameters()), (std::vector<std::string>{"fc.weight", "fc.bias"}));
}

TEST(ModuleHolder, AnEmptyHolderThrowsNamingTheLayerType) {
  nn::ModuleHolder<nn::Conv2d> conv;
  EXPECT_TRUE(conv.is_empty());
  EXPECT_FALSE(conv);
  try {
    conv(ones({1, 1, 4, 4}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ModuleHolder<Conv2d>"), std::string::npos) << msg;
    EXPECT_NE(msg.find("register_module"), std::string::npos) << msg;
  }
  EXPECT_THROW(conv->weight(), Error);
}

// --- Module::name(): the class name by default ------------------------------------------------

TEST(ModuleName, DefaultsToTheClassNameWithoutNamespaces) {
  HeldNet net;  // in an anonymous namespace, without a name() override
  EXPECT_EQ(net.name(), "HeldNet");
  EXPECT_EQ(net.repr().rfind("HeldNet(", 0), 0u) << net.repr();
  struct LocalModel : nn::Module {
    Tensor forward(const Tensor& x) override { return x; }
  };
  EXPECT_EQ(LocalModel().name(), "LocalModel");
  EXPECT_EQ(Wrapper<nn::Linear>().name(), "Wrapper<Linear>");
  EXPECT_EQ(nn::class_name(typeid(nn::BatchNorm2d)), "BatchNorm2d");
  EXPECT_EQ(nn::class_name(typeid(int)), "int");
}

TEST(ModuleName, AnOverrideStillWins) {
  TwoLayer m;  // overrides name()
  EXPECT_EQ(m.name(), "TwoLayer");
  struct Renamed : nn::Module {
    Tensor forward(const Tensor& x) override { return x; }
    std::string name() const override { return "MyBlock"; }
  };
  EXPECT_EQ(Renamed().repr(), "MyBlock()");
}

// --- load_state_dict from another architecture -------------------------------------------------

TEST(Module, LoadingAnotherArchitectureListsTheFirstFewMismatchesAndTheCounts) {
  // A checkpoint of a 6-layer MLP loaded into a CNN: every key differs.
  nn::Sequential mlp;
  for (int i = 0; i < 6; ++i) mlp.push_back(nn::Linear(8, 8));
  nn::Sequential cnn{nn::Conv2d(1, 4, 3), nn::ReLU(),    nn::Conv2d(4, 4, 3), nn::Flatten(),
                     nn::ReLU(),          nn::Dropout(), nn::Linear(16, 10)};
  std::string msg;
  try {
    cnn.load_state_dict(mlp.state_dict());
    FAIL() << "expected an error";
  } catch (const ShapeError& e) {
    msg = e.what();
  }
  // 12 keys in the MLP, 6 in the CNN: "0.*" and "2.*" clash in shape, "6.*" are missing,
  // "1.*", "3.*", "4.*" and "5.*" unexpected.
  EXPECT_EQ(msg.rfind("load_state_dict: the state dict does not match Sequential; it comes from "
                      "a different architecture (or a differently configured one)\n  6 tensors in "
                      "the model: 0 match, 2 missing, 4 mis-shaped; 8 unexpected in the state dict\n",
                      0),
            0u)
      << msg;
  EXPECT_NE(msg.find("missing keys: 6.weight, 6.bias\n"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected keys: 1.weight, 1.bias, 3.weight, 3.bias, 4.weight, ... and 3 more"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("shape mismatches:\n    0.weight: checkpoint [8, 8], model [4, 1, 3, 3]\n    0.bias:"),
            std::string::npos)
      << msg;
  // One short line per kind of mismatch, not every name on one line.
  size_t longest = 0, start = 0;
  for (size_t end; (end = msg.find('\n', start)) != std::string::npos; start = end + 1) {
    longest = std::max(longest, end - start);
  }
  longest = std::max(longest, msg.size() - start);
  EXPECT_LT(longest, 140u) << msg;
}

TEST(Module, ALargeMismatchIsCappedAtFiveNamesPerKind) {
  nn::Sequential big, other;
  for (int i = 0; i < 100; ++i) big.push_back(nn::Linear(2, 2));
  other.push_back(nn::Linear(3, 3));
  std::string msg;
  try {
    other.load_state_dict(big.state_dict());
  } catch (const ShapeError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("2 mis-shaped; 198 unexpected"), std::string::npos) << msg;
  EXPECT_NE(msg.find("... and 193 more"), std::string::npos) << msg;
  EXPECT_LT(msg.size(), 600u) << msg;
}
