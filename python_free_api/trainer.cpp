// Trainer: the fit / evaluate / predict loops.
#include "ember/python_free_api/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <mutex>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/device.h"
#include "ember/core/dist/dist.h"
#include "ember/core/ops.h"
#include "ember/core/pending_value.h"
#include "ember/core/random.h"
#include "ember/python_free_api/callbacks.h"
#include "ember/python_free_api/data/sampler.h"
#include "ember/python_free_api/dist/ddp.h"
#include "ember/python_free_api/io/safetensors.h"

namespace ember {

// --- History and logs ---------------------------------------------------------------------

void History::append(const Logs& logs) {
  for (const auto& [name, v] : logs) {
    if (values_.count(name) == 0) order_.push_back(name);
    values_[name].push_back(v);
  }
}

const std::vector<double>& History::operator[](const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) {
    std::string known;
    for (const auto& n : order_) known += (known.empty() ? "" : ", ") + n;
    throw ValueError("History: no values named '" + name + "' (recorded: " + known + ")");
  }
  return it->second;
}

std::vector<std::string> History::keys() const { return order_; }

size_t History::epochs() const { return order_.empty() ? 0 : values_.at(order_.front()).size(); }

std::ostream& operator<<(std::ostream& os, const Logs& logs) {
  bool first = true;
  for (const auto& [name, v] : logs) {
    os << (first ? "" : " - ") << name << ": " << format_metric(v);
    first = false;
  }
  return os;
}

// --- Trainer -----------------------------------------------------------------------------------

namespace {

void check_given(const data::DatasetRef& d, const char* op) {
  EMBER_CHECK_T(ValueError, d, op, ": the dataset is null");
}

// Note [Shuffle seeds and resuming]
// Each training epoch draws its shuffle seed from ember's CPU generator when it starts (as
// PyTorch's RandomSampler does), so consecutive fit() calls see fresh orders and
// manual_seed() repeats them. A training checkpoint saved at the end of epoch e holds the
// generator's state after that epoch's draw; restoring it makes epoch e + 1 draw what an
// uninterrupted run draws. For that to hold, nothing else in fit may draw from the
// generator between epochs: the loaders that never shuffle (validation, evaluate,
// predict) get a fixed seed instead of drawing one.
uint64_t draw_shuffle_seed() {
  std::lock_guard<std::mutex> lock(cpu_generator_mutex());
  return cpu_generator()();
}
constexpr uint64_t kUnshuffledSeed = 0;  // no shuffle and no random transforms use it

// The end of a stopped epoch's progress line: "loss nan at batch 3; weights from the end
// of epoch 1 restored".
std::string stop_text(const TrainingStop& stop) {
  std::string s = detail::str_cat(stop.metric, " ", format_metric(stop.value), " at batch ",
                                  stop.batch + 1);
  if (!stop.restored) return s + "; weights not restored";
  if (stop.restored_epoch < 0) return s + "; initial weights restored";
  return detail::str_cat(s, "; weights from the end of epoch ", stop.restored_epoch + 1,
                         " restored");
}

// Note [Distributed fit]: the world this fit trains in (one rank without a group).
struct World {
  bool distributed = false;
  int rank = 0;
  int size = 1;
};

World current_world() {
  if (!dist::is_initialized() || dist::get_world_size() <= 1) return {};
  return {true, dist::get_rank(), dist::get_world_size()};
}

// Tensors for a collective: on the GPU for NCCL, else float64 on the CPU (Gloo).
TensorOptions collective_options(Device device) {
  if (dist::get_backend() == "nccl") return {.dtype = kFloat32, .device = device};
  return {.dtype = kFloat64};
}

// Rank 0's shuffle seed for the epoch, on every rank.
uint64_t shared_seed(uint64_t seed, Device device) {
  // Two 32-bit halves: exact in float32 as well as float64 (the collective's dtype).
  Tensor t = Tensor::from_vector<double>({static_cast<double>(seed >> 32),
                                          static_cast<double>(seed & 0xffffffffu)},
                                         {2})
                 .to(collective_options(device).dtype)
                 .to(collective_options(device).device);
  t = t.contiguous();
  dist::broadcast(t, 0).wait();
  const std::vector<double> v = t.cpu().to(kFloat64).to_vector<double>();
  // In float32 a half may have been rounded, on rank 0 before it was sent as well: every
  // rank still gets the same seed, which is all that matters.
  return (static_cast<uint64_t>(v[0]) << 32) ^ static_cast<uint64_t>(v[1]);
}

// Whether `flag` is set on any rank.
bool any_rank(bool flag, Device device) {
  const TensorOptions opts = collective_options(device);
  Tensor t = full({1}, flag ? 1.0 : 0.0, opts);
  dist::all_reduce(t, dist::ReduceOp::Max).wait();
  return t.cpu().to(kFloat64).item() > 0.0;
}

// The logs as means over every rank's examples: each value weighted by the examples
// `seen` here, summed over the group, divided by the group's total.
void average_over_ranks(Logs& logs, int64_t seen, Device device) {
  std::vector<double> v;
  for (const auto& [name, value] : logs) v.push_back(value * static_cast<double>(seen));
  v.push_back(static_cast<double>(seen));
  const TensorOptions opts = collective_options(device);
  Tensor t = Tensor::from_vector<double>(v, {static_cast<int64_t>(v.size())})
                 .to(opts.dtype)
                 .to(opts.device)
                 .contiguous();
  dist::all_reduce(t, dist::ReduceOp::Sum).wait();
  const std::vector<double> sum = t.cpu().to(kFloat64).to_vector<double>();
  const double total = sum.back();
  for (size_t i = 0; i < logs.size(); ++i) logs[i].second = total > 0 ? sum[i] / total : 0.0;
}

}  // namespace

