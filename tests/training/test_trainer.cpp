// Trainer fit / evaluate / predict on tiny synthetic problems: the History, the
// validation split, evaluate against a manual computation, predict's order and shape, the
// Keras-style output (ProgressBar included), NaN losses, exact resuming from a training
// checkpoint, and the device the model ends up on.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <ember/ember.h>

using namespace ember;
namespace fs = std::filesystem;

namespace {

// n points in 2-D, labelled by which side of the line x0 + 0.5 x1 = 0 they fall on.
data::TensorDataset separable(int64_t n, uint32_t seed = 1) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n * 2);
  std::vector<int64_t> y(n);
  for (int64_t i = 0; i < n; ++i) {
    x[2 * i] = normal(gen);
    x[2 * i + 1] = normal(gen);
    y[i] = x[2 * i] + 0.5f * x[2 * i + 1] > 0.0f ? 1 : 0;
  }
  return data::TensorDataset(Tensor::from_vector<float>(x, {n, 2}), Tensor::from_vector<int64_t>(y, {n}));
}

std::unique_ptr<nn::Sequential> mlp() {
  return std::make_unique<nn::Sequential>(
      std::initializer_list<nn::AnyModule>{nn::Linear(2, 8), nn::ReLU(), nn::Linear(8, 2)});
}

// Every tensor of the module's state as raw floats, for bit-exact comparisons.
std::vector<std::vector<float>> weights_of(const nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (const auto& [name, t] : m.state_dict()) out.push_back(t.cpu().contiguous().to_vector<float>());
  return out;
}

bool bit_identical(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size() ||
        std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

// A fresh directory under the system's temporary folder, removed at the end of the test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("ember_training_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// A loss that ignores the targets (so they can be anything, like the sample's index).
class OutputSquareLoss : public loss::Loss {
 public:
  Tensor operator()(const Tensor& output, const Tensor&) const override { return mean(mul(output, output)); }
  std::string name() const override { return "output_square"; }
};

// Records the targets it sees; its clone (the Trainer's validation copy) records elsewhere.
class TargetRecorder : public metrics::Metric {
 public:
  TargetRecorder(std::shared_ptr<std::vector<int64_t>> seen, std::shared_ptr<std::vector<int64_t>> clone_seen)
      : seen_(std::move(seen)), clone_seen_(std::move(clone_seen)) {}
  std::string name() const override { return "recorded"; }
  void reset() override {}
  void update(const Tensor&, const Tensor& target) override {
    for (int64_t v : target.cpu().to_vector<int64_t>()) seen_->push_back(v);
  }
  double result() const override { return 0.0; }
  std::unique_ptr<metrics::Metric> clone() const override {
    return std::make_unique<TargetRecorder>(clone_seen_, clone_seen_);
  }

 private:
  std::shared_ptr<std::vector<int64_t>> seen_, clone_seen_;
};

// Copies of the weights at the end of each epoch.
class WeightRecorder : public callbacks::Callback {
 public:
  void on_epoch_end(Trainer& trainer, int64_t, Logs&) override { epochs.push_back(weights_of(trainer.model())); }
  std::vector<std::vector<std::vector<float>>> epochs;
};

const char* kValue = R"(-?\d+\.\d{4}(e[-+]\d+)?)";

}  // namespace

// --- fit and History -----------------------------------------------------------------------

TEST(TrainerFit, ReturnsAHistoryPerEpochAndTheLossFalls) {
  manual_seed(0);
  auto train = separable(256, 1), val = separable(64, 2);
  auto model = mlp();
  optim::Adam opt(model->parameters(), {.lr = 0.05});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cpu());
  History h = trainer.fit(train, {.epochs = 5, .batch_size = 32, .validation = &val, .verbose = 0});

  EXPECT_EQ(h.keys(), (std::vector<std::string>{"loss", "accuracy", "val_loss", "val_accuracy"}));
  EXPECT_EQ(h.epochs(), 5u);
  for (const char* key : {"loss", "accuracy", "val_loss", "val_accuracy"}) EXPECT_EQ(h[key].size(), 5u) << key;
  EXPECT_LT(h["loss"].back(), 0.6 * h["loss"].front());
  EXPECT_LT(h["val_loss"].back(), h["val_loss"].front());
  EXPECT_GT(h["accuracy"].back(), 0.9);
  EXPECT_GT(h["val_accuracy"].back(), 0.9);
  EXPECT_TRUE(h.contains("val_loss"));
  EXPECT_FALSE(h.contains("lr"));
  try {
    (void)h["val_acc"];
    FAIL() << "an unknown name must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("val_acc"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("val_accuracy"), std::string::npos);
  }
}

