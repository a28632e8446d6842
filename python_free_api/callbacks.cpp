// Callback implementations.
#include "ember/python_free_api/callbacks.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
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
    throw ValueError(std::string(who) + ": the monitored value '" + monitor +
                     "' is not in the logs (available: " + known +
                     "); give validation data for val_* values");
  }
  return *v;
}

// One "{name:spec}" field. The spec is Python's: flags and width/precision, then a type
// (d, i, x, X, o for integers; f, F, e, E, g, G, %); anything else is refused here rather
// than handed to printf as a format.
std::string format_field(const std::string& spec, double v, bool integer_default,
                         const std::string& path_template) {
  char type = spec.empty() ? (integer_default ? 'd' : 'g') : spec.back();
  std::string flags = spec.empty() ? "" : spec.substr(0, spec.size() - 1);
  if (!spec.empty() && std::isdigit(static_cast<unsigned char>(type))) {  // "{loss:5}"
    flags = spec;
    type = integer_default ? 'd' : 'g';
  }
  const bool flags_ok = std::all_of(flags.begin(), flags.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+' ||
           c == ' ' || c == '#';
  });
  const std::string integer_types = "dixXo", float_types = "fFeEgG%";
  EMBER_CHECK_T(ValueError,
                flags_ok && (integer_types.find(type) != std::string::npos ||
                             float_types.find(type) != std::string::npos),
                "ModelCheckpoint: unsupported format spec '", spec, "' in '", path_template,
                "' (use forms like {epoch:02d} or {val_loss:.2f})");
  char buf[128];
  if (type == '%') {
    std::snprintf(buf, sizeof buf, ("%" + flags + "f%%").c_str(), v * 100.0);
  } else if (integer_types.find(type) != std::string::npos) {
    EMBER_CHECK_T(ValueError, std::isfinite(v), "ModelCheckpoint: cannot format ", v,
                  " as an integer in '", path_template, "'");
    std::snprintf(buf, sizeof buf, ("%" + flags + "ll" + type).c_str(), static_cast<long long>(v));
  } else {
    std::snprintf(buf, sizeof buf, ("%" + flags + type).c_str(), v);
  }
  return buf;
}

}  // namespace

// --- EarlyStopping -----------------------------------------------------------------------

EarlyStopping::EarlyStopping(EarlyStoppingOptions options) : options_(std::move(options)) {
  EMBER_CHECK_T(ValueError, options_.patience >= 0, "EarlyStopping: patience must be >= 0, got ",
                options_.patience);
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
  if (wait_ >= options_.patience && epoch > 0) {  // Keras: patience epochs without improvement
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
  EMBER_CHECK_T(ValueError, !template_.empty(), "ModelCheckpoint: empty path");
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
    EMBER_CHECK_T(ValueError, close != std::string::npos, "ModelCheckpoint: unclosed '{' in '",
                  template_, "'");
    const std::string field = template_.substr(open + 1, close - open - 1);
    const size_t colon = field.find(':');
    const std::string name = field.substr(0, colon);
    const std::string spec = colon == std::string::npos ? "" : field.substr(colon + 1);
    const double v = name == "epoch" ? static_cast<double>(epoch + 1)
                                     : monitored(logs, name, "ModelCheckpoint");
    out += format_field(spec, v, name == "epoch", template_);
    i = close + 1;
  }
  return out;
}

void ModelCheckpoint::on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) {
  if (options_.save_best_only) {
    const double v = monitored(logs, options_.monitor, "ModelCheckpoint");
    const bool maximize = maximize_for(options_.monitor, options_.mode);
    // A NaN never counts as an improvement (nor becomes the best to beat).
    if (std::isnan(v) || (best_ && !(maximize ? v > *best_ : v < *best_))) return;
    best_ = v;
  }
  const std::string path = format_path(epoch, logs);
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {  // as Keras does, so "runs/ckpt-{epoch}.safetensors" just works
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    EMBER_CHECK_T(IOError, !ec, "ModelCheckpoint: cannot create the directory '", parent.string(),
                  "': ", ec.message());
  }
  if (options_.training_state) {
    io::TrainingState state;
    state.epoch = epoch + 1;  // epochs completed
    io::save_checkpoint(path, trainer.model(), &trainer.optimizer(), state,
                        trainer.grad_scaler());
  } else {
    io::save(trainer.model(), path);
  }
  last_saved_ = path;
  if (options_.verbose > 0) {
    std::printf("Epoch %lld: saving model to %s\n", static_cast<long long>(epoch + 1), path.c_str());
  }
}

// --- CSVLogger ------------------------------------------------------------------------------