const std::vector<std::string>& precision_options() {
  static const std::vector<std::string> options{"32", "bf16-mixed", "16-mixed"};
  return options;
}

void check_precision(const std::string& precision, const char* where) {
  const auto& ok = precision_options();
  if (std::find(ok.begin(), ok.end(), precision) != ok.end()) return;
  std::string list;
  for (const auto& o : ok) list += (list.empty() ? "'" : "', '") + o;
  throw ValueError(detail::str_cat(where, ": unknown precision '", precision, "' (expected one of ",
                                   list, "')"));
}

Trainer::Trainer(nn::Module& model, optim::Optimizer& optimizer, loss::AnyLoss loss,
                 std::initializer_list<metrics::AnyMetric> metrics, std::optional<Device> device)
    : Trainer(model, optimizer, std::move(loss), std::vector<metrics::AnyMetric>(metrics), device) {}

Trainer::Trainer(nn::Module& model, optim::Optimizer& optimizer, loss::AnyLoss loss,
                 std::vector<metrics::AnyMetric> metrics, std::optional<Device> device)
    : model_(model), optimizer_(optimizer), loss_(std::move(loss)),
      device_(device.value_or(Device::best())) {
  for (const auto& m : metrics) {
    metrics_.push_back(m.ptr());
    val_metrics_.push_back(std::shared_ptr<metrics::Metric>(m.ptr()->clone()));
  }
}