TEST(TrainerFit, ValidationSplitTakesTheLastFractionBeforeShuffling) {
  // The targets are the samples' indices, so the recorder tells which rows each part got.
  const int64_t n = 10;
  std::vector<int64_t> index(n);
  for (int64_t i = 0; i < n; ++i) index[i] = i;
  data::TensorDataset ds(randn({n, 2}), Tensor::from_vector<int64_t>(index, {n}));
  auto train_seen = std::make_shared<std::vector<int64_t>>();
  auto val_seen = std::make_shared<std::vector<int64_t>>();
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.01});
  Trainer trainer(*model, opt, OutputSquareLoss(), {TargetRecorder(train_seen, val_seen)}, Device::cpu());
  History h = trainer.fit(ds, {.epochs = 2, .batch_size = 4, .shuffle = true, .validation_split = 0.25,
                               .verbose = 0});

  // floor(10 * 0.75) = 7 training rows (Keras's split_at); rows 7, 8, 9 validate, in order.
  EXPECT_EQ(*val_seen, (std::vector<int64_t>{7, 8, 9, 7, 8, 9}));
  ASSERT_EQ(train_seen->size(), 14u);
  const std::set<int64_t> first(train_seen->begin(), train_seen->begin() + 7);
  EXPECT_EQ(first, (std::set<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(h.contains("val_loss"));
  EXPECT_TRUE(h.contains("val_recorded"));
}

TEST(TrainerFit, RejectsBadOptions) {
  auto ds = separable(16);
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.01});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  EXPECT_THROW(trainer.fit(ds, {.batch_size = 0, .verbose = 0}), Error);
  EXPECT_THROW(trainer.fit(ds, {.validation_split = 1.0, .verbose = 0}), Error);
  EXPECT_THROW(trainer.fit(ds, {.validation = &ds, .validation_split = 0.5, .verbose = 0}), Error);
}

// --- evaluate and predict --------------------------------------------------------------------

TEST(TrainerEvaluate, MatchesAManualMeanLossAndAccuracy) {
  manual_seed(3);
  auto ds = separable(10, 4);
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.01});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cpu());
  const Logs logs = trainer.evaluate(ds, {.batch_size = 4});  // batches of 4, 4, 2

  model->eval();
  NoGradGuard no_grad;
  const Tensor out = (*model)(ds.x());
  const double loss = cross_entropy(out, ds.y()).item();
  const auto pred = argmax(out, 1).to_vector<int64_t>(), truth = ds.y().to_vector<int64_t>();
  double correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == truth[i] ? 1 : 0;

  ASSERT_EQ(logs.size(), 2u);
  EXPECT_EQ(logs[0].first, "loss");
  EXPECT_NEAR(logs[0].second, loss, 1e-6);
  EXPECT_EQ(logs[1].first, "accuracy");
  EXPECT_DOUBLE_EQ(logs[1].second, correct / 10.0);
}

TEST(TrainerPredict, ReturnsEveryOutputInOrder) {
  manual_seed(5);
  auto ds = separable(10, 6);
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.01});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  const Tensor from_dataset = trainer.predict(ds, 3);  // batches of 3, 3, 3, 1
  const Tensor from_tensor = trainer.predict(ds.x(), 4);
  Tensor expected;
  {
    NoGradGuard no_grad;
    expected = (*model)(ds.x());
  }
  EXPECT_EQ(from_dataset.shape(), (Shape{10, 2}));
  EXPECT_EQ(from_tensor.shape(), (Shape{10, 2}));
  EXPECT_TRUE(from_dataset.device().is_cpu());
  const auto want = expected.to_vector<float>(), got = from_dataset.to_vector<float>(),
             got_t = from_tensor.to_vector<float>();
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-6) << i;
    EXPECT_NEAR(got_t[i], want[i], 1e-6) << i;
  }
}

// --- output ----------------------------------------------------------------------------------

