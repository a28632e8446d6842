// The bad-option table of the training API: optimizers, LR schedules, the loss scaler,
// gradient clipping, datasets, loaders, transforms, samplers, ImageFolder, callbacks, the
// Trainer, metrics, Module registration and init, each called with a bad option or in the
// wrong order. A bad call must throw its typed error (a ValueError for a bad value or a
// misuse, as PyTorch raises) naming the op and the offending value; loading a bad
// optimizer state from a file stays an IOError naming the file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <typeinfo>
#include <vector>

#include <ember/ember.h>

#include "support/error_table.h"

namespace {

using namespace ember;

using ember::testing::Expect;
using ember::testing::expect_name;
using ember::testing::is_expected;
using ember::testing::Row;
using ember::testing::type_of;

// A leaf parameter with a gradient, as after a backward pass.
Tensor param(const Shape& s = {2, 3}) {
  Tensor p = randn(s).requires_grad_();
  sum(p).backward();
  return p;
}

std::shared_ptr<data::TensorDataset> dataset(int64_t n) {
  std::vector<int64_t> y(static_cast<size_t>(n), 0);
  return std::make_shared<data::TensorDataset>(randn({n, 2}),
                                               Tensor::from_vector<int64_t>(y, {n}));
}

std::shared_ptr<nn::Linear> small_model() { return std::make_shared<nn::Linear>(2, 2); }

// A module that registers what a row tells it to, to reach the protected registration.
struct Registrar : nn::Module {
  Tensor forward(const Tensor& x) override { return x; }
  using nn::Module::add_child;
  using nn::Module::buffer_slot;
  using nn::Module::parameter_slot;
  using nn::Module::register_buffer;
  using nn::Module::register_parameter;
};

// The state dict of a scaler with one entry replaced.
StateDict scaler_state(const std::string& key, double value) {
  StateDict sd;
  for (const auto& [name, t] : optim::GradScaler().state_dict()) {
    sd.insert(name, name == key ? full({}, value, {.dtype = kFloat64}) : t);
  }
  return sd;
}

std::string scratch(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "ember_bad_options";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

std::vector<Row> table() {
  using E = Expect;
  std::vector<Row> rows;
  const auto add_row = [&](std::string name, E e, std::vector<std::string> parts,
                           std::function<void()> fn) {
    rows.push_back({std::move(name), e, std::move(parts), std::move(fn)});
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();

  // --- optimizers: options -------------------------------------------------------------------
  add_row("SGD lr < 0", E::Value, {"SGD", "learning rate", "lr=-0.1"},
          [] { optim::SGD({param()}, {.lr = -0.1}); });
  add_row("SGD lr NaN", E::Value, {"SGD", "lr=nan"}, [=] { optim::SGD({param()}, {.lr = nan}); });
  add_row("SGD momentum < 0", E::Value, {"SGD", "momentum=-1"},
          [] { optim::SGD({param()}, {.lr = 0.1, .momentum = -1.0}); });
  add_row("SGD dampening inf", E::Value, {"SGD", "dampening=inf"},
          [=] { optim::SGD({param()}, {.lr = 0.1, .dampening = inf}); });
  add_row("SGD weight_decay < 0", E::Value, {"SGD", "weight_decay=-0.5"},
          [] { optim::SGD({param()}, {.lr = 0.1, .weight_decay = -0.5}); });
  add_row("SGD nesterov without momentum", E::Value, {"SGD", "Nesterov", "momentum=0"},
          [] { optim::SGD({param()}, {.lr = 0.1, .nesterov = true}); });
  add_row("Adam lr < 0", E::Value, {"Adam", "learning rate", "lr=-1"},
          [] { optim::Adam({param()}, {.lr = -1.0}); });
  add_row("Adam beta1 = 1", E::Value, {"Adam", "betas[0]=1"},
          [] { optim::Adam({param()}, {.betas = {1.0, 0.999}}); });
  add_row("Adam beta2 < 0", E::Value, {"Adam", "betas[1]=-0.1"},
          [] { optim::Adam({param()}, {.betas = {0.9, -0.1}}); });
  add_row("Adam eps < 0", E::Value, {"Adam", "eps=-1"},
          [] { optim::Adam({param()}, {.eps = -1}); });
  add_row("AdamW weight_decay < 0", E::Value, {"AdamW", "weight_decay=-0.01"},
          [] { optim::AdamW({param()}, {.weight_decay = -0.01}); });
  add_row("AdamW beta1 NaN", E::Value, {"AdamW", "betas[0]=nan"},
          [=] { optim::AdamW({param()}, {.betas = {nan, 0.999}}); });
  add_row("RMSprop lr < 0", E::Value, {"RMSprop", "lr=-0.01"},
          [] { optim::RMSprop({param()}, {.lr = -0.01}); });
  add_row("RMSprop alpha < 0", E::Value, {"RMSprop", "alpha=-0.5"},
          [] { optim::RMSprop({param()}, {.alpha = -0.5}); });
  add_row("RMSprop eps inf", E::Value, {"RMSprop", "eps=inf"},
          [=] { optim::RMSprop({param()}, {.eps = inf}); });
  add_row("RMSprop momentum < 0", E::Value, {"RMSprop", "momentum=-2"},
          [] { optim::RMSprop({param()}, {.momentum = -2.0}); });
  add_row("RMSprop weight_decay < 0", E::Value, {"RMSprop", "weight_decay=-1"},
          [] { optim::RMSprop({param()}, {.weight_decay = -1.0}); });

  // --- optimizers: parameters, groups, set_lr ----------------------------------------------
  add_row("no parameter groups", E::Value, {"SGD", "no parameter groups"},
          [] { optim::SGD(std::vector<optim::ParamGroup<optim::SGDOptions>>{}); });
  add_row("undefined parameter", E::Value, {"SGD", "parameter 1 of group 0", "undefined"},
          [] { optim::SGD({param(), Tensor()}, {.lr = 0.1}); });
  add_row("parameter without grad", E::Value, {"Adam", "parameter 0", "does not require grad"},
          [] { optim::Adam({randn({2})}); });
  add_row("non-leaf parameter", E::Value, {"SGD", "parameter 0", "not a leaf"}, [] {
    Tensor leaf = randn({2}).requires_grad_();
    optim::SGD({mul(leaf, 2.0)}, {.lr = 0.1});
  });
  add_row("parameter twice in a group", E::Value, {"SGD", "parameter 1", "appears twice", "at 0"},
          [] {
            Tensor p = param();
            optim::SGD({p, p}, {.lr = 0.1});
          });
  add_row("parameter in two groups", E::Value, {"RMSprop", "already appears in group 0"}, [] {
    Tensor p = param();
    optim::RMSprop(std::vector<optim::ParamGroup<optim::RMSpropOptions>>{{{p}, {}}, {{p}, {}}});
  });
  add_row("set_lr < 0", E::Value, {"SGD::set_lr", "learning rate -3", "group 0"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1});
    opt.set_lr(-3.0);
  });
  add_row("set_lr on a missing group", E::Value, {"Adam::set_lr", "parameter group 4", "has 1"},
          [] {
            optim::Adam opt({param()});
            opt.set_lr(4, 0.1);
          });
  add_row("options of a missing group", E::Value, {"Adam", "parameter group 2", "does not exist"},
          [] {
            optim::Adam opt({param()});
            (void)opt.options(2);
          });
  add_row("set_options with a bad lr", E::Value, {"SGD", "lr=-1"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1});
    opt.set_options(0, {.lr = -1.0});
  });

  // --- optimizers: state dicts handed directly, and from a file ------------------------------
  add_row("optimizer state with an unknown key", E::Value,
          {"SGD::load_state_dict", "unexpected keys 'bogus'"}, [] {
            optim::SGD opt({param()}, {.lr = 0.1});
            StateDict sd = opt.state_dict();
            sd.insert("bogus", full({}, 1.0));
            opt.load_state_dict(sd);
          });
  add_row("optimizer state without params", E::Value,
          {"Adam::load_state_dict", "no 'param_groups.0.params'"}, [] {
            optim::Adam opt({param()});
            opt.load_state_dict(StateDict());
          });
  add_row("optimizer state with a fractional step", E::Value,
          {"SGD::load_state_dict", "'step'", "step count", "2.5"}, [] {
            optim::SGD opt({param()}, {.lr = 0.1});
            StateDict sd;
            for (const auto& [name, t] : opt.state_dict()) {
              sd.insert(name, name == "step" ? full({}, 2.5, {.dtype = kFloat64}) : t);
            }
            opt.load_state_dict(sd);
          });
  add_row("optimizer state with a bad lr", E::Value, {"SGD::load_state_dict", "lr=-2"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1});
    StateDict sd;
    for (const auto& [name, t] : opt.state_dict()) {
      sd.insert(name, name == "param_groups.0.lr" ? full({}, -2.0, {.dtype = kFloat64}) : t);
    }
    opt.load_state_dict(sd);
  });
  add_row("optimizer file with an unknown key", E::IO,
          {"load: ", "bad_optimizer.safetensors", "unexpected keys 'bogus'"}, [] {
            optim::SGD opt({param()}, {.lr = 0.1});
            StateDict sd = opt.state_dict();
            sd.insert("bogus", full({}, 1.0));
            const std::string path = scratch("bad_optimizer.safetensors");
            io::save_safetensors(path, sd);
            io::load(opt, path);
          });

  // --- LR schedules --------------------------------------------------------------------------
  add_row("StepLR step_size 0", E::Value, {"StepLR", "step_size", "got 0"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1});
    optim::StepLR(opt, 0);
  });
  add_row("CosineAnnealingLR T_max -1", E::Value, {"CosineAnnealingLR", "T_max", "got -1"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1});
    optim::CosineAnnealingLR(opt, -1);
  });
  add_row("LinearLR start_factor 0", E::Value, {"LinearLR", "start_factor", "got 0"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1});
    optim::LinearLR(opt, 0.0);
  });
  add_row("LinearLR end_factor 1.5", E::Value, {"LinearLR", "end_factor", "got 1.5"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1});
    optim::LinearLR(opt, 0.5, 1.5);
  });
  add_row("LinearLR total_iters 0", E::Value, {"LinearLR", "total_iters", "got 0"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1});
    optim::LinearLR(opt, 0.5, 1.0, 0);
  });
  add_row("OneCycleLR total_steps 0", E::Value, {"OneCycleLR", "total_steps", "got 0"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1, .momentum = 0.9});
    optim::OneCycleLR(opt, {.max_lr = 0.1, .total_steps = 0});
  });
  add_row("OneCycleLR max_lr 0", E::Value, {"OneCycleLR", "max_lr", "got 0"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1, .momentum = 0.9});
    optim::OneCycleLR(opt, {.max_lr = 0.0, .total_steps = 10});
  });
  add_row("OneCycleLR pct_start 1.5", E::Value, {"OneCycleLR", "pct_start", "got 1.5"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1, .momentum = 0.9});
    optim::OneCycleLR(opt, {.max_lr = 0.1, .total_steps = 10, .pct_start = 1.5});
  });
  add_row("OneCycleLR an empty phase", E::Value, {"OneCycleLR", "total_steps=1", "no steps"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1, .momentum = 0.9});
    optim::OneCycleLR(opt, {.max_lr = 0.1, .total_steps = 1});
  });
  add_row("OneCycleLR stepped past total_steps", E::Value,
          {"OneCycleLR", "tried to step 4 times", "total steps is 3"}, [] {
            optim::SGD opt({param()}, {.lr = 0.1, .momentum = 0.9});
            optim::OneCycleLR s(opt, {.max_lr = 0.1, .total_steps = 3, .pct_start = 0.5});
            for (int i = 0; i < 4; ++i) s.step();
          });
  add_row("set_last_epoch -2", E::Value, {"StepLR::set_last_epoch", "epoch -2"}, [] {
    optim::SGD opt({param()}, {.lr = 0.1});
    optim::StepLR s(opt, 2);
    s.set_last_epoch(-2);
  });
  add_row("schedule state with a fractional epoch", E::Value,
          {"StepLR::load_state_dict", "'last_epoch'", "got 1.5"}, [] {
            optim::SGD opt({param()}, {.lr = 0.1});
            optim::StepLR s(opt, 2);
            StateDict sd;
            sd.insert("last_epoch", full({}, 1.5, {.dtype = kFloat64}));
            sd.insert("base_lrs", full({1}, 0.1, {.dtype = kFloat64}));
            s.load_state_dict(sd);
          });

  // --- GradScaler ----------------------------------------------------------------------------
  add_row("GradScaler init_scale 0", E::Value, {"GradScaler", "init_scale", "got 0"},
          [] { optim::GradScaler({.init_scale = 0.0}); });
  add_row("GradScaler growth_factor 1", E::Value, {"GradScaler", "growth_factor", "got 1"},
          [] { optim::GradScaler({.growth_factor = 1.0}); });
  add_row("GradScaler backoff_factor 1", E::Value, {"GradScaler", "backoff_factor", "got 1"},
          [] { optim::GradScaler({.backoff_factor = 1.0}); });
  add_row("GradScaler growth_interval 0", E::Value, {"GradScaler", "growth_interval", "got 0"},
          [] { optim::GradScaler({.growth_interval = 0}); });
  add_row("GradScaler unscale_ twice", E::Value,
          {"GradScaler::unscale_", "already called", "SGD"}, [] {
            optim::SGD opt({param()}, {.lr = 0.1});
            optim::GradScaler scaler;
            scaler.unscale_(opt);
            scaler.unscale_(opt);
          });
  add_row("GradScaler state empty", E::Value, {"GradScaler::load_state_dict", "empty"}, [] {
    optim::GradScaler scaler;
    scaler.load_state_dict(StateDict());
  });
  add_row("GradScaler state growth_interval 2.5", E::Value,
          {"GradScaler::load_state_dict", "'growth_interval'", "got 2.5"}, [] {
            optim::GradScaler scaler;
            scaler.load_state_dict(scaler_state("growth_interval", 2.5));
          });
  add_row("GradScaler state growth_tracker past the interval", E::Value,
          {"GradScaler::load_state_dict", "'growth_tracker'", "got 5000"}, [] {
            optim::GradScaler scaler;
            scaler.load_state_dict(scaler_state("growth_tracker", 5000.0));
          });

  // --- clip_grad_norm ------------------------------------------------------------------------
  add_row("clip_grad_norm max_norm NaN", E::Value, {"clip_grad_norm", "max_norm is NaN"},
          [=] { optim::clip_grad_norm({param()}, nan); });
  add_row("clip_grad_norm norm_type 0", E::Value, {"clip_grad_norm", "norm_type", "got 0"},
          [] { optim::clip_grad_norm({param()}, 1.0, 0.0); });
  add_row("clip_grad_norm norm_type -inf", E::Value, {"clip_grad_norm", "norm_type", "got -inf"},
          [=] { optim::clip_grad_norm({param()}, 1.0, -inf); });

  // --- datasets ------------------------------------------------------------------------------
  add_row("Subset index out of range", E::Value, {"Subset", "index 7", "of 4 samples"},
          [] { data::Subset(dataset(4), {0, 7}); });
  add_row("Subset of null", E::Value, {"Subset", "null"}, [] { data::Subset(nullptr, {0}); });
  add_row("TensorDataset::get_batch index -1", E::Value,
          {"TensorDataset::get_batch", "index -1", "of 3 samples"},
          [] { (void)dataset(3)->get_batch({-1}); });
  add_row("random_permutation n -1", E::Value, {"random_permutation", "got -1"},
          [] { (void)data::random_permutation(-1, 0); });
  add_row("random_split no lengths", E::Value, {"random_split", "no lengths"},
          [] { (void)data::random_split(dataset(4), {}); });
  add_row("random_split negative length", E::Value, {"random_split", "length -1"},
          [] { (void)data::random_split(dataset(4), {-1.0, 5.0}); });
  add_row("random_split lengths that do not sum", E::Value,
          {"random_split", "lengths sum to 0.7", "(4)"},
          [] { (void)data::random_split(dataset(4), {0.5, 0.2}); });
  add_row("validation_split fraction 1", E::Value, {"validation_split", "fraction", "got 1"},
          [] { (void)data::validation_split(dataset(4), 1.0); });
  add_row("validation_split leaving no training", E::Value,
          {"validation_split", "of 1 samples", "non-empty"},
          [] { (void)data::validation_split(dataset(1), 0.5); });
  add_row("validation_split of null", E::Value, {"validation_split", "null"},
          [] { (void)data::validation_split(nullptr, 0.5); });

  // --- DataLoader ----------------------------------------------------------------------------
  add_row("DataLoader batch_size 0", E::Value, {"DataLoader", "batch_size", "got 0"},
          [] { data::DataLoader(dataset(4), {.batch_size = 0}); });
  add_row("DataLoader prefetch -1", E::Value, {"DataLoader", "prefetch", "got -1"},
          [] { data::DataLoader(dataset(4), {.prefetch = -1}); });
  add_row("DataLoader num_workers -2", E::Value, {"DataLoader", "num_workers", "got -2"},
          [] { data::DataLoader(dataset(4), {.num_workers = -2}); });
  add_row("DataLoader null dataset", E::Value, {"DataLoader", "null"},
          [] { data::DataLoader(nullptr); });
  add_row("DataLoader shuffle with a sampler", E::Value, {"DataLoader", "shuffle", "sampler"},
          [] {
            auto s = std::make_shared<data::DistributedSampler>(
                4, data::DistributedSamplerOptions{.num_replicas = 2, .rank = 0});
            data::DataLoader(dataset(4), {.shuffle = true, .sampler = s});
          });
  add_row("DataLoader sampler of another size", E::Value,
          {"DataLoader", "sampler is for 6 samples", "has 4"}, [] {
            auto s = std::make_shared<data::DistributedSampler>(
                6, data::DistributedSamplerOptions{.num_replicas = 2, .rank = 1});
            data::DataLoader(dataset(4), {.sampler = s});
          });
  add_row("DataLoader dereferencing end()", E::Value, {"DataLoader", "past the last batch"}, [] {
    data::DataLoader loader(dataset(4), {.batch_size = 2, .num_workers = 0});
    (void)*loader.end();
  });
  add_row("DataLoader incrementing end()", E::Value, {"DataLoader", "incrementing an end"}, [] {
    data::DataLoader loader(dataset(4), {.batch_size = 2, .num_workers = 0});
    auto it = loader.end();
    ++it;
  });

  // --- sampler -------------------------------------------------------------------------------
  add_row("DistributedSampler dataset_size -1", E::Value, {"DistributedSampler", "got -1"},
          [] { data::DistributedSampler(-1, {}); });
  add_row("DistributedSampler num_replicas 0", E::Value,
          {"DistributedSampler", "num_replicas", "got 0"},
          [] { data::DistributedSampler(4, {.num_replicas = 0}); });
  add_row("DistributedSampler rank 2 of 2", E::Value, {"DistributedSampler", "rank 2", "[0, 2)"},
          [] { data::DistributedSampler(4, {.num_replicas = 2, .rank = 2}); });

  // --- transforms ----------------------------------------------------------------------------
  add_row("data::uniform low >= high", E::Value, {"data::uniform", "low=1", "high=1"}, [] {
    data::Generator gen(0);
    (void)data::uniform({2}, gen, 1.0, 1.0);
  });
  add_row("data::normal stddev < 0", E::Value, {"data::normal", "stddev=-1"}, [] {
    data::Generator gen(0);
    (void)data::normal({2}, gen, 0.0, -1.0);
  });
  add_row("data::bernoulli p 2", E::Value, {"data::bernoulli", "got 2"}, [] {
    data::Generator gen(0);
    (void)data::bernoulli({2}, gen, 2.0);
  });
  add_row("Normalize lengths differ", E::Value, {"Normalize", "[0.5, 0.5]", "same length"},
          [] { data::Normalize({0.5, 0.5}, {0.2}); });
  add_row("Normalize std 0", E::Value, {"Normalize", "zero or non-finite"},
          [] { data::Normalize({0.5}, {0.0}); });
  add_row("RandomCrop size 0", E::Value, {"RandomCrop", "size [0, 0]"},
          [] { data::RandomCrop(0); });
  add_row("RandomCrop padding -1", E::Value, {"RandomCrop", "padding -1"},
          [] { data::RandomCrop(4, -1); });
  add_row("RandomHorizontalFlip p 1.5", E::Value, {"RandomHorizontalFlip", "got 1.5"},
          [] { data::RandomHorizontalFlip(1.5); });
  add_row("OneHot num_classes 0", E::Value, {"OneHot", "num_classes", "got 0"},
          [] { data::OneHot(0); });
  add_row("OneHot undefined labels", E::Value, {"OneHot", "undefined"},
          [] { (void)data::OneHot(3)(Tensor()); });
  add_row("Normalize undefined batch", E::Value, {"Normalize", "undefined"},
          [] { (void)data::Normalize({0.5}, {0.5})(Tensor()); });
  add_row("Compose null step", E::Value, {"Compose", "null"},
          [] { data::Compose().add(std::shared_ptr<const data::Transform>()); });

  // --- ImageFolder and export_image_folder ---------------------------------------------------
  const std::string no_root = scratch("no_such_folder");
  add_row("ImageFolder height 0", E::Value, {"ImageFolder", "height and width", "0x150"},
          [=] { data::ImageFolder(no_root, {.height = 0}); });
  add_row("ImageFolder channels 5", E::Value, {"ImageFolder", "channels", "got 5"},
          [=] { data::ImageFolder(no_root, {.channels = 5}); });
  add_row("ImageFolder rescale NaN", E::Value, {"ImageFolder", "rescale", "got nan"},
          [=] { data::ImageFolder(no_root, {.rescale = nan}); });
  add_row("ImageFolder max_pixels 0", E::Value, {"ImageFolder", "max_pixels", "got 0"},
          [=] { data::ImageFolder(no_root, {.max_pixels = 0}); });
  add_row("ImageFolder max_images 0", E::Value, {"ImageFolder", "max_images", "got 0"},
          [=] { data::ImageFolder(no_root, {.max_images = 0}); });
  add_row("ImageFolder lazy with skip_bad_files", E::Value,
          {"ImageFolder", "skip_bad_files", "lazy"},
          [=] { data::ImageFolder(no_root, {.skip_bad_files = true, .lazy = true}); });
  add_row("export_image_folder without labels", E::Value, {"export_image_folder", "no labels"},
          [] {
            data::TensorDataset ds(randn({2, 1, 4, 4}), Tensor());
            data::export_image_folder(ds, {"a"}, scratch("export_none"));
          });
  add_row("export_image_folder label past the classes", E::Value,
          {"export_image_folder", "sample 1", "label 3", "2 class names"}, [] {
            data::TensorDataset ds(zeros({2, 1, 4, 4}), Tensor::from_vector<int64_t>({0, 3}, {2}));
            data::export_image_folder(ds, {"a", "b"}, scratch("export_label"));
          });
  add_row("read_idx_pair num_classes 0", E::Value, {"read_idx_pair", "num_classes", "got 0"},
          [] { (void)data::read_idx_pair("images", "labels", 0); });

  // --- callbacks -----------------------------------------------------------------------------
  add_row("EarlyStopping patience -1", E::Value, {"EarlyStopping", "patience", "got -1"},
          [] { callbacks::EarlyStopping({.patience = -1}); });
  add_row("ModelCheckpoint empty path", E::Value, {"ModelCheckpoint", "empty path"},
          [] { callbacks::ModelCheckpoint(""); });
  add_row("ModelCheckpoint unclosed field", E::Value, {"ModelCheckpoint", "unclosed", "w{epoch"},
          [] { (void)callbacks::ModelCheckpoint("w{epoch").format_path(0, {}); });
  add_row("ModelCheckpoint bad format spec", E::Value, {"ModelCheckpoint", "spec '02q'"},
          [] { (void)callbacks::ModelCheckpoint("w{epoch:02q}").format_path(0, {}); });
  add_row("LearningRateScheduler null schedule", E::Value, {"LearningRateScheduler", "null"},
          [] { callbacks::LearningRateScheduler(std::shared_ptr<optim::LRScheduler>()); });
  add_row("LearningRateScheduler empty function", E::Value, {"LearningRateScheduler", "empty"},
          [] {
            callbacks::LearningRateScheduler(std::function<double(int64_t, double)>());
          });
  add_row("LearningRateScheduler returning lr < 0", E::Value,
          {"LearningRateScheduler", "lr = -1", "epoch 0"}, [] {
            auto model = small_model();
            optim::SGD opt(model->parameters(), {.lr = 0.1});
            Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
            auto cb = std::make_shared<callbacks::LearningRateScheduler>(
                [](int64_t, double) { return -1.0; });
            trainer.fit(dataset(4), {.epochs = 1, .callbacks = {cb}, .verbose = 0});
          });

  // --- Trainer -------------------------------------------------------------------------------
  const auto with_trainer = [](std::function<void(Trainer&)> fn) {
    return [fn] {
      auto model = small_model();
      optim::SGD opt(model->parameters(), {.lr = 0.1});
      Trainer trainer(*model, opt, loss::CrossEntropy(), {}, Device::cpu());
      fn(trainer);
    };
  };
  add_row("fit epochs -1", E::Value, {"fit", "epochs=-1"},
          with_trainer([](Trainer& t) { t.fit(dataset(4), {.epochs = -1}); }));
  add_row("fit batch_size 0", E::Value, {"fit", "batch_size=0"},
          with_trainer([](Trainer& t) { t.fit(dataset(4), {.batch_size = 0}); }));
  add_row("fit validation_split 1", E::Value, {"fit", "validation_split", "got 1"},
          with_trainer([](Trainer& t) { t.fit(dataset(4), {.validation_split = 1.0}); }));
  add_row("fit validation data and split", E::Value, {"fit", "not both"},
          with_trainer([](Trainer& t) {
            t.fit(dataset(4), {.validation = dataset(2), .validation_split = 0.5});
          }));
  add_row("fit on empty data", E::Value, {"fit", "training data is empty"},
          with_trainer([](Trainer& t) { t.fit(dataset(0), {.verbose = 0}); }));
  add_row("fit on null data", E::Value, {"fit", "null"},
          with_trainer([](Trainer& t) { t.fit(nullptr); }));
  add_row("evaluate batch_size 0", E::Value, {"evaluate", "batch_size", "got 0"},
          with_trainer([](Trainer& t) { (void)t.evaluate(dataset(4), {.batch_size = 0}); }));
  add_row("predict batch_size -1", E::Value, {"predict", "batch_size", "got -1"},
          with_trainer([](Trainer& t) { (void)t.predict(randn({4, 2}), -1); }));

  // --- metrics -------------------------------------------------------------------------------
  add_row("TopKAccuracy k 0", E::Value, {"TopKAccuracy", "k", "got 0"},
          [] { metrics::TopKAccuracy(0); });
  add_row("ConfusionMatrix 1 class", E::Value, {"ConfusionMatrix", "num_classes", "got 1"},
          [] { metrics::ConfusionMatrix(1); });
  add_row("Precision 1 class", E::Value, {"Precision", "num_classes", "got 1"},
          [] { metrics::Precision(1); });
  add_row("AUC num_thresholds 1", E::Value, {"AUC", "num_thresholds", "got 1"},
          [] { metrics::AUC(1); });
  add_row("Accuracy of undefined output", E::Value, {"Accuracy", "undefined output"},
          [] { metrics::Accuracy().update(Tensor(), Tensor::from_vector<int64_t>({0}, {1})); });
  add_row("AUC of undefined target", E::Value, {"AUC", "undefined"},
          [] { metrics::AUC().update(randn({2}), Tensor()); });

  // --- Module registration, holders, init ----------------------------------------------------
  add_row("register_parameter with a '.'", E::Value, {"register_parameter", "'a.b'", "'.'"}, [] {
    Registrar m;
    m.register_parameter("a.b", randn({2}));
  });
  add_row("register_parameter empty name", E::Value, {"register_parameter", "non-empty"}, [] {
    Registrar m;
    m.register_parameter("", randn({2}));
  });
  add_row("register_parameter twice", E::Value, {"register_parameter", "'w'", "already"}, [] {
    Registrar m;
    m.register_parameter("w", randn({2}));
    m.register_parameter("w", randn({2}));
  });
  add_row("register_buffer twice", E::Value, {"register_buffer", "'b'", "already"}, [] {
    Registrar m;
    m.register_buffer("b", randn({2}));
    m.register_buffer("b", randn({2}));
  });
  add_row("register_module null", E::Value, {"register_module", "'fc'", "null"}, [] {
    Registrar m;
    m.add_child("fc", nullptr);
  });
  add_row("register_module twice", E::Value, {"register_module", "'fc'", "already"}, [] {
    Registrar m;
    m.add_child("fc", small_model());
    m.add_child("fc", small_model());
  });
  add_row("parameter_slot unknown", E::Value, {"Registrar", "no parameter named 'w'"}, [] {
    Registrar m;
    (void)m.parameter_slot("w");
  });
  add_row("buffer_slot unknown", E::Value, {"Registrar", "no buffer named 'b'"}, [] {
    Registrar m;
    (void)m.buffer_slot("b");
  });
  add_row("empty ModuleHolder", E::Value, {"ModuleHolder<Linear>", "used while empty"}, [] {
    nn::ModuleHolder<nn::Linear> holder;
    (void)holder.get();
  });
  add_row("init of an undefined tensor", E::Value, {"init", "undefined tensor"}, [] {
    Tensor t;
    nn::init::uniform_(t, 0.0, 1.0);
  });

  // --- ONNX export options -------------------------------------------------------------------
  add_row("export_onnx opset 18", E::Value, {"export_onnx", "opset 18"}, [] {
    nn::Linear m(2, 2);
    io::export_onnx(m, randn({1, 2}), scratch("m.onnx"), {.opset = 18});
  });
  add_row("export_onnx same input and output names", E::Value, {"export_onnx", "'x' and 'x'"},
          [] {
            nn::Linear m(2, 2);
            io::export_onnx(m, randn({1, 2}), scratch("m.onnx"),
                            {.input_name = "x", .output_name = "x"});
          });
  return rows;
}

}  // namespace

TEST(BadOptions, EveryRowThrowsItsTypedErrorNamingTheOpAndTheValue) {
  const std::vector<Row> rows = table();
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    try {
      row.call();
      ADD_FAILURE() << "expected " << expect_name(row.expect) << ", got no error";
    } catch (const std::exception& e) {
      if (!is_expected(row.expect, e)) {
        ADD_FAILURE() << "expected " << expect_name(row.expect) << ", got " << type_of(e) << ": "
                      << e.what();
        continue;
      }
      for (const auto& part : row.parts) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
            << "message \"" << e.what() << "\" does not mention \"" << part << "\"";
      }
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::temp_directory_path() / "ember_bad_options", ec);
  RecordProperty("rows", static_cast<int>(rows.size()));
  std::printf("%zu rows of bad options and misuse\n", rows.size());
  EXPECT_GE(rows.size(), 100u);
}
