// Trainer: Keras's fit / evaluate / predict for an nn::Module, an optimizer, a loss and
// metrics, with a progress line, validation, callbacks and a returned History.
#pragma once

#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"
#include "ember/layers/losses.h"
#include "ember/layers/module.h"
#include "ember/optim/grad_scaler.h"
#include "ember/optim/optimizer.h"
#include "ember/python_free_api/data/dataloader.h"
#include "ember/python_free_api/data/dataset.h"
#include "ember/python_free_api/data/transforms.h"
#include "ember/python_free_api/metrics.h"
#include "ember/python_free_api/progress.h"

namespace ember {

namespace callbacks {
class Callback;
}

// Where and why fit() stopped on a bad value (callbacks::TerminateOnNaN): recorded in
// the History and shown at the end of the epoch's progress line.
struct TrainingStop {
  int64_t epoch = 0;   // 0-based, as the callbacks' hooks count
  int64_t batch = -1;  // 0-based batch of that epoch; -1 when seen only at the epoch's end
  std::string metric = "loss";
  double value = 0.0;  // the non-finite value
  bool restored = false;        // good weights were put back
  int64_t restored_epoch = -1;  // whose end they are from; -1: the weights fit started with
  std::string message;          // the sentence printed when stopping
};

// Metric name -> one value per epoch ("loss", "accuracy", "val_loss", "val_accuracy").
class EMBER_API History {
 public:
  void append(const Logs& logs);
  // Set when training stopped on a bad value (see TrainingStop).
  void set_stop(TrainingStop stop) { stop_ = std::move(stop); }
  const std::optional<TrainingStop>& stop() const { return stop_; }
  const std::vector<double>& operator[](const std::string& name) const;  // throws naming it
  bool contains(const std::string& name) const { return values_.count(name) != 0; }
  std::vector<std::string> keys() const;
  size_t epochs() const;

 private:
  std::map<std::string, std::vector<double>> values_;
  std::vector<std::string> order_;
  std::optional<TrainingStop> stop_;
};

EMBER_API std::ostream& operator<<(std::ostream& os, const Logs& logs);

struct FitOptions {
  int64_t epochs = 1;
  int64_t batch_size = 32;
  bool shuffle = true;
  // Validation data (a shared_ptr, or a pointer borrowed for the call: see Note [Passing
  // datasets] in dataset.h), or the last fraction of the training data (taken before
  // shuffling).
  data::DatasetRef validation;
  double validation_split = 0.0;
  std::vector<std::shared_ptr<callbacks::Callback>> callbacks;
  int verbose = 1;          // 0 silent, 1 progress bar, 2 one line per epoch
  int64_t initial_epoch = 0;
  bool drop_last = false;
  data::Compose transform;  // applied to training inputs only (augmentation)
  // Resume from a training checkpoint written by ModelCheckpoint(..., {.training_state = true})
  // or io::save_checkpoint: restores model, optimizer, RNG and the epoch to start from.
  std::string resume_from;
  // Lightning's names (docs/mixed-precision.md): "32" (float32), "bf16-mixed" (forward and
  // loss in an AutocastGuard(kBFloat16) region, weights float32), "16-mixed" (the same in
  // float16, with an optim::GradScaler around backward and step). The validation passes
  // run in the same autocast region.
  std::string precision = "32";
  // Anomaly mode (Note [Anomaly mode] in core/autograd.h) for the whole fit: the first
  // op or gradient that turns NaN or Inf raises autograd::AnomalyError naming the op and
  // the epoch and batch. Slow (every op's output is read back): for finding the op.
  bool detect_anomaly = false;
};

struct EvaluateOptions {
  int64_t batch_size = 32;
  int verbose = 0;
  std::string precision = "32";  // as FitOptions::precision (no scaler: no gradients)
};

// The accepted FitOptions::precision strings, and a check that names them.
EMBER_API const std::vector<std::string>& precision_options();
EMBER_API void check_precision(const std::string& precision, const char* where);

// Note [Distributed fit]
// When fit() starts with a process group of more than one rank (dist::init_process_group,
// e.g. under `ember launch`), it trains data-parallel as PyTorch Lightning's DDP strategy
// does: the model is wrapped in dist::DistributedDataParallel for the fit (rank 0's
// weights broadcast, gradients averaged during backward), each epoch's shuffle seed comes
// from rank 0, and every rank reads its own shard of the training and validation data
// (data::DistributedSampler; batch_size is per rank, so the global batch is world_size
// times it). The epoch's loss and metrics are averaged over the ranks (weighted by the
// examples each saw), so every rank logs, and its callbacks decide on, the same values.
// Only rank 0 prints the progress line and runs the callbacks that write files
// (Callback::main_process_only). resume_from works with the same world size (every rank
// reads the checkpoint). evaluate() and predict() are not distributed: each rank runs
// them over the whole dataset it is given.
class EMBER_API Trainer {
 public:
  // The model is moved to `device` (default: Device::best()) by fit/evaluate/predict.
  Trainer(nn::Module& model, optim::Optimizer& optimizer, loss::AnyLoss loss,
          std::initializer_list<metrics::AnyMetric> metrics = {},
          std::optional<Device> device = std::nullopt);
  Trainer(nn::Module& model, optim::Optimizer& optimizer, loss::AnyLoss loss,
          std::vector<metrics::AnyMetric> metrics, std::optional<Device> device = std::nullopt);