TEST(TrainerOutput, VerboseTwoPrintsOneKerasLinePerEpochWithoutCarriageReturns) {
  manual_seed(0);
  auto train = separable(64, 1), val = separable(16, 2);
  auto model = mlp();
  optim::Adam opt(model->parameters(), {.lr = 0.01});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cpu());
  testing::internal::CaptureStdout();
  trainer.fit(train, {.epochs = 3, .batch_size = 16, .validation = &val, .verbose = 2});
  const std::string out = testing::internal::GetCapturedStdout();

  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_EQ(out.find('\b'), std::string::npos);
  std::vector<std::string> lines;
  std::istringstream is(out);
  for (std::string line; std::getline(is, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 6u) << out;
  const std::regex progress(std::string(R"(^4/4 \[={30}\] - \d+s \d+(s|ms|us)/step - loss: )") + kValue +
                            " - accuracy: " + kValue + " - val_loss: " + kValue + " - val_accuracy: " +
                            kValue + "$");
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(lines[2 * e], "Epoch " + std::to_string(e + 1) + "/3");
    EXPECT_TRUE(std::regex_match(lines[2 * e + 1], progress)) << lines[2 * e + 1];
  }
}

TEST(TrainerOutput, VerboseZeroPrintsNothing) {
  auto ds = separable(32);
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.01});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cpu());
  testing::internal::CaptureStdout();
  trainer.fit(ds, {.epochs = 2, .batch_size = 8, .validation_split = 0.25, .verbose = 0});
  trainer.evaluate(ds);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "");
}

TEST(ProgressBar, BarFillsLikeKeras) {
  EXPECT_EQ(ProgressBar::bar(0, 10), "[" + std::string(30, '.') + "]");
  EXPECT_EQ(ProgressBar::bar(5, 10), "[" + std::string(14, '=') + ">" + std::string(15, '.') + "]");
  EXPECT_EQ(ProgressBar::bar(10, 10), "[" + std::string(30, '=') + "]");
  EXPECT_EQ(ProgressBar::bar(1, 3, 6), "[=>....]");
}

TEST(ProgressBar, FormatsValuesFixedOrScientificBelowOneThousandth) {
  EXPECT_EQ(format_metric(0.29051), "0.2905");
  EXPECT_EQ(format_metric(0.91664), "0.9166");
  EXPECT_EQ(format_metric(12.5), "12.5000");
  EXPECT_EQ(format_metric(-0.5), "-0.5000");
  EXPECT_EQ(format_metric(1.23456e-4), "1.2346e-04");
  EXPECT_EQ(format_metric(-5e-7), "-5.0000e-07");
  EXPECT_EQ(format_metric(0.0), "0.0000e+00");  // |0| < 1e-3, as Keras prints it
  EXPECT_EQ(format_metric(0.001), "0.0010");
}

TEST(ProgressBar, FormatsTimePerStepInSecondsMillisecondsOrMicroseconds) {
  EXPECT_EQ(format_time_per_step(2.0), "2s/step");
  EXPECT_EQ(format_time_per_step(0.004), "4ms/step");
  EXPECT_EQ(format_time_per_step(0.0123), "12ms/step");
  EXPECT_EQ(format_time_per_step(85e-6), "85us/step");
  EXPECT_EQ(format_time_per_step(0.0), "0s/step");
}

TEST(ProgressBar, FinalLineHasTheKerasLayout) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(469, 2, f);
    bar.finish({{"loss", 0.29051}, {"accuracy", 0.91664}});
  }
  std::rewind(f);
  char buf[512] = {};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const std::string text(buf, n);
  EXPECT_TRUE(std::regex_match(
      text, std::regex(R"(469/469 \[={30}\] - 0s \d+(s|ms|us)/step - loss: 0\.2905 - accuracy: 0\.9166\n)")))
      << text;
}

