// Training checkpoints load all or nothing: a bad model or optimizer section, or a step
// count ember cannot count with, leaves the model, the optimizer and the random generators
// bit-identical (Note [All-or-nothing checkpoint load] in python_free_api/io/safetensors.cpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include <ember/ember.h>

using namespace ember;
namespace fs = std::filesystem;

namespace {

// A small MLP and its Adam optimizer, made from a seed.
struct Trained {
  explicit Trained(uint64_t seed) : seeded((manual_seed(seed), true)) {}
  void train(int steps) {
    for (int i = 0; i < steps; ++i) {
      const Tensor loss = model(rand({8, 4})).pow(2.0).mean();
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
  }
  bool seeded;
  nn::Sequential model{nn::Linear(4, 3), nn::ReLU(), nn::Linear(3, 2)};
  optim::Adam opt{model.parameters(), {.lr = 0.01}};
};

// One tensor as bytes: equal lists are bit-identical states.
struct TensorBytes {
  std::string name;
  DType dtype;
  Shape shape;
  std::vector<uint8_t> bytes;
  bool operator==(const TensorBytes&) const = default;
};

std::vector<TensorBytes> bytes_of(const StateDict& sd) {
  std::vector<TensorBytes> out;
  for (const auto& [name, t] : sd) {
    const Tensor c = t.detach().cpu().contiguous();
    const auto* p = static_cast<const uint8_t*>(c.data_ptr());
    out.push_back({name, c.dtype(), c.shape(), std::vector<uint8_t>(p, p + c.nbytes())});
  }
  return out;
}

// Everything a failed load must leave as it was. The optimizer's state_dict holds its
// options and step counts as well as its buffers.
struct Snapshot {
  std::vector<TensorBytes> model;
  std::vector<TensorBytes> optimizer;
  RngState rng;

