// Callback implementations.
#include "ember/python_free_api/callbacks.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "ember/core/autograd.h"
#include "ember/python_free_api/io/safetensors.h"
#include "ember/python_free_api/trainer.h"

namespace ember::callbacks {

std::optional<double> find_log(const Logs& logs, const std::string& name) {
  for (const auto& [n, v] : logs) {
    if (n == name) return v;
  }
  return std::nullopt;
}

nn::StateDict snapshot(const nn::Module& module) {
  NoGradGuard no_grad;
  nn::StateDict copy;
  for (const auto& [name, t] : module.state_dict()) copy.insert(name, t.clone());
  return copy;
}

namespace {

bool maximize_for(const std::string& monitor, Mode mode) {
  if (mode != Mode::Auto) return mode == Mode::Max;
  for (const char* key : {"acc", "auc", "precision", "recall", "f1"}) {
    if (monitor.find(key) != std::string::npos) return true;
  }
  return false;
}

double monitored(const Logs& logs, const std::string& monitor, const char* who) {
  auto v = find_log(logs, monitor);
  if (!v) {
    std::string known;
    for (const auto& [n, x] : logs) known += (known.empty() ? "" : ", ") + n;
    throw Error(std::string(who) + ": the monitored value '" + monitor +
                "' is not in the logs (available: " + known +
                "); give validation data for val_* values");
  }
  return *v;
}

}  // namespace

// --- EarlyStopping -----------------------------------------------------------------------

EarlyStopping::EarlyStopping(EarlyStoppingOptions options) : options_(std::move(options)) {
  EMBER_CHECK(options_.patience >= 0, "EarlyStopping: patience must be >= 0, got ", options_.patience);
  maximize_ = maximize_for(options_.monitor, options_.mode);
}

void EarlyStopping::on_train_begin(Trainer&) {
  wait_ = 0;
  stopped_epoch_ = -1;
  best_epoch_ = -1;
  best_ = maximize_ ? -INFINITY : INFINITY;
  best_weights_ = nn::StateDict();
}

void EarlyStopping::on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) {
  const double v = monitored(logs, options_.monitor, "EarlyStopping");
  const double delta = std::fabs(options_.min_delta);
  const bool improved = maximize_ ? v - delta > best_ : v + delta < best_;
  if (improved) {
    best_ = v;
    best_epoch_ = epoch;
    wait_ = 0;
    if (options_.restore_best_weights) best_weights_ = snapshot(trainer.model());
    return;
  }
  ++wait_;
  if (wait_ >= options_.patience) {  // Keras: patience epochs without improvement
    stopped_epoch_ = epoch;
    trainer.stop_training();
  }
}

void EarlyStopping::on_train_end(Trainer& trainer) {
  if (stopped_epoch_ >= 0 && options_.verbose > 0) {
    std::printf("Epoch %lld: early stopping\n", static_cast<long long>(stopped_epoch_ + 1));
  }
  if (options_.restore_best_weights && best_weights_.size() > 0) {
    if (options_.verbose > 0) {
      std::printf("Restoring model weights from the end of the best epoch: %lld.\n",
                  static_cast<long long>(best_epoch_ + 1));
    }
    trainer.model().load_state_dict(best_weights_);
  }
}

// --- ModelCheckpoint ------------------------------------------------------------------------

ModelCheckpoint::ModelCheckpoint(std::string path_template, ModelCheckpointOptions options)
    : template_(std::move(path_template)), options_(std::move(options)) {
  EMBER_CHECK(!template_.empty(), "ModelCheckpoint: empty path");
}

std::string ModelCheckpoint::format_path(int64_t epoch, const Logs& logs) const {
  // Python-style fields: {name} or {name:spec} with a printf-like spec ("02d", ".2f").
  std::string out;
  size_t i = 0;
  while (i < template_.size()) {
    const size_t open = template_.find('{', i);
    if (open == std::string::npos) {
      out += template_.substr(i);
      break;
    }
    out += template_.substr(i, open - i);
    const size_t close = template_.find('}', open);
    EMBER_CHECK(close != std::string::npos, "ModelCheckpoint: unclosed '{' in '", template_, "'");
    const std::string field = template_.substr(open + 1, close - open - 1);
    const size_t colon = field.find(':');
    const std::string name = field.substr(0, colon);
    const std::string spec = colon == std::string::npos ? "" : field.substr(colon + 1);
    char buf[128];
    if (name == "epoch") {
      std::snprintf(buf, sizeof buf, ("%" + (spec.empty() ? std::string("d") : spec)).c_str(),
                    static_cast<int>(epoch + 1));
    } else {
      const double v = monitored(logs, name, "ModelCheckpoint");
      std::snprintf(buf, sizeof buf, ("%" + (spec.empty() ? std::string("g") : spec)).c_str(), v);
    }
    out += buf;
    i = close + 1;
  }
  return out;
}

void ModelCheckpoint::on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) {
  if (options_.save_best_only) {
    const double v = monitored(logs, options_.monitor, "ModelCheckpoint");
    const bool maximize = maximize_for(options_.monitor, options_.mode);
    if (best_ && !(maximize ? v > *best_ : v < *best_)) return;
    best_ = v;
  }
  const std::string path = format_path(epoch, logs);
  if (options_.training_state) {
    io::TrainingState state;
    state.epoch = epoch + 1;  // epochs completed
    io::save_checkpoint(path, trainer.model(), &trainer.optimizer(), state);
  } else {
    io::save(trainer.model(), path);
  }
  last_saved_ = path;
  if (options_.verbose > 0) {
    std::printf("Epoch %lld: saving model to %s\n", static_cast<long long>(epoch + 1), path.c_str());
  }
}