TEST(ProgressBar, ForcedTerminalRedrawsInPlaceAndPipesDoNot) {
  auto render = [](int force_terminal, int verbose) {
    std::FILE* f = std::tmpfile();
    {
      ProgressBar bar(5, verbose, f, force_terminal);
      bar.update(5, {{"loss", 0.5}});
      bar.finish({{"loss", 0.25}});
    }
    std::rewind(f);
    char buf[1024] = {};
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    return std::string(buf, n);
  };
  const std::string terminal = render(1, 1);
  EXPECT_EQ(terminal.front(), '\r');
  EXPECT_NE(terminal.find("5/5 [" + std::string(30, '=') + "] - ETA: 0s - loss: 0.5000"), std::string::npos)
      << terminal;
  EXPECT_NE(terminal.find("\r5/5 [" + std::string(30, '=') + "] - 0s"), std::string::npos) << terminal;
  EXPECT_EQ(terminal.back(), '\n');

  const std::string pipe = render(0, 1);
  EXPECT_EQ(pipe.find('\r'), std::string::npos) << pipe;
  EXPECT_EQ(std::count(pipe.begin(), pipe.end(), '\n'), 1);
  EXPECT_EQ(render(1, 0), "");
}

// --- NaN losses -------------------------------------------------------------------------------

TEST(TrainerNaN, NanInTheDataThrowsValueErrorWithAHint) {
  auto clean = separable(64);
  Tensor x = clean.x().clone();
  x.narrow(0, 5, 1).fill_(std::numeric_limits<double>::quiet_NaN());
  data::TensorDataset ds(x, clean.y());
  auto model = mlp();
  optim::Adam opt(model->parameters(), {.lr = 0.01});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cpu());
  try {
    trainer.fit(ds, {.epochs = 3, .batch_size = 16, .verbose = 0});
    FAIL() << "a NaN loss must stop fit";
  } catch (const ValueError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("nan"), std::string::npos) << msg;
    EXPECT_NE(msg.find("epoch 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("TerminateOnNaN"), std::string::npos) << msg;
  }
}

TEST(TrainerNaN, HugeLearningRateThrowsValueError) {
  manual_seed(1);
  auto ds = separable(64);
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 1e30});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  EXPECT_THROW(trainer.fit(ds, {.epochs = 3, .batch_size = 16, .verbose = 0}), ValueError);
}

TEST(TrainerNaN, TerminateOnNaNStopsWithTheLastGoodEpochsWeights) {
  manual_seed(2);
  auto ds = separable(64);
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  auto recorder = std::make_shared<WeightRecorder>();
  auto terminate = std::make_shared<callbacks::TerminateOnNaN>();
  // Epoch 1 (0-based) trains with lr 1e30: its loss overflows.
  auto blow_up = std::make_shared<callbacks::LearningRateScheduler>(
      [](int64_t epoch, double lr) { return epoch == 1 ? 1e30 : lr; });
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  testing::internal::CaptureStderr();
  History h = trainer.fit(ds, {.epochs = 5, .batch_size = 16, .callbacks = {recorder, blow_up, terminate},
                               .verbose = 0});
  const std::string err = testing::internal::GetCapturedStderr();

  EXPECT_TRUE(terminate->terminated());
  EXPECT_NE(err.find("TerminateOnNaN"), std::string::npos) << err;
  ASSERT_EQ(h.epochs(), 2u);
  EXPECT_TRUE(std::isfinite(h["loss"][0]));
  EXPECT_FALSE(std::isfinite(h["loss"][1]));
  ASSERT_GE(recorder->epochs.size(), 1u);
  EXPECT_TRUE(bit_identical(weights_of(*model), recorder->epochs[0]));
}

TEST(TrainerNaN, TerminateOnNaNInTheFirstEpochRestoresTheInitialWeights) {
  auto clean = separable(32);
  Tensor x = clean.x().clone();
  x.narrow(0, 0, 1).fill_(std::numeric_limits<double>::quiet_NaN());
  data::TensorDataset ds(x, clean.y());
  auto model = mlp();
  const auto initial = weights_of(*model);
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  testing::internal::CaptureStderr();
  History h = trainer.fit(ds, {.epochs = 3, .batch_size = 8, .shuffle = false,
                               .callbacks = {std::make_shared<callbacks::TerminateOnNaN>()}, .verbose = 0});
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(h.epochs(), 1u);
  EXPECT_TRUE(bit_identical(weights_of(*model), initial));
}