  // Datasets are passed as std::shared_ptr<const data::Dataset>, as to a DataLoader; a
  // reference also works, borrowed for the call (Note [Passing datasets] in dataset.h).
  History fit(data::DatasetRef train, FitOptions options = {});
  // Loss and metrics over the dataset, in eval mode, without gradients.
  Logs evaluate(data::DatasetRef data, EvaluateOptions options = {});
  // The model's outputs for every example, in order, on the CPU.
  Tensor predict(data::DatasetRef data, int64_t batch_size = 32);
  Tensor predict(const Tensor& x, int64_t batch_size = 32);

  nn::Module& model() { return model_; }
  optim::Optimizer& optimizer() { return optimizer_; }
  Device device() const { return device_; }
  // The loss scaler of a "16-mixed" fit (null otherwise), for callbacks and checkpoints.
  optim::GradScaler* grad_scaler() { return scaler_.get(); }
  // Set by a callback to end fit() after the current epoch (or batch).
  void stop_training(bool stop = true) { stop_ = stop; }
  bool stopping() const { return stop_; }
  // The epoch fit() is in (0-based), for callbacks that save training checkpoints.
  int64_t epoch() const { return epoch_; }
  // Set by a callback that stops training on a bad value: stops like stop_training(), and
  // fit() shows it on the progress line and puts it in the History.
  void record_stop(TrainingStop stop) {
    stop_info_ = std::move(stop);
    stop_ = true;
  }
  const std::optional<TrainingStop>& stop_info() const { return stop_info_; }
  // Whether this process prints and writes files: always, except in a distributed fit on
  // a rank other than 0 (Note [Distributed fit]).
  bool is_main_process() const { return main_process_; }

 private:
  // One pass over `loader`: trains when `train`, else evaluates without gradients.
  // `where` ("fit: epoch 3", "evaluate") prefixes a loss's shape or dtype error.
  // `forward` runs the model (the model itself, or its DistributedDataParallel wrapper);
  // `across_ranks` averages the logs over the process group.
  Logs run_epoch(data::DataLoader& loader, bool train, ProgressBar* bar,
                 const std::vector<std::shared_ptr<callbacks::Callback>>& cbs,
                 const std::string& where, nn::Module& forward, bool across_ranks);

  nn::Module& model_;
  optim::Optimizer& optimizer_;
  loss::AnyLoss loss_;
  std::vector<std::shared_ptr<metrics::Metric>> metrics_;
  std::vector<std::shared_ptr<metrics::Metric>> val_metrics_;
  Device device_;
  std::string precision_ = "32";  // of the loop being run
  std::unique_ptr<optim::GradScaler> scaler_;
  bool stop_ = false;
  std::optional<TrainingStop> stop_info_;
  int64_t epoch_ = 0;
  bool main_process_ = true;
};

}  // namespace ember