Logs Trainer::run_epoch(data::DataLoader& loader, bool train, ProgressBar* bar,
                        const std::vector<std::shared_ptr<callbacks::Callback>>& cbs,
                        const std::string& where, nn::Module& forward, bool across_ranks) {
  // A loss that refuses a batch (labels out of range, wrong dtype) is told where it was.
  const auto loss_of = [&](const Tensor& out, const Tensor& y, int64_t step) {
    const auto at = [&] {
      return detail::str_cat(where, ", batch ", step + 1, " of ", loader.size(), ": ");
    };
    try {
      return loss_(out, y);
    } catch (const ShapeError& e) {
      throw ShapeError(at() + e.what());
    } catch (const DTypeError& e) {
      throw DTypeError(at() + e.what());
    }
  };
  model_.train(train);
  auto& mets = train ? metrics_ : val_metrics_;
  for (auto& m : mets) m->reset();
  bool callback_logs = false;
  for (const auto& cb : cbs) callback_logs = callback_logs || cb->wants_batch_logs();

  Tensor loss_sum;  // on the device: the host reads it only when it must
  int64_t seen = 0, step = 0;
  // The progress line's running loss, read without waiting (Note [Reading without
  // waiting]): a read is started at a refresh and shown at the first refresh after it
  // has arrived.
  PendingValue shown_loss;
  int64_t shown_seen = 0;
  // Mixed precision: forward and loss in an autocast region (off for "32"); backward and
  // the step after it, as in PyTorch.
  const bool mixed = precision_ != "32";
  const DType low = precision_ == "16-mixed" ? kFloat16 : kBFloat16;
  for (const data::Batch& b : loader) {
    const int64_t n = b.x.size(0);
    Tensor out, loss;
    if (train) {
      try {
        {
          AutocastGuard autocast(low, mixed);
          out = forward(b.x);
          loss = loss_of(out, b.y, step);
        }
        optimizer_.zero_grad();
        if (scaler_ != nullptr) {
          scaler_->scale(loss).backward();
          scaler_->step(optimizer_);
          scaler_->update();
        } else {
          loss.backward();
          optimizer_.step();
        }
      } catch (const autograd::AnomalyError& e) {  // FitOptions::detect_anomaly
        throw autograd::AnomalyError(
            detail::str_cat(where, ", batch ", step + 1, " of ", loader.size(), ": ", e.what()));
      }
    } else {
      NoGradGuard no_grad;
      AutocastGuard autocast(low, mixed);
      out = forward(b.x);
      loss = loss_of(out, b.y, step);
    }
    {
      NoGradGuard no_grad;
      Tensor weighted = mul(loss.detach(), static_cast<double>(n));
      loss_sum = loss_sum.defined() ? add(loss_sum, weighted) : weighted;
      for (auto& m : mets) m->update(out.detach(), b.y);
    }
    seen += n;
    ++step;
    if (bar != nullptr && bar->due(step)) {
      if (shown_loss.valid() && shown_loss.ready()) {
        bar->update(step, {{"loss", shown_loss.value() / static_cast<double>(shown_seen)}});
        shown_loss = PendingValue();
      }
      if (!shown_loss.valid()) {
        shown_loss = PendingValue(loss_sum);
        shown_seen = seen;
      }
    }
    if (callback_logs) {
      const Logs logs{{"loss", loss.item()}};
      for (const auto& cb : cbs) {
        if (cb->wants_batch_logs()) cb->on_batch_end(*this, step - 1, logs);
      }
      // A batch-level stop (TerminateOnNaN's) on any rank stops every rank at this batch,
      // or the others would wait for it in the next step's collectives.
      if (across_ranks) stop_ = any_rank(stop_, device_);
    }
    if (stop_) break;
  }
  Logs logs;
  try {
    // The epoch's one wait for the device: the loss, and the checks the ops queued on it
    // (Note [Deferred checks]), raised here with where they happened.
    logs.emplace_back("loss", seen == 0 ? 0.0 : loss_sum.item() / static_cast<double>(seen));
    cuda::check_deferred_errors();
  } catch (const ShapeError& e) {
    throw ShapeError(detail::str_cat(where, ", in one of batches 1 to ", step, ": ", e.what()));
  }
  for (auto& m : mets) logs.emplace_back(m->name(), m->result());
  if (across_ranks) average_over_ranks(logs, seen, device_);
  return logs;
}