TEST(TrainerNaN, TerminateOnNaNRecordsWhereItStoppedInTheHistoryAndTheProgressLine) {
  manual_seed(2);
  auto ds = separable(64);
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  auto recorder = std::make_shared<WeightRecorder>();
  auto blow_up = std::make_shared<callbacks::LearningRateScheduler>(
      [](int64_t epoch, double lr) { return epoch == 1 ? 1e30 : lr; });
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  History h = trainer.fit(ds, {.epochs = 5, .batch_size = 16,
                               .callbacks = {recorder, blow_up,
                                             std::make_shared<callbacks::TerminateOnNaN>()},
                               .verbose = 2});
  const std::string err = testing::internal::GetCapturedStderr();
  const std::string out = testing::internal::GetCapturedStdout();

  ASSERT_TRUE(h.stop().has_value());
  const TrainingStop& stop = *h.stop();
  EXPECT_EQ(stop.epoch, 1);
  EXPECT_GE(stop.batch, 0);
  EXPECT_LT(stop.batch, 4);
  EXPECT_EQ(stop.metric, "loss");
  EXPECT_FALSE(std::isfinite(stop.value));
  EXPECT_TRUE(stop.restored);
  EXPECT_EQ(stop.restored_epoch, 0);
  EXPECT_NE(err.find(stop.message), std::string::npos) << err;
  EXPECT_NE(stop.message.find("at epoch 2, batch " + std::to_string(stop.batch + 1)),
            std::string::npos)
      << stop.message;
  EXPECT_NE(stop.message.find("restored the weights from the end of epoch 1"), std::string::npos)
      << stop.message;
  // The stopped epoch's line counts the batches it ran and says why it ended.
  const std::string batches = std::to_string(stop.batch + 1) + "/4 [";
  EXPECT_NE(out.find(batches), std::string::npos) << out;
  EXPECT_NE(out.find(" - stopped: loss " + format_metric(stop.value) + " at batch " +
                     std::to_string(stop.batch + 1) +
                     "; weights from the end of epoch 1 restored\n"),
            std::string::npos)
      << out;
  EXPECT_TRUE(bit_identical(weights_of(*model), recorder->epochs[0]));
  EXPECT_EQ(h.epochs(), 2u);
}

TEST(TrainerNaN, DivergingFromTheStartRestoresTheInitialWeights) {
  manual_seed(3);
  auto ds = separable(64);
  auto model = mlp();
  const auto initial = weights_of(*model);
  optim::SGD opt(model->parameters(), {.lr = 1e30});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  testing::internal::CaptureStderr();
  History h = trainer.fit(ds, {.epochs = 3, .batch_size = 16,
                               .callbacks = {std::make_shared<callbacks::TerminateOnNaN>()},
                               .verbose = 0});
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(h.stop().has_value());
  EXPECT_EQ(h.stop()->epoch, 0);
  EXPECT_TRUE(h.stop()->restored);
  EXPECT_EQ(h.stop()->restored_epoch, -1);
  EXPECT_NE(err.find("restored the weights training started with"), std::string::npos) << err;
  EXPECT_TRUE(bit_identical(weights_of(*model), initial));
}

TEST(TrainerNaN, TerminateOnNaNWithoutACopySaysNoGoodWeightsWereKept) {
  manual_seed(3);
  auto ds = separable(64);
  auto model = mlp();
  const auto initial = weights_of(*model);
  optim::SGD opt(model->parameters(), {.lr = 1e30});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  auto terminate =
      std::make_shared<callbacks::TerminateOnNaN>(callbacks::TerminateOnNaNOptions{
          .restore_last_good = false});
  testing::internal::CaptureStderr();
  History h = trainer.fit(ds, {.epochs = 3, .batch_size = 16, .callbacks = {terminate},
                               .verbose = 0});
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(terminate->terminated());
  ASSERT_TRUE(h.stop().has_value());
  EXPECT_FALSE(h.stop()->restored);
  EXPECT_NE(err.find("no good weights were kept"), std::string::npos) << err;
  EXPECT_FALSE(bit_identical(weights_of(*model), initial));  // left as the bad step made them
}

TEST(TrainerNaN, WithoutTerminateOnNaNTheErrorSaysNoGoodWeightsWereKept) {
  manual_seed(1);
  auto ds = separable(64);
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 1e30});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  std::string msg;
  try {
    trainer.fit(ds, {.epochs = 3, .batch_size = 16, .verbose = 0});
    FAIL() << "a NaN loss must stop fit";
  } catch (const ValueError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("no good weights were kept"), std::string::npos) << msg;
  EXPECT_NE(msg.find("detect_anomaly"), std::string::npos) << msg;
}

