// Small pieces the samples share: the command-line options every sample takes, and for
// the raw-API samples shuffled mini-batches from CPU tensors, an Adam update written with
// tensor ops, and test accuracy. (The library's optimizers and data loader replace the
// latter in the Trainer-based samples.)
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <ember/ember.h>

namespace samples {

using namespace ember;

// --- option checks ---------------------------------------------------------------------------
// Each error says in words what the option accepts; CLI11 prefixes the option's name:
// "--epochs: must be a whole number >= 1, got -3". (CLI11's own PositiveNumber printed the
// range's upper end, DBL_MAX, as a 309-digit number, and let "--seed -1" wrap around.)

// A whole number from `min` to `max` (or >= min when max is the type's largest).
inline CLI::Validator whole_number(int64_t min, int64_t max = std::numeric_limits<int64_t>::max()) {
  const std::string accepted =
      max == std::numeric_limits<int64_t>::max()
          ? "a whole number >= " + std::to_string(min)
          : "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        int64_t v = 0;
        const char* end = text.data() + text.size();
        const auto [ptr, ec] = std::from_chars(text.data(), end, v);
        if (ec == std::errc::result_out_of_range) return "must be " + accepted + ", got " + text + " (out of range)";
        if (ec != std::errc() || ptr != end || v < min || v > max) return "must be " + accepted + ", got " + text;
        return "";
      },
      // What --help shows after the type: "INT:POSITIVE", "INT:[0, 10]".
      max != std::numeric_limits<int64_t>::max() ? "[" + std::to_string(min) + ", " + std::to_string(max) + "]"
      : min == 1                                 ? "POSITIVE"
      : min == 0                                 ? "NONNEGATIVE"
                                                 : ">= " + std::to_string(min));
}

// A whole number from 0 to 2^64 - 1 (a seed).
inline CLI::Validator unsigned_whole_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        uint64_t v = 0;
        const char* end = text.data() + text.size();
        const auto [ptr, ec] = std::from_chars(text.data(), end, v);
        if (ec != std::errc() || ptr != end) {
          return "must be a whole number from 0 to " +
                 std::to_string(std::numeric_limits<uint64_t>::max()) + ", got " + text;
        }
        return "";
      },
      "NONNEGATIVE");
}

// A finite number > 0 (a learning rate, a temperature).
inline CLI::Validator positive_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v) || v <= 0.0) {
          return "must be a number > 0, got " + text;
        }
        return "";
      },
      "POSITIVE");
}

// One of `choices`: "must be one of cosine, none; got linear".
inline CLI::Validator one_of(std::vector<std::string> choices) {
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        if (std::find(choices.begin(), choices.end(), text) != choices.end()) return "";
        return "must be one of " + list + "; got " + text;
      },
      "{" + list + "}");
}

// cpu, cuda, cuda:N or best (checked as text: whether that GPU exists is start()'s to say).
inline CLI::Validator device_name() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (text == "cpu" || text == "cuda" || text == "best") return "";
        if (text.rfind("cuda:", 0) == 0 && text.size() > 5 &&
            text.find_first_not_of("0123456789", 5) == std::string::npos) {
          return "";
        }
        return "must be cpu, cuda, cuda:N (N a GPU number such as 0) or best, got " + text;
      },
      "{cpu, cuda, cuda:N, best}");
}

// The options every sample takes; each sample sets its own defaults before parsing.
struct CommonOptions {
  int64_t epochs = 5;
  int64_t batch_size = 32;
  double lr = 1e-3;
  std::string device = "best";
  std::string data = data::default_fashion_mnist_dir();
  uint64_t seed = 0;
  int verbose = 1;
  bool quick = false;
  std::string precision = "32";
  // Trained by the Trainer, which shards the data over the ranks of a process group: then
  // --batch-size is the global batch, split over the ranks (start() divides it), as Keras
  // reads the batch size under a distribution strategy. false for the hand-written loops,
  // where each rank trains alone.
  bool data_parallel = true;
};

