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

// Epochs are 0-based in every hook (as in Keras); the progress line and the messages
// callbacks print count from 1.
class EMBER_API Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(Trainer& /*trainer*/) {}
  virtual void on_train_end(Trainer& /*trainer*/) {}
  virtual void on_epoch_begin(Trainer& /*trainer*/, int64_t /*epoch*/) {}
  // `logs` holds the epoch's training and validation values (and "lr" when a callback
  // changes_lr()); a callback may add to it, seen by the callbacks after it.
  virtual void on_epoch_end(Trainer& /*trainer*/, int64_t /*epoch*/, Logs& /*logs*/) {}
  // Only called for callbacks that want_batch_logs() (reading the loss every batch
  // makes the host wait for the GPU).
  virtual void on_batch_end(Trainer& /*trainer*/, int64_t /*batch*/, const Logs& /*logs*/) {}
  virtual bool wants_batch_logs() const { return false; }
  // True for a callback that sets the optimizer's learning rate: fit then puts "lr" (the
  // rate the epoch trained with) into the epoch's logs before any callback's
  // on_epoch_end, so CSVLogger and TensorBoard record it wherever they sit in the list.
  virtual bool changes_lr() const { return false; }
  // True for a callback that writes files (checkpoints, CSV, TensorBoard): in a
  // distributed fit it runs on rank 0 only (Note [Distributed fit] in trainer.h), as
  // Lightning's rank_zero_only. Every other callback runs on every rank and sees the same
  // (averaged) logs there, so they all decide alike (EarlyStopping, TerminateOnNaN).
  virtual bool main_process_only() const { return false; }
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
  // > 0: at the end of fit, print "Epoch N: early stopping" (if it stopped) and "Restoring
  // model weights from the end of the best epoch: N." (if it restores); N counts from 1.
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
  // > 0: print "Epoch N: saving model to PATH" after each save (N counts from 1).
  int verbose = 0;
};

// Saves after each epoch to a path template such as
// "ckpt-{epoch:02d}-{val_loss:.2f}.safetensors" (epoch is 1-based, as Keras prints it).
class EMBER_API ModelCheckpoint : public Callback {
 public:
  explicit ModelCheckpoint(std::string path_template, ModelCheckpointOptions options = {});
  void on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) override;
  bool main_process_only() const override { return true; }
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
  bool main_process_only() const override { return true; }
  void on_train_end(Trainer& trainer) override;

 private:
  std::string path_;
  bool append_;
  char sep_;
  std::FILE* file_ = nullptr;
  std::vector<std::string> columns_;
};

struct TerminateOnNaNOptions {
  // Keep a copy of the model's state (parameters and buffers, cloned on the device they
  // live on: one more model's worth of memory) when fit starts and at the end of every
  // epoch whose loss is finite, and put it back when stopping. false keeps no copy, and
  // the model is left with the weights of the step that diverged (go back to a
  // ModelCheckpoint file with io::load_checkpoint instead).
  bool restore_last_good = true;
};

// Stops training at the first NaN or Inf loss (checked after every batch, which reads
// the loss back from the device), prints where (epoch, batch, value) and what it did with
// the weights, and records it for fit: Trainer::record_stop, so that the progress line
// ends with it and History::stop() holds it. See TerminateOnNaNOptions for the weights.
class EMBER_API TerminateOnNaN : public Callback {
 public:
  explicit TerminateOnNaN(TerminateOnNaNOptions options = {});
  void on_train_begin(Trainer& trainer) override;
  void on_batch_end(Trainer& trainer, int64_t batch, const Logs& logs) override;
  void on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) override;
  bool wants_batch_logs() const override { return true; }
  bool terminated() const { return terminated_; }

 private:
  void terminate(Trainer& trainer, int64_t batch, double loss);
  TerminateOnNaNOptions options_;
  nn::StateDict last_good_;
  int64_t last_good_epoch_ = -1;  // -1: the weights fit started with
  bool terminated_ = false;
};

// Steps an optim::LRScheduler after each epoch, or sets lr = fn(epoch, lr) before each
// (Keras's form). fit logs "lr" for it (see Callback::changes_lr).
class EMBER_API LearningRateScheduler : public Callback {
 public:
  explicit LearningRateScheduler(std::shared_ptr<optim::LRScheduler> scheduler);
  explicit LearningRateScheduler(std::function<double(int64_t epoch, double lr)> fn);
  void on_epoch_begin(Trainer& trainer, int64_t epoch) override;
  void on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) override;
  bool changes_lr() const override { return true; }

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
  bool main_process_only() const override { return true; }
  void on_train_end(Trainer& trainer) override;

 private:
  std::string log_dir_;
  std::unique_ptr<EventWriter> train_, validation_;
};

}  // namespace ember::callbacks