History Trainer::fit(data::DatasetRef train, FitOptions options) {
  check_given(train, "fit");
  EMBER_CHECK_T(ValueError, options.epochs >= 0 && options.batch_size > 0,
                "fit: need epochs >= 0 and batch_size > 0, got epochs=", options.epochs,
                " batch_size=", options.batch_size);
  EMBER_CHECK_T(ValueError, options.validation_split >= 0.0 && options.validation_split < 1.0,
                "fit: validation_split must be in [0, 1), got ", options.validation_split);
  EMBER_CHECK_T(ValueError, !(options.validation && options.validation_split > 0.0),
                "fit: give either validation data or validation_split, not both");
  check_precision(options.precision, "fit");
  precision_ = options.precision;
  const World world = current_world();  // Note [Distributed fit]
  main_process_ = world.rank == 0;
  const int verbose = main_process_ ? options.verbose : 0;
  // A new scaler per fit() call, as a new torch.amp.GradScaler per training run.
  scaler_ = precision_ == "16-mixed" ? std::make_unique<optim::GradScaler>() : nullptr;
  model_.to(device_);

  int64_t first_epoch = options.initial_epoch;
  if (!options.resume_from.empty()) {
    io::TrainingState state =
        io::load_checkpoint(options.resume_from, model_, &optimizer_, scaler_.get());
    model_.to(device_);
    first_epoch = state.epoch;
  }

  std::shared_ptr<const data::Dataset> train_set = train.shared();
  std::shared_ptr<const data::Dataset> val_set = options.validation.shared();
  if (options.validation_split > 0.0) {
    data::TrainValidation split = data::validation_split(train_set, options.validation_split);
    train_set = split.train;
    val_set = split.validation;
  }
  EMBER_CHECK_T(ValueError, train_set->size() > 0, "fit: the training data is empty");

  const data::DataLoaderOptions train_options{.batch_size = options.batch_size,
                                              .shuffle = options.shuffle && !world.distributed,
                                              .drop_last = options.drop_last,
                                              .transforms = options.transform,
                                              .device = device_};
  // Each rank's shard (Note [Distributed fit]); the sampler pads the last one.
  const auto shard = [&](const data::Dataset& set, bool shuffle, uint64_t seed) {
    return std::make_shared<const data::DistributedSampler>(
        set.size(), data::DistributedSamplerOptions{.num_replicas = world.size,
                                                    .rank = world.rank,
                                                    .shuffle = shuffle,
                                                    .seed = seed,
                                                    .drop_last = options.drop_last});
  };
  std::optional<data::DataLoader> val_loader;
  if (val_set) {
    data::DataLoaderOptions val_options{.batch_size = options.batch_size,
                                        .seed = kUnshuffledSeed, .device = device_};
    if (world.distributed) val_options.sampler = shard(*val_set, false, kUnshuffledSeed);
    val_loader.emplace(val_set, val_options);
  }

  // Data-parallel: the model wrapped for this fit (it does not own the model).
  std::optional<dist::DistributedDataParallel> ddp;
  if (world.distributed) {
    ddp.emplace(nn::AnyModule(std::shared_ptr<nn::Module>(&model_, [](nn::Module*) {})));
  }
  nn::Module& forward = ddp ? static_cast<nn::Module&>(*ddp) : model_;

  // Callbacks that write files run on rank 0 only.
  std::vector<std::shared_ptr<callbacks::Callback>> cbs;
  for (const auto& cb : options.callbacks) {
    if (main_process_ || !cb->main_process_only()) cbs.push_back(cb);
  }
  History history;
  stop_ = false;
  stop_info_.reset();
  // Only turned on here: fit must not turn off a mode the caller set.
  std::optional<autograd::AnomalyModeGuard> anomaly;
  if (options.detect_anomaly) anomaly.emplace(true);
  for (const auto& cb : cbs) cb->on_train_begin(*this);
  for (int64_t epoch = first_epoch; epoch < options.epochs && !stop_; ++epoch) {
    epoch_ = epoch;
    for (const auto& cb : cbs) cb->on_epoch_begin(*this, epoch);
    if (verbose > 0) {
      std::printf("Epoch %lld/%lld\n", static_cast<long long>(epoch + 1),
                  static_cast<long long>(options.epochs));
      std::fflush(stdout);
    }
    data::DataLoaderOptions epoch_options = train_options;
    uint64_t seed = draw_shuffle_seed();  // see Note [Shuffle seeds and resuming]
    if (world.distributed) {
      seed = shared_seed(seed, device_);
      epoch_options.sampler = shard(*train_set, options.shuffle, seed);
    }
    epoch_options.seed = seed;
    data::DataLoader train_loader(train_set, epoch_options);
    train_loader.set_epoch(epoch);
    ProgressBar bar(train_loader.size(), verbose);
    const std::string where = "fit: epoch " + std::to_string(epoch + 1);
    Logs logs = run_epoch(train_loader, true, verbose == 1 ? &bar : nullptr, cbs, where, forward,
                          world.distributed);
    if (val_loader) {
      for (const auto& [name, v] : run_epoch(*val_loader, false, nullptr, {}, where + ", validation",
                                             model_, world.distributed)) {
        logs.emplace_back("val_" + name, v);
      }
    }
    if (stop_info_ && stop_info_->epoch == epoch && stop_info_->batch >= 0) {
      bar.finish_stopped(stop_info_->batch + 1, logs, stop_text(*stop_info_));
    } else {
      bar.finish(logs);
    }
    // The rate this epoch trained with, before any callback steps a schedule: logged by
    // fit rather than by the scheduling callback, so every callback sees it whatever the
    // order of the list (see Callback::changes_lr).
    if (std::any_of(cbs.begin(), cbs.end(), [](const auto& cb) { return cb->changes_lr(); })) {
      logs.emplace_back("lr", optimizer_.lr());
    }
    for (const auto& cb : cbs) cb->on_epoch_end(*this, epoch, logs);
    history.append(logs);
    // Only TerminateOnNaN answers for a NaN loss (it restored good weights); any other
    // stop, such as EarlyStopping's, would leave the NaN weights in the model silently.
    const double loss = logs.front().second;
    bool handled = false;
    for (const auto& cb : cbs) {
      auto* t = dynamic_cast<const callbacks::TerminateOnNaN*>(cb.get());
      handled = handled || (t != nullptr && t->terminated());
    }
    if (!std::isfinite(loss) && !handled) {
      throw ValueError("fit: the training loss became " + std::to_string(loss) + " in epoch " +
                       std::to_string(epoch + 1) +
                       " (one of its batches 1 to " + std::to_string(train_loader.size()) +
                       "); the model holds the weights of that epoch's last step and no good "
                       "weights were kept. Lower the learning rate, check the inputs for "
                       "NaN/Inf (FitOptions::detect_anomaly finds the op that produced it), or "
                       "add callbacks::TerminateOnNaN to stop at the batch with the last good "
                       "weights");
    }
  }
  if (stop_info_) history.set_stop(*stop_info_);
  for (const auto& cb : cbs) cb->on_train_end(*this);
  model_.eval();
  return history;
}