// --epochs, --batch-size, --lr, --device, --data, --seed, --verbose and --quick
// (`quick_help` says what --quick does in this sample).
inline void add_common_options(CLI::App& app, CommonOptions& o, const std::string& quick_help) {
  app.option_defaults()->always_capture_default();  // --help shows each default
  app.add_option("--epochs", o.epochs, "passes over the training set")->check(whole_number(1));
  app.add_option("--batch-size", o.batch_size, "examples per step")->check(whole_number(1));
  app.add_option("--lr", o.lr, "learning rate")->check(positive_number());
  app.add_option("--device", o.device, "cpu, cuda, cuda:N or best")->check(device_name());
  app.add_option("--data", o.data, "folder with the Fashion-MNIST IDX files (.gz or not)");
  app.add_option("--seed", o.seed, "random seed")->check(unsigned_whole_number());
  app.add_option("--verbose", o.verbose, "0 silent, 1 progress bar, 2 one line per epoch")
      ->check(one_of({"0", "1", "2"}));
  app.add_flag("--quick", o.quick, quick_help);
}

// --precision: FitOptions::precision for the samples that train through a Trainer, and
// MixedPrecision below for the hand-written loops.
inline void add_precision_option(CLI::App& app, CommonOptions& o) {
  app.add_option("--precision", o.precision,
                 "32, bf16-mixed (autocast to bfloat16) or 16-mixed (float16 and loss scaling)")
      ->check(one_of({"32", "bf16-mixed", "16-mixed"}));
}

// --precision in a hand-written loop, as PyTorch's mixed-precision recipe has it: an
// autocast region around the forward pass and the loss, and a loss scaler around backward
// and the step (one that passes everything through unless the precision is "16-mixed").
//   { auto region = mp.autocast(); loss = cross_entropy(model(x), y); }
//   mp.backward_and_step(loss, opt);
struct MixedPrecision {
  explicit MixedPrecision(const std::string& precision)
      : enabled(precision != "32"),
        dtype(precision == "16-mixed" ? kFloat16 : kBFloat16),
        scaler({.enabled = precision == "16-mixed"}) {}
  AutocastGuard autocast() const { return AutocastGuard(dtype, enabled); }
  // backward, then `before_step` (gradient clipping, say) on the unscaled gradients, then
  // the step (skipped when a float16 gradient overflowed) and the scale's update.
  void backward_and_step(const Tensor& loss, optim::Optimizer& opt,
                         const std::function<void()>& before_step = {}) {
    scaler.scale(loss).backward();
    if (before_step) {
      scaler.unscale_(opt);
      before_step();
    }
    scaler.step(opt);
    scaler.update();
  }
  bool enabled;
  DType dtype;
  optim::GradScaler scaler;
};

// Seeds the generators, parses the device and says which one runs (and why not the GPU).
// Under `ember launch` (WORLD_SIZE above 1 in the environment) it first joins the process
// group, so the Trainer's fit trains data-parallel (Note [Distributed fit] in trainer.h),
// and each rank takes the GPU of its LOCAL_RANK; --batch-size is then split over the ranks
// (CommonOptions::data_parallel), so N ranks train as one process with that batch.
inline Device start(CommonOptions& o) {
  manual_seed(o.seed);
  Device device = Device::parse(o.device);
  if (const char* world = std::getenv("WORLD_SIZE"); world != nullptr && std::atoi(world) > 1) {
    // NCCL for a model on the GPU, Gloo for one on the CPU.
    dist::init_process_group(
        {.backend = device.is_cuda() && dist::is_nccl_available() ? "nccl" : "gloo"});
    std::atexit([] { dist::destroy_process_group(); });
    if (device.is_cuda()) device = Device::cuda(dist::get_local_rank());
    std::printf("rank %d of %d (%s)\n", dist::get_rank(), dist::get_world_size(),
                dist::get_backend().c_str());
    if (o.data_parallel) {
      const int64_t world_size = dist::get_world_size();
      const int64_t per_rank = std::max<int64_t>(1, o.batch_size / world_size);
      std::printf("batch: %lld in all, %lld per rank%s\n", static_cast<long long>(o.batch_size),
                  static_cast<long long>(per_rank),
                  o.batch_size % world_size != 0 ? " (the rest of the division dropped)" : "");
      o.batch_size = per_rank;
    }
  }
  std::printf("device: %s%s\n", device.str().c_str(),
              cuda::is_available() ? "" : (" (no GPU: " + cuda::unavailable_reason() + ")").c_str());
  return device;
}