namespace {
// The shortest decimal that reads back as the same double ("0.25", not "0.25000000000000000"),
// as Python's repr writes the values into Keras's CSV.
std::string shortest_repr(double v) {
  char buf[40];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v || !std::isfinite(v)) break;
  }
  return buf;
}
}  // namespace

CSVLogger::CSVLogger(std::string path, bool append, char separator)
    : path_(std::move(path)), append_(append), sep_(separator) {}

CSVLogger::~CSVLogger() {
  if (file_ != nullptr) std::fclose(file_);
}

void CSVLogger::on_train_begin(Trainer&) {
  if (file_ != nullptr) std::fclose(file_);  // a previous fit() that ended by throwing
  file_ = nullptr;
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
      std::fprintf(file_, "%c%s", sep_, shortest_repr(*v).c_str());
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

TerminateOnNaN::TerminateOnNaN(TerminateOnNaNOptions options) : options_(options) {}

void TerminateOnNaN::on_train_begin(Trainer& trainer) {
  terminated_ = false;
  last_good_epoch_ = -1;
  last_good_ = options_.restore_last_good ? snapshot(trainer.model()) : nn::StateDict();
}

void TerminateOnNaN::terminate(Trainer& trainer, int64_t batch, double loss) {
  if (terminated_) return;
  terminated_ = true;
  TrainingStop stop;
  stop.epoch = trainer.epoch();
  stop.batch = batch;
  stop.metric = "loss";
  stop.value = loss;
  const std::string where =
      batch >= 0 ? detail::str_cat("epoch ", stop.epoch + 1, ", batch ", batch + 1)
                 : detail::str_cat("the end of epoch ", stop.epoch + 1);
  std::string done;
  if (options_.restore_last_good) {
    trainer.model().load_state_dict(last_good_);
    stop.restored = true;
    stop.restored_epoch = last_good_epoch_;
    done = last_good_epoch_ >= 0
               ? detail::str_cat("restored the weights from the end of epoch ",
                                 last_good_epoch_ + 1, ", the last with a finite loss")
               : std::string("restored the weights training started with (no epoch ended "
                             "with a finite loss)");
  } else {
    done = "no good weights were kept (restore_last_good is false): the model holds the "
           "weights of the step that diverged";
  }
  stop.message = detail::str_cat("TerminateOnNaN: the loss became ", format_metric(loss), " at ",
                                 where, "; stopped training and ", done);
  std::fprintf(stderr, "\n%s\n", stop.message.c_str());
  trainer.record_stop(std::move(stop));
}

void TerminateOnNaN::on_batch_end(Trainer& trainer, int64_t batch, const Logs& logs) {
  auto loss = find_log(logs, "loss");
  if (loss && !std::isfinite(*loss)) terminate(trainer, batch, *loss);
}

void TerminateOnNaN::on_epoch_end(Trainer& trainer, int64_t epoch, Logs& logs) {
  auto loss = find_log(logs, "loss");
  if (loss && !std::isfinite(*loss)) {
    terminate(trainer, -1, *loss);  // a no-op when a batch already stopped it
  } else if (!terminated_ && options_.restore_last_good) {
    last_good_ = snapshot(trainer.model());
    last_good_epoch_ = epoch;
  }
}

// --- LearningRateScheduler ----------------------------------------------------------------------

LearningRateScheduler::LearningRateScheduler(std::shared_ptr<optim::LRScheduler> scheduler)
    : scheduler_(std::move(scheduler)) {
  EMBER_CHECK_T(ValueError, scheduler_ != nullptr, "LearningRateScheduler: null schedule");
}

LearningRateScheduler::LearningRateScheduler(std::function<double(int64_t, double)> fn)
    : fn_(std::move(fn)) {
  EMBER_CHECK_T(ValueError, fn_ != nullptr, "LearningRateScheduler: empty function");
}

void LearningRateScheduler::on_epoch_begin(Trainer& trainer, int64_t epoch) {
  // The schedule counts the epochs it has been stepped through; a fit() that starts later
  // (initial_epoch, resume_from) would otherwise replay it from its beginning.
  if (scheduler_ && scheduler_->last_epoch() != epoch) scheduler_->set_last_epoch(epoch);
  if (fn_) {
    const double lr = fn_(epoch, trainer.optimizer().lr());
    EMBER_CHECK_T(ValueError, std::isfinite(lr) && lr >= 0,
                  "LearningRateScheduler: the function returned lr = ", lr, " for epoch ", epoch);
    trainer.optimizer().set_lr(lr);
  }
}

void LearningRateScheduler::on_epoch_end(Trainer&, int64_t, Logs&) {
  // "lr" is already in the logs: fit adds it before any callback runs (changes_lr()).
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