TEST(TrainerNaN, DetectAnomalyNamesTheOpTheEpochAndTheBatch) {
  auto clean = separable(64);
  Tensor x = clean.x().clone();
  x.narrow(0, 20, 1).fill_(std::numeric_limits<double>::quiet_NaN());  // in batch 2
  data::TensorDataset ds(x, clean.y());
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  std::string msg;
  try {
    trainer.fit(ds, {.epochs = 2, .batch_size = 16, .shuffle = false, .verbose = 0,
                     .detect_anomaly = true});
    FAIL() << "expected autograd::AnomalyError";
  } catch (const autograd::AnomalyError& e) {
    msg = e.what();
  }
  EXPECT_EQ(msg.rfind("fit: epoch 1, batch 2 of 4: anomaly mode: the forward of ", 0), 0u) << msg;
  EXPECT_NE(msg.find("[16, 8]"), std::string::npos) << msg;  // the first layer's output
  EXPECT_FALSE(autograd::anomaly_mode_enabled());  // fit turned it off again
}

// --- resuming ----------------------------------------------------------------------------------

namespace {

std::unique_ptr<nn::Sequential> mlp_with_dropout() {
  return std::make_unique<nn::Sequential>(std::initializer_list<nn::AnyModule>{
      nn::Linear(2, 16), nn::ReLU(), nn::Dropout(0.2), nn::Linear(16, 2)});
}

// Trains a fresh model from manual_seed(seed) and returns its final weights.
std::vector<std::vector<float>> train_run(uint64_t seed, const data::Dataset& ds, FitOptions options) {
  manual_seed(seed);
  auto model = mlp_with_dropout();
  optim::Adam opt(model->parameters(), {.lr = 0.01});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cpu());
  options.batch_size = 16;
  options.shuffle = true;
  options.verbose = 0;
  trainer.fit(ds, options);
  return weights_of(*model);
}

}  // namespace

TEST(TrainerResume, ResumingFromEpochTwoGivesBitIdenticalWeights) {
  TempDir dir("resume");
  auto ds = separable(100, 9);
  const auto uninterrupted = train_run(42, ds, {.epochs = 4, .validation_split = 0.2});

  const std::string tmpl = (dir.path / "state-{epoch:02d}.safetensors").string();
  auto checkpoint = std::make_shared<callbacks::ModelCheckpoint>(
      tmpl, callbacks::ModelCheckpointOptions{.training_state = true});
  const auto first_half = train_run(42, ds, {.epochs = 2, .validation_split = 0.2, .callbacks = {checkpoint}});
  const std::string epoch2 = (dir.path / "state-02.safetensors").string();
  ASSERT_TRUE(fs::exists(epoch2));
  EXPECT_FALSE(bit_identical(first_half, uninterrupted));

  const auto resumed = train_run(42, ds, {.epochs = 4, .validation_split = 0.2, .resume_from = epoch2});
  EXPECT_TRUE(bit_identical(resumed, uninterrupted));

  // The checkpoint carries the generators' state: the resuming process's own seed is moot.
  const auto resumed_other_seed = train_run(7, ds, {.epochs = 4, .validation_split = 0.2, .resume_from = epoch2});
  EXPECT_TRUE(bit_identical(resumed_other_seed, uninterrupted));
}

TEST(TrainerResume, ResumingWithAStepScheduleGivesBitIdenticalWeights) {
  TempDir dir("resume_schedule");
  auto ds = separable(64, 10);
  // Each run builds its schedule on its own optimizer, as a program started afresh would.
  auto run = [&](int64_t epochs, std::shared_ptr<callbacks::Callback> extra, const std::string& resume_from) {
    manual_seed(11);
    auto model = mlp_with_dropout();
    optim::Adam opt(model->parameters(), {.lr = 0.02});
    auto sched = std::make_shared<callbacks::LearningRateScheduler>(std::make_shared<optim::StepLR>(opt, 1, 0.5));
    std::vector<std::shared_ptr<callbacks::Callback>> cbs = {sched};
    if (extra) cbs.push_back(extra);
    Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
    History h = trainer.fit(ds, {.epochs = epochs, .batch_size = 16, .callbacks = cbs, .verbose = 0,
                                 .resume_from = resume_from});
    return std::make_pair(weights_of(*model), h);
  };
  const auto [uninterrupted, full_history] = run(4, nullptr, "");
  auto checkpoint = std::make_shared<callbacks::ModelCheckpoint>(
      (dir.path / "s{epoch}.safetensors").string(), callbacks::ModelCheckpointOptions{.training_state = true});
  run(2, checkpoint, "");
  const auto [resumed, resumed_history] = run(4, nullptr, (dir.path / "s2.safetensors").string());
  ASSERT_EQ(resumed_history["lr"].size(), 2u);
  EXPECT_DOUBLE_EQ(resumed_history["lr"][0], full_history["lr"][2]);
  EXPECT_DOUBLE_EQ(resumed_history["lr"][1], full_history["lr"][3]);
  EXPECT_TRUE(bit_identical(resumed, uninterrupted));
}