Logs Trainer::evaluate(data::DatasetRef data, EvaluateOptions options) {
  check_given(data, "evaluate");
  EMBER_CHECK_T(ValueError, options.batch_size > 0, "evaluate: batch_size must be positive, got ",
                options.batch_size);
  check_precision(options.precision, "evaluate");
  precision_ = options.precision;
  model_.to(device_);
  data::DataLoader loader(data.shared(), {.batch_size = options.batch_size, .seed = kUnshuffledSeed,
                                         .device = device_});
  ProgressBar bar(loader.size(), options.verbose);
  Logs logs =
      run_epoch(loader, false, options.verbose == 1 ? &bar : nullptr, {}, "evaluate", model_, false);
  bar.finish(logs);
  return logs;
}

Tensor Trainer::predict(data::DatasetRef data, int64_t batch_size) {
  check_given(data, "predict");
  EMBER_CHECK_T(ValueError, batch_size > 0, "predict: batch_size must be positive, got ",
                batch_size);
  model_.to(device_);
  model_.eval();
  NoGradGuard no_grad;
  data::DataLoader loader(data.shared(), {.batch_size = batch_size, .seed = kUnshuffledSeed, .device = device_});
  Tensor all;
  int64_t row = 0;
  for (const data::Batch& b : loader) {
    Tensor out = model_(b.x).cpu();
    if (!all.defined()) {
      Shape shape = out.shape();
      shape[0] = data->size();
      all = empty(shape, {.dtype = out.dtype()});
    }
    all.narrow(0, row, out.size(0)).copy_(out);
    row += out.size(0);
  }
  return all.defined() ? all : empty({0});
}

Tensor Trainer::predict(const Tensor& x, int64_t batch_size) {
  EMBER_CHECK_T(ShapeError, x.defined() && x.dim() >= 1, "predict: expected a batch of inputs, got ",
                x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  data::TensorDataset ds(x.cpu(), zeros({x.size(0)}, {.dtype = kInt64}));
  return predict(ds, batch_size);
}

}  // namespace ember
