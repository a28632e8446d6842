// The bundled models' training step on CUDA (samples/models.h: the fashion CNN and the
// 784-256-10 MLP) in float32, TF32 and bf16-mixed, each timed against the float32 step of
// the same model and batch measured in the same run: what TF32 and bfloat16 autocast buy.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ember/benchmarks/harness.h"
#include "ember/core/autocast.h"
#include "ember/core/cuda_context.h"
#include "ember/core/cuda_settings.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"
#include "ember/layers/losses.h"
#include "ember/layers/module.h"
#include "ember/optim/adam.h"
#include "models.h"  // samples/models.h: the models exactly as the samples build them

namespace {

using namespace ember;
using bench::Json;
using bench::Report;
using bench::Timing;

enum class Precision { kFloat32, kTf32, kBf16Mixed };

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kFloat32: return "float32";
    case Precision::kTf32: return "TF32";
    case Precision::kBf16Mixed: return "bf16-mixed";
  }
  return "unknown";
}

// Sets cuda::allow_tf32 for its lifetime and restores the previous value after (also when
// an exception unwinds), so that no later case runs with another case's setting.
class Tf32Guard {
 public:
  explicit Tf32Guard(bool on) : prev_(cuda::allow_tf32()) { cuda::set_allow_tf32(on); }
  ~Tf32Guard() { cuda::set_allow_tf32(prev_); }
  Tf32Guard(const Tf32Guard&) = delete;
  Tf32Guard& operator=(const Tf32Guard&) = delete;

 private:
  bool prev_;
};

struct ModelCase {
  const char* name;
  std::function<std::shared_ptr<nn::Module>()> make;
};

// Steps of the sanity check before timing: the loss must stay finite and go down.
constexpr int kSanitySteps = 20;

// One model at one batch size in one precision: a fresh model (the same initial weights
// for every precision), Adam (lr 1e-3, as the samples) and a fixed random batch of
// Fashion-MNIST's shape (pixels in [0, 1), labels in [0, 10)).
struct TrainSetup {
  std::shared_ptr<nn::Module> model;
  std::unique_ptr<optim::Adam> opt;
  loss::CrossEntropy loss_fn;
  Tensor x, y;
  bool mixed;

  TrainSetup(const ModelCase& mc, int64_t batch, Precision p, Device gpu)
      : mixed(p == Precision::kBf16Mixed) {
    manual_seed(1234);
    model = mc.make();
    model->to(gpu);
    model->train();
    opt = std::make_unique<optim::Adam>(model->parameters(), optim::AdamOptions{.lr = 1e-3});
    x = rand({batch, 1, 28, 28}).to(gpu);
    std::vector<int64_t> labels(static_cast<size_t>(batch));
    uint64_t s = 88172645463325252ull;
    for (auto& l : labels) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      l = static_cast<int64_t>(s % 10);
    }
    y = Tensor::from_vector(labels, {batch}, gpu);
  }

  // One step as Trainer::fit runs it (python_free_api/trainer.cpp): forward and loss in an
  // autocast region (bfloat16 for "bf16-mixed", none otherwise, float32 weights either
  // way), then zero_grad, backward and the optimizer's step outside it. Returns the loss
  // (float32: losses cast up under autocast), still on the device.
  Tensor step() {
    Tensor loss;
    {
      AutocastGuard autocast(kBFloat16, mixed);
      const Tensor out = (*model)(x);
      loss = loss_fn(out, y);
    }
    opt->zero_grad();
    loss.backward();
    opt->step();
    return loss;
  }
};