TEST(TrainerShuffle, RepeatedFitCallsSeeFreshOrdersAndManualSeedRepeatsThem) {
  const int64_t n = 32;
  std::vector<int64_t> index(n);
  for (int64_t i = 0; i < n; ++i) index[i] = i;
  data::TensorDataset ds(randn({n, 2}), Tensor::from_vector<int64_t>(index, {n}));
  auto orders = [&](uint64_t seed) {
    manual_seed(seed);
    auto seen = std::make_shared<std::vector<int64_t>>();
    auto model = mlp();
    optim::SGD opt(model->parameters(), {.lr = 0.01});
    Trainer trainer(*model, opt, OutputSquareLoss(), {TargetRecorder(seen, seen)}, Device::cpu());
    trainer.fit(ds, {.epochs = 1, .batch_size = 8, .verbose = 0});  // Keras users often loop like this
    trainer.fit(ds, {.epochs = 1, .batch_size = 8, .verbose = 0});
    return *seen;
  };
  const auto a = orders(5);
  ASSERT_EQ(a.size(), 64u);
  EXPECT_NE(std::vector<int64_t>(a.begin(), a.begin() + n), std::vector<int64_t>(a.begin() + n, a.end()));
  EXPECT_EQ(orders(5), a);
}

TEST(TrainerShuffle, EvaluateAndPredictLeaveTheRandomGeneratorAlone) {
  auto ds = separable(20);
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.01});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cpu());
  manual_seed(9);
  const std::string before = get_rng_state().cpu_engine;
  trainer.evaluate(ds);
  trainer.predict(ds);
  trainer.predict(ds.x());
  EXPECT_TRUE(get_rng_state().cpu_engine == before) << "the CPU generator moved";
}

TEST(TrainerNaN, EarlyStoppingDoesNotHideANanLoss) {
  auto clean = separable(32);
  Tensor x = clean.x().clone();
  x.narrow(0, 3, 1).fill_(std::numeric_limits<double>::quiet_NaN());
  data::TensorDataset ds(x, clean.y());
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  auto stop = std::make_shared<callbacks::EarlyStopping>(callbacks::EarlyStoppingOptions{.monitor = "loss"});
  EXPECT_THROW(trainer.fit(ds, {.epochs = 3, .batch_size = 8, .callbacks = {stop}, .verbose = 0}), ValueError);
}

// --- devices -------------------------------------------------------------------------------------

TEST(TrainerDevice, FitKeepsACpuTrainersModelOnTheCpu) {
  auto ds = separable(16);
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.01});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  EXPECT_EQ(trainer.device(), Device::cpu());
  trainer.fit(ds, {.epochs = 1, .batch_size = 8, .verbose = 0});
  for (const Tensor& p : model->parameters()) EXPECT_TRUE(p.device().is_cpu());
}

TEST(TrainerDevice, FitMovesTheModelToTheTrainersGpu) {
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
  manual_seed(0);
  auto ds = separable(128);
  auto model = mlp();  // built on the CPU
  optim::Adam opt(model->parameters(), {.lr = 0.05});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {metrics::Accuracy()});  // Device::best()
  EXPECT_TRUE(trainer.device().is_cuda());
  History h = trainer.fit(ds, {.epochs = 3, .batch_size = 32, .validation_split = 0.25, .verbose = 0});
  for (const Tensor& p : model->parameters()) EXPECT_TRUE(p.device().is_cuda());
  EXPECT_LT(h["loss"].back(), h["loss"].front());
  EXPECT_TRUE(trainer.predict(ds).device().is_cpu());
}