// The --quick check that a sample learns: "the loss fell: A -> B" (or "did not fall"),
// from the loss of the first batch to that of the end of training. The test run looks
// for it before the "test accuracy" line.
inline void print_loss_check(double first, double last) {
  std::printf("%s: %.4f -> %.4f\n", last < first ? "the loss fell" : "the loss did not fall",
              first, last);
}

// print_loss_check for a Trainer run: the first batch's loss against the last running
// mean (reading the loss each batch makes the host wait, so only --quick adds it).
class LossCheck : public callbacks::Callback {
 public:
  bool wants_batch_logs() const override { return true; }
  void on_batch_end(Trainer&, int64_t, const Logs& logs) override {
    const std::optional<double> loss = callbacks::find_log(logs, "loss");
    if (!loss) return;
    if (!first_) first_ = *loss;
    last_ = *loss;
  }
  void on_train_end(Trainer&) override {
    if (first_) print_loss_check(*first_, last_);
  }

 private:
  std::optional<double> first_;
  double last_ = 0.0;
};

// The callbacks a Trainer-based sample adds for --quick (none otherwise).
inline std::vector<std::shared_ptr<callbacks::Callback>> quick_check(const CommonOptions& o) {
  if (!o.quick) return {};
  return {std::make_shared<LossCheck>()};
}

// The first `n` examples of `dataset` (all of them when n >= its size).
inline std::shared_ptr<const data::Dataset> first_n(std::shared_ptr<const data::Dataset> dataset,
                                                     int64_t n) {
  if (n >= dataset->size()) return dataset;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  return std::make_shared<data::Subset>(std::move(dataset), std::move(idx));
}

// Copies the rows idx[begin, end) of a CPU tensor into one batch on `device`.
inline Tensor gather_rows(const Tensor& src, const std::vector<int64_t>& idx, size_t begin,
                          size_t end, Device device) {
  Shape shape = src.shape();
  shape[0] = static_cast<int64_t>(end - begin);
  Tensor batch = empty(shape, {.dtype = src.dtype()});
  const size_t row_bytes = src.nbytes() / static_cast<size_t>(src.size(0));
  const auto* from = static_cast<const char*>(src.data_ptr());
  auto* to = static_cast<char*>(batch.data_ptr());
  for (size_t i = begin; i < end; ++i) {
    std::memcpy(to + (i - begin) * row_bytes, from + idx[i] * row_bytes, row_bytes);
  }
  return batch.to(device);
}

// Adam (Kingma & Ba) with bias correction, as tensor ops under NoGradGuard.
class HandAdam {
 public:
  explicit HandAdam(std::vector<Tensor> params, double lr = 1e-3)
      : params_(std::move(params)), lr_(lr) {
    for (const Tensor& p : params_) {
      m_.push_back(zeros_like(p));
      v_.push_back(zeros_like(p));
    }
  }
  void zero_grad() {
    for (Tensor& p : params_) p.set_grad(Tensor());
  }
  void step() {
    NoGradGuard no_grad;  // p -= lr * m_hat / (sqrt(v_hat) + eps)
    ++t_;
    const double c1 = 1.0 - std::pow(kBeta1, static_cast<double>(t_));
    const double c2 = 1.0 - std::pow(kBeta2, static_cast<double>(t_));
    for (size_t k = 0; k < params_.size(); ++k) {
      Tensor g = params_[k].grad();
      if (!g.defined()) continue;
      m_[k].mul_(kBeta1).add_(g, 1.0 - kBeta1);
      v_[k].mul_(kBeta2).add_(g * g, 1.0 - kBeta2);
      params_[k].add_((m_[k] / c1) / (sqrt(v_[k] / c2) + kEps), -lr_);
    }
  }

 private:
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
  std::vector<Tensor> params_, m_, v_;
  double lr_;
  int64_t t_ = 0;
};

// Fraction of rows whose argmax of `predict(x)` equals the label.
template <typename Predict>
double accuracy(Predict predict, const Tensor& images, const Tensor& labels, Device device,
                int64_t batch_size = 1000) {
  NoGradGuard no_grad;
  const int64_t n = labels.numel();
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i += batch_size) {
    const int64_t len = std::min(batch_size, n - i);
    Tensor x = images.narrow(0, i, len).to(device);
    Tensor y = labels.narrow(0, i, len).to(device);
    const Tensor logits = predict(x);
    correct += sum(eq(argmax(logits, 1), y)).item<int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace samples