// Sanity before timing: the loss is finite at every one of kSanitySteps steps on the same
// batch, and lower at the last than at the first. Fills *losses; reports and returns
// false otherwise.
bool sane(Report& report, const std::string& label, TrainSetup& su,
          std::vector<double>* losses) {
  bool finite = true;
  for (int i = 0; i < kSanitySteps; ++i) {
    const double l = su.step().item<float>();
    losses->push_back(l);
    finite = finite && std::isfinite(l);
  }
  if (finite && losses->back() < losses->front()) return true;
  std::string seen;
  for (size_t i = 0; i < losses->size(); ++i) {
    seen += (i ? ", " : "") + bench::fmt("%.4g", (*losses)[i]);
  }
  report.fail("train step " + label + ": the loss is " +
              (finite ? "not lower after " : "not finite within ") +
              std::to_string(kSanitySteps) + " steps (" + seen + ")");
  return false;
}

// ms per step against the float32 step of the same model and batch (NaN when that one
// failed), and images per second.
bench::Row make_row(const std::string& label, const char* model, int64_t batch, Precision p,
                    const Timing& t, double float32_ms, const std::vector<double>& losses,
                    int64_t parameters) {
  bench::Row row;
  row.name = label;
  row.ember = t;
  row.baseline = "ember float32 step";
  row.baseline_ms = float32_ms;
  row.unit = "images/s";
  row.throughput = static_cast<double>(batch) / (t.median_ms * 1e-3);
  row.note = "loss " + bench::fmt("%.3f", losses.front()) + " -> " +
             bench::fmt("%.3f", losses.back()) + " in " + std::to_string(kSanitySteps) +
             " steps";
  row.extra = {{"model", model},
               {"batch", batch},
               {"precision", precision_name(p)},
               {"ms_per_step", t.median_ms},
               {"parameters", parameters},
               {"sanity_losses", losses}};
  return row;
}

void run(Report& report) {
  report.begin();
  const bench::Options& opts = report.options();
  const int dev = 0;
  const Device gpu = Device::cuda(dev);
  const cudaStream_t stream = cuda::compute_stream(dev);

  report.set("sanity_steps", kSanitySteps);
  std::printf("# ember: one training step of a bundled model on cuda:0 = forward and "
              "cross-entropy loss (in an autocast region for bf16-mixed), zero_grad, "
              "backward, Adam step, on a fixed random batch of 28x28 images\n");
  std::printf("# precisions: float32 (TF32 off), TF32 (cuda::set_allow_tf32(true): cuBLAS "
              "and cuDNN), bf16-mixed (AutocastGuard(kBFloat16), float32 weights, as "
              "Trainer precision \"bf16-mixed\")\n");
  std::printf("# baseline: ember's float32 step of the same model and batch in this run; "
              "throughput in images/s\n");
  report.table("images/s");

  const std::vector<ModelCase> models = {
      {"fashion CNN", [] { return std::make_shared<samples::FashionCnn>(); }},
      {"fashion MLP",
       [] { return std::make_shared<nn::Sequential>(samples::fashion_mlp_model()); }},
  };
  const Precision precisions[] = {Precision::kFloat32, Precision::kTf32,
                                  Precision::kBf16Mixed};
  for (const ModelCase& mc : models) {
    for (const int64_t batch : {int64_t{64}, int64_t{256}}) {
      // The float32 step of this model and batch: every row's baseline (NaN until measured).
      double float32_ms = std::nan("");
      for (const Precision p : precisions) {
        const std::string label = std::string(mc.name) + " batch " + std::to_string(batch) +
                                  ", " + precision_name(p);
        const Tf32Guard tf32(p == Precision::kTf32);
        // A case that throws fails alone (its row left out); the others still run.
        try {
          TrainSetup su(mc, batch, p, gpu);
          std::vector<double> losses;
          if (!sane(report, label, su, &losses)) continue;
          const Timing t = bench::time_on_stream(stream, [&] { (void)su.step(); }, opts);
          if (p == Precision::kFloat32) float32_ms = t.median_ms;
          report.add(make_row(label, mc.name, batch, p, t, float32_ms, losses,
                              su.model->num_parameters()));
        } catch (const Error& e) {
          report.fail("train step " + label + ": " + e.what());
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return ember::bench::run_benchmark(
      argc, argv, "bench_train_step",
      "The bundled models' training step in float32, TF32 and bf16-mixed", run);
}