TEST(Logs, LogValueFindsANameAndListsThePresentOnesWhenMissing) {
  const Logs logs = {{"loss", 0.5}, {"accuracy", 0.875}};
  EXPECT_EQ(log_value(logs, "accuracy"), 0.875);
  try {
    log_value(logs, "val_loss");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'val_loss'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("loss, accuracy"), std::string::npos) << e.what();
  }
}

// --- one way to pass a dataset ---------------------------------------------------------------

TEST(TrainerDatasets, FitEvaluateAndPredictTakeSharedDatasetsAsDataLoaderDoes) {
  manual_seed(3);
  auto train = std::make_shared<data::TensorDataset>(separable(64, 1));
  auto val = std::make_shared<data::TensorDataset>(separable(32, 2));
  auto model = mlp();
  optim::Adam opt(model->parameters(), {.lr = 0.05});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cpu());
  // The same shared_ptr a DataLoader takes.
  data::DataLoader loader(train, {.batch_size = 16});
  EXPECT_EQ(loader.size(), 4);
  History h = trainer.fit(train, {.epochs = 2, .batch_size = 16, .validation = val, .verbose = 0});
  EXPECT_EQ(h["val_loss"].size(), 2u);
  const std::shared_ptr<const data::Dataset> as_base = val;
  EXPECT_EQ(trainer.evaluate(as_base).size(), 2u);
  EXPECT_EQ(trainer.predict(val, 8).shape(), (Shape{32, 2}));
}

TEST(TrainerDatasets, AReferenceOrPointerIsStillAcceptedAndGivesTheSameRun) {
  auto run = [](auto pass) {
    manual_seed(4);
    auto train = std::make_shared<data::TensorDataset>(separable(48, 5));
    auto val = std::make_shared<data::TensorDataset>(separable(16, 6));
    auto model = mlp();
    optim::SGD opt(model->parameters(), {.lr = 0.1});
    Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
    return pass(trainer, train, val)["val_loss"];
  };
  const auto shared = run([](Trainer& t, auto train, auto val) {
    return t.fit(train, {.epochs = 2, .batch_size = 8, .validation = val, .verbose = 0});
  });
  const auto borrowed = run([](Trainer& t, auto train, auto val) {
    return t.fit(*train, {.epochs = 2, .batch_size = 8, .validation = val.get(), .verbose = 0});
  });
  EXPECT_EQ(shared, borrowed);
  // A temporary is moved into shared ownership rather than borrowed.
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  EXPECT_EQ(trainer.fit(separable(16, 7), {.batch_size = 8, .validation = separable(8, 8), .verbose = 0})
                .epochs(),
            1u);
}

TEST(TrainerDatasets, ANullDatasetIsRefusedNamingTheCall) {
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  const std::shared_ptr<data::TensorDataset> none;
  try {
    trainer.fit(none, {.verbose = 0});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "fit: the dataset is null");
  }
  EXPECT_THROW(trainer.evaluate(none), Error);
  EXPECT_THROW(trainer.predict(none), Error);
}

// --- labels out of range -----------------------------------------------------------------------

TEST(TrainerLabels, AnOutOfRangeLabelNamesTheEpochTheBatchTheValuesAndTheirRows) {
  // 8 samples, 2 classes; rows 2 and 5 carry labels 7 and -1.
  std::vector<int64_t> labels{0, 1, 7, 0, 1, -1, 0, 1};
  data::TensorDataset ds(randn({8, 2}), Tensor::from_vector<int64_t>(labels, {8}));
  auto model = mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
  try {
    trainer.fit(ds, {.batch_size = 8, .shuffle = false, .verbose = 0});
    FAIL() << "expected an error";
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()),
              "fit: epoch 1, batch 1 of 1: CrossEntropy: 2 of 8 labels are outside the class range "
              "[0, 2) of output [8, 2]: label 7 at row 2, label -1 at row 5 (rows of the batch; a "
              "label is a class index 0 to 1, or ignore_index -100)");
  }
  try {
    trainer.evaluate(ds, {.batch_size = 4});
    FAIL() << "expected an error";
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("evaluate, batch 1 of 2: CrossEntropy: 1 of 4 labels", 0), 0u)
        << e.what();
  }
}