  static Snapshot of(const Trained& t) { return {bytes_of(t.model.state_dict()), bytes_of(t.opt.state_dict()), get_rng_state()}; }
};

::testing::AssertionResult same(const Snapshot& a, const Snapshot& b) {
  if (a.model != b.model) return ::testing::AssertionFailure() << "the model changed";
  if (a.optimizer != b.optimizer) return ::testing::AssertionFailure() << "the optimizer changed";
  if (a.rng.seed != b.rng.seed || a.rng.cpu_engine != b.rng.cpu_engine ||
      a.rng.philox_offset_cpu != b.rng.philox_offset_cpu) {
    return ::testing::AssertionFailure() << "the random generators changed";
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult mentions(const std::string& message, std::initializer_list<std::string> parts) {
  for (const auto& p : parts) {
    if (message.find(p) == std::string::npos) {
      return ::testing::AssertionFailure() << "message \"" << message << "\" does not mention \"" << p << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

class CheckpointLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("ember_ckpt_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Trained saved(11);
    saved.train(2);
    good_ = path("good.safetensors");
    io::save_checkpoint(good_, saved.model, &saved.opt, {.epoch = 1, .step = 2, .extra = {}});
    saved_model_ = bytes_of(saved.model.state_dict());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // The good checkpoint with `change` applied to its tensors, saved as `name`.
  std::string variant(const std::string& name, const std::function<void(StateDict&)>& change) const {
    io::SafetensorsFile f = io::load_safetensors(good_);
    change(f.tensors);
    const std::string p = path(name);
    io::save_safetensors(p, f.tensors, f.metadata);
    return p;
  }

  // Loads `file` into a model and optimizer trained from another seed, expects an error
  // mentioning `parts`, and checks that nothing changed.
  void expect_refused_changing_nothing(const std::string& file, std::initializer_list<std::string> parts) {
    SCOPED_TRACE(file);
    Trained target(12);
    target.train(1);
    const Snapshot before = Snapshot::of(target);
    std::string message = "<no error>";
    try {
      io::load_checkpoint(file, target.model, &target.opt);
    } catch (const Error& e) {
      message = e.what();
    }
    EXPECT_TRUE(mentions(message, {"load_checkpoint: " + file}));
    EXPECT_TRUE(mentions(message, parts));
    EXPECT_TRUE(same(Snapshot::of(target), before));
    // And the failure spoils nothing: the good file still loads into the same objects.
    io::load_checkpoint(good_, target.model, &target.opt);
    EXPECT_EQ(bytes_of(target.model.state_dict()), saved_model_);
  }

  fs::path dir_;
  std::string good_;
  std::vector<TensorBytes> saved_model_;
};

Tensor int64_scalar(int64_t v) { return Tensor::from_vector<int64_t>({v}, Shape{}); }
Tensor float64_scalar(double v) { return scalar_tensor(v, {.dtype = kFloat64}); }

}  // namespace

TEST_F(CheckpointLoad, ABadOptimizerSectionLeavesModelOptimizerAndGeneratorsBitIdentical) {
  // Each used to fail only after the model's weights had been overwritten.
  expect_refused_changing_nothing(
      variant("unexpected.safetensors", [](StateDict& sd) { sd.insert("optimizer.bogus", ones({1})); }),
      {"Adam::load_state_dict: unexpected keys 'bogus'"});
  expect_refused_changing_nothing(
      variant("negative_lr.safetensors",
              [](StateDict& sd) { sd.insert("optimizer.param_groups.0.lr", float64_scalar(-1.0)); }),
      {"invalid learning rate lr=-1"});
  expect_refused_changing_nothing(
      variant("exp_avg.safetensors", [](StateDict& sd) { sd.insert("optimizer.state.0.exp_avg", zeros({2, 2})); }),
      {"'state.0.exp_avg' is [2, 2]", "but parameter 0 is [3, 4]"});
}

TEST_F(CheckpointLoad, ABadModelSectionLeavesModelOptimizerAndGeneratorsBitIdentical) {
  expect_refused_changing_nothing(
      variant("model.safetensors", [](StateDict& sd) { sd.insert("model.0.weight", zeros({5, 4})); }),
      {"0.weight: checkpoint [5, 4], model [3, 4]"});
  expect_refused_changing_nothing(
      variant("extra.safetensors", [](StateDict& sd) { sd.insert("model.9.weight", zeros({1})); }),
      {"unexpected keys: 9.weight"});
}

TEST_F(CheckpointLoad, StepCountsOutsideZeroTo2Pow53AreRefused) {
  // INT64_MAX once became INT64_MIN through an undefined float-to-int conversion, and the
  // next Adam step turned every weight to NaN.
  const struct {
    const char* label;
    Tensor value;
    const char* shown;
  } bad[] = {
      {"int64_max", int64_scalar(std::numeric_limits<int64_t>::max()), "got 9223372036854775807"},
      {"past_2pow53", int64_scalar((int64_t{1} << 53) + 1), "got 9007199254740993"},
      {"negative", int64_scalar(-1), "got -1"},
      {"huge", float64_scalar(1e300), "got 1e+300"},
      {"nan", float64_scalar(std::numeric_limits<double>::quiet_NaN()), "got nan"},
      {"fraction", float64_scalar(2.5), "got 2.5"},
      {"infinite", scalar_tensor(std::numeric_limits<float>::infinity()), "got inf"},
  };
  for (const char* key : {"step", "state.0.step"}) {
    for (const auto& b : bad) {
      const std::string file = variant(std::string(b.label) + "_" + key + ".safetensors",
                                       [&](StateDict& sd) { sd.insert(std::string("optimizer.") + key, b.value); });
      expect_refused_changing_nothing(file, {std::string("'") + key + "' should hold a step count", b.shown});
    }
  }
}

TEST_F(CheckpointLoad, TheLargestStepCountLoadsAndAdamStaysFinite) {
  const int64_t max_steps = int64_t{1} << 53;
  const std::string file = variant("max.safetensors", [&](StateDict& sd) {
    sd.insert("optimizer.step", int64_scalar(max_steps));
    for (int i = 0; i < 4; ++i) sd.insert("optimizer.state." + std::to_string(i) + ".step", int64_scalar(max_steps));
  });
  Trained target(12);
  io::load_checkpoint(file, target.model, &target.opt);
  EXPECT_EQ(target.opt.steps(), max_steps);
  target.train(1);
  EXPECT_EQ(target.opt.steps(), max_steps + 1);
  for (const auto& [name, p] : target.model.named_parameters()) {
    for (float v : p.contiguous().to_vector<float>()) ASSERT_TRUE(std::isfinite(v)) << name;
  }
}

TEST_F(CheckpointLoad, OptimizerCheckStateDictValidatesWithoutChangingAnything) {
  Trained source(13);
  source.train(3);
  source.opt.set_lr(0.5);
  Trained target(14);
  target.train(1);
  const std::vector<TensorBytes> before = bytes_of(target.opt.state_dict());

  target.opt.check_state_dict(source.opt.state_dict());  // valid: passes, loads nothing
  EXPECT_EQ(bytes_of(target.opt.state_dict()), before);
  EXPECT_EQ(target.opt.lr(), 0.01);

  StateDict bad = source.opt.state_dict();
  bad.insert("param_groups.0.eps", float64_scalar(-1.0));
  try {
    target.opt.check_state_dict(bad);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(mentions(e.what(), {"Adam::load_state_dict", "invalid eps=-1"}));
  }
  EXPECT_EQ(bytes_of(target.opt.state_dict()), before);
}
