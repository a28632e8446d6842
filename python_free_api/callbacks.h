// Keras-style callbacks for Trainer::fit: EarlyStopping, ModelCheckpoint, CSVLogger,
// TerminateOnNaN, LearningRateScheduler and TensorBoard.
#pragma once

#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "ember/core/base/export.h"
#include "ember/layers/module.h"
#include "ember/optim/lr_scheduler.h"
#include "ember/python_free_api/progress.h"
#include "ember/python_free_api/tensorboard.h"

namespace ember {
class Trainer;
}

namespace ember::callbacks {

class EMBER_API Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(Trainer& /*trainer*/) {}
  virtual void on_train_end(Trainer& /*trainer*/) {}
  virtual void on_epoch_begin(Trainer& /*trainer*/, int64_t /*epoch*/) {}
  // `logs` holds the epoch's training and validation values; a callback may add to it.
  virtual void on_epoch_end(Trainer& /*trainer*/, int64_t /*epoch*/, Logs& /*logs*/) {}
  // Only called for callbacks that want_batch_logs() (reading the loss every batch
  // makes the host wait for the GPU).
  virtual void on_batch_end(Trainer& /*trainer*/, int64_t /*batch*/, const Logs& /*logs*/) {}
  virtual bool wants_batch_logs() const { return false; }
};

// The value of `name` in `logs`, if present.
EMBER_API std::optional<double> find_log(const Logs& logs, const std::string& name);
// A copy of a module's current values, and putting them back.
EMBER_API nn::StateDict snapshot(const nn::Module& module);

enum class Mode { Auto, Min, Max };

struct EarlyStoppingOptions {
  std::string monitor = "val_loss";
  double min_delta = 0.0;
  int64_t patience = 0;
  Mode mode = Mode::Auto;  // Auto: max for accuracy/auc/precision/recall/f1, else min
  bool restore_best_weights = false;
  int verbose = 0;
};

class EMBER_API EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(EarlyStoppingOptions options = {});
  void on_train_begin(Trainer& trainer) override;
  void on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) override;
  void on_train_end(Trainer& trainer) override;
  // The epoch (0-based) training stopped at, or -1.
  int64_t stopped_epoch() const { return stopped_epoch_; }
  int64_t best_epoch() const { return best_epoch_; }

 private:
  EarlyStoppingOptions options_;
  bool maximize_ = false;
  double best_ = 0;
  int64_t wait_ = 0, stopped_epoch_ = -1, best_epoch_ = -1;
  nn::StateDict best_weights_;
};

struct ModelCheckpointOptions {
  std::string monitor = "val_loss";
  bool save_best_only = false;
  Mode mode = Mode::Auto;
  // Also save the optimizer, the RNG state and the epoch (a training checkpoint that
  // fit's resume_from restores); otherwise the model's weights only.
  bool training_state = false;
  int verbose = 0;
};

// Saves after each epoch to a path template such as
// "ckpt-{epoch:02d}-{val_loss:.2f}.safetensors" (epoch is 1-based, as Keras prints it).
class EMBER_API ModelCheckpoint : public Callback {
 public:
  explicit ModelCheckpoint(std::string path_template, ModelCheckpointOptions options = {});
  void on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) override;
  // The path the template gives for `epoch` (0-based) and `logs`.
  std::string format_path(int64_t epoch, const Logs& logs) const;
  const std::string& last_saved() const { return last_saved_; }

 private:
  std::string template_;
  ModelCheckpointOptions options_;
  std::optional<double> best_;
  std::string last_saved_;
};

// One row per epoch: "epoch" then the metric names in sorted order.
class EMBER_API CSVLogger : public Callback {
 public:
  explicit CSVLogger(std::string path, bool append = false, char separator = ',');
  ~CSVLogger() override;
  void on_train_begin(Trainer& trainer) override;
  void on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) override;
  void on_train_end(Trainer& trainer) override;

 private:
  std::string path_;
  bool append_;
  char sep_;
  std::FILE* file_ = nullptr;
  std::vector<std::string> columns_;
};

// Stops training at the first NaN or Inf loss, says so, and puts back the weights of the
// last epoch that ended with a finite loss.
class EMBER_API TerminateOnNaN : public Callback {
 public:
  void on_train_begin(Trainer& trainer) override;
  void on_batch_end(Trainer& trainer, int64_t batch, const Logs& logs) override;
  void on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) override;
  bool wants_batch_logs() const override { return true; }
  bool terminated() const { return terminated_; }

 private:
  void terminate(Trainer& trainer, double loss);
  nn::StateDict last_good_;
  bool terminated_ = false;
};

// Steps an optim::LRScheduler after each epoch, or sets lr = fn(epoch, lr) before each
// (Keras's form). Adds "lr" to the logs.
class EMBER_API LearningRateScheduler : public Callback {
 public:
  explicit LearningRateScheduler(std::shared_ptr<optim::LRScheduler> scheduler);
  explicit LearningRateScheduler(std::function<double(int64_t epoch, double lr)> fn);
  void on_epoch_begin(Trainer& trainer, int64_t epoch) override;
  void on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) override;

 private:
  std::shared_ptr<optim::LRScheduler> scheduler_;
  std::function<double(int64_t, double)> fn_;
};

// Scalars for TensorBoard: log_dir/train and log_dir/validation, tags epoch_<metric>.
class EMBER_API TensorBoard : public Callback {
 public:
  explicit TensorBoard(std::string log_dir);
  void on_train_begin(Trainer& trainer) override;
  void on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) override;
  void on_train_end(Trainer& trainer) override;

 private:
  std::string log_dir_;
  std::unique_ptr<EventWriter> train_, validation_;
};

}  // namespace ember::callbacks