// --- CSVLogger ------------------------------------------------------------------------------

CSVLogger::CSVLogger(std::string path, bool append, char separator)
    : path_(std::move(path)), append_(append), sep_(separator) {}

CSVLogger::~CSVLogger() {
  if (file_ != nullptr) std::fclose(file_);
}

void CSVLogger::on_train_begin(Trainer&) {
  const bool had_rows = append_ && std::filesystem::exists(path_) && std::filesystem::file_size(path_) > 0;
  file_ = std::fopen(path_.c_str(), append_ ? "a" : "w");
  EMBER_CHECK_T(IOError, file_ != nullptr, "CSVLogger: cannot open '", path_, "': ", std::strerror(errno));
  columns_.clear();
  if (had_rows) columns_.push_back("");  // header already written by an earlier run
}

void CSVLogger::on_epoch_end(Trainer&, int64_t epoch, Logs& logs) {
  std::vector<std::string> names;
  for (const auto& [n, v] : logs) names.push_back(n);
  std::sort(names.begin(), names.end());
  if (columns_.empty()) {
    columns_ = names;
    std::fprintf(file_, "epoch");
    for (const auto& n : names) std::fprintf(file_, "%c%s", sep_, n.c_str());
    std::fprintf(file_, "\n");
  } else if (columns_.size() == 1 && columns_[0].empty()) {
    columns_ = names;
  }
  std::fprintf(file_, "%lld", static_cast<long long>(epoch));
  for (const auto& n : columns_) {
    auto v = find_log(logs, n);
    if (v) {
      std::fprintf(file_, "%c%.17g", sep_, *v);
    } else {
      std::fprintf(file_, "%c", sep_);
    }
  }
  std::fprintf(file_, "\n");
  std::fflush(file_);
}

void CSVLogger::on_train_end(Trainer&) {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
}

// --- TerminateOnNaN -----------------------------------------------------------------------------

void TerminateOnNaN::on_train_begin(Trainer& trainer) {
  terminated_ = false;
  last_good_ = snapshot(trainer.model());
}

void TerminateOnNaN::terminate(Trainer& trainer, double loss) {
  if (terminated_) return;
  terminated_ = true;
  std::fprintf(stderr,
               "\nTerminateOnNaN: the loss became %g at epoch %lld; stopping and restoring the "
               "weights of the last epoch that ended with a finite loss\n",
               loss, static_cast<long long>(trainer.epoch() + 1));
  trainer.model().load_state_dict(last_good_);
  trainer.stop_training();
}

void TerminateOnNaN::on_batch_end(Trainer& trainer, int64_t, const Logs& logs) {
  auto loss = find_log(logs, "loss");
  if (loss && !std::isfinite(*loss)) terminate(trainer, *loss);
}

void TerminateOnNaN::on_epoch_end(Trainer& trainer, int64_t, Logs& logs) {
  auto loss = find_log(logs, "loss");
  if (loss && !std::isfinite(*loss)) {
    terminate(trainer, *loss);
  } else if (!terminated_) {
    last_good_ = snapshot(trainer.model());
  }
}

// --- LearningRateScheduler ----------------------------------------------------------------------

LearningRateScheduler::LearningRateScheduler(std::shared_ptr<optim::LRScheduler> scheduler)
    : scheduler_(std::move(scheduler)) {
  EMBER_CHECK(scheduler_ != nullptr, "LearningRateScheduler: null schedule");
}

LearningRateScheduler::LearningRateScheduler(std::function<double(int64_t, double)> fn)
    : fn_(std::move(fn)) {
  EMBER_CHECK(fn_ != nullptr, "LearningRateScheduler: empty function");
}

void LearningRateScheduler::on_epoch_begin(Trainer& trainer, int64_t epoch) {
  if (fn_) {
    const double lr = fn_(epoch, trainer.optimizer().lr());
    EMBER_CHECK(std::isfinite(lr) && lr >= 0, "LearningRateScheduler: the function returned lr = ",
                lr, " for epoch ", epoch);
    trainer.optimizer().set_lr(lr);
  }
}

void LearningRateScheduler::on_epoch_end(Trainer& trainer, int64_t, Logs& logs) {
  logs.emplace_back("lr", trainer.optimizer().lr());
  if (scheduler_) scheduler_->step();
}

// --- TensorBoard ----------------------------------------------------------------------------------

TensorBoard::TensorBoard(std::string log_dir) : log_dir_(std::move(log_dir)) {}

void TensorBoard::on_train_begin(Trainer&) {
  train_ = std::make_unique<EventWriter>(log_dir_ + "/train");
  validation_ = std::make_unique<EventWriter>(log_dir_ + "/validation");
}

void TensorBoard::on_epoch_end(Trainer&, int64_t epoch, Logs& logs) {
  for (const auto& [name, v] : logs) {
    if (name.rfind("val_", 0) == 0) {
      validation_->add_scalar("epoch_" + name.substr(4), static_cast<float>(v), epoch);
    } else {
      train_->add_scalar("epoch_" + name, static_cast<float>(v), epoch);
    }
  }
  train_->flush();
  validation_->flush();
}

void TensorBoard::on_train_end(Trainer&) {
  train_.reset();
  validation_.reset();
}

}  // namespace ember::callbacks
