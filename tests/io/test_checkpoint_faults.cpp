// Training checkpoints under faults: saves of a model with its optimizer killed with SIGKILL
// at seeded random moments spread over the save (the path holds the old or the new
// checkpoint, whole, and the next save leaves no temporary), a full disk, a read-only
// directory and a path that is a directory (typed errors naming the path, the old file
// intact), and a Trainer killed mid-epoch then resumed to the uninterrupted run's weights.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <ember/ember.h>

#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace ember;
using Bytes = std::vector<char>;

Bytes read_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> dir_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Every tensor of a state dict as raw bytes, by name, for bit-exact comparisons.
std::vector<std::pair<std::string, Bytes>> bits_of(const nn::StateDict& sd) {
  std::vector<std::pair<std::string, Bytes>> out;
  for (const auto& [name, t] : sd) {
    const Tensor c = t.cpu().contiguous();
    const auto* p = static_cast<const char*>(c.data_ptr());
    out.emplace_back(name, Bytes(p, p + c.numel() * static_cast<int64_t>(dtype_size(c.dtype()))));
  }
  return out;
}

// A model and its Adam state, large enough that a save takes a while (~19 MB on disk).
struct TrainedState {
  std::unique_ptr<nn::Sequential> model;
  std::unique_ptr<optim::Adam> opt;
};

TrainedState make_run(uint64_t seed, int steps) {
  manual_seed(seed);
  TrainedState r;
  r.model = std::make_unique<nn::Sequential>(std::initializer_list<nn::AnyModule>{
      nn::Linear(1024, 768), nn::ReLU(), nn::Linear(768, 1024)});
  r.opt = std::make_unique<optim::Adam>(r.model->parameters(), optim::AdamOptions{.lr = 1e-3});
  for (int s = 0; s < steps; ++s) {
    r.opt->zero_grad();
    sum((*r.model)(randn({4, 1024}))).backward();
    r.opt->step();
  }
  return r;
}

// What a checkpoint restores into a fresh model and optimizer: model then optimizer state.
std::vector<std::pair<std::string, Bytes>> loaded_bits(const std::string& path) {
  TrainedState fresh = make_run(99, 0);
  io::load_checkpoint(path, *fresh.model, fresh.opt.get());
  auto bits = bits_of(fresh.model->state_dict());
  auto opt_bits = bits_of(fresh.opt->state_dict());
  bits.insert(bits.end(), opt_bits.begin(), opt_bits.end());
  return bits;
}

std::vector<std::pair<std::string, Bytes>> run_bits(const TrainedState& r) {
  auto bits = bits_of(r.model->state_dict());
  auto opt_bits = bits_of(r.opt->state_dict());
  bits.insert(bits.end(), opt_bits.begin(), opt_bits.end());
  return bits;
}

// Runs `fn` in a child and returns "<type>: <message>" of what it threw ("<no error>" if
// nothing). With `unprivileged`, a root child first becomes "nobody", so that permission
// bits apply to it.
std::string error_in_child(const std::string& report, bool unprivileged,
                           const std::function<void()>& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::ofstream out(report);  // opened before dropping privileges
    if (unprivileged && ::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0))
      ::_exit(3);
    try {
      fn();
      out << "<no error>";
    } catch (const IOError& e) {
      out << "IOError: " << e.what();
    } catch (const std::exception& e) {
      out << "<not an IOError>: " << e.what();
    }
    out.close();
    ::_exit(out ? 0 : 4);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "<child failed>";
  std::ifstream in(report);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

::testing::AssertionResult mentions(const std::string& message,
                                    std::initializer_list<std::string> parts) {
  for (const auto& p : parts) {
    if (message.find(p) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "message \"" << message << "\" does not mention \"" << p << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

class CheckpointFaults : public ::testing::Test {
 protected:
  void TearDown() override {
    // Give back write permission so the directory can be removed.
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(dir_.path(), ec)) {
      if (e.is_directory())
        fs::permissions(e.path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
  }
  std::string path(const std::string& name) const { return (dir_.path() / name).string(); }
  ember::testing::TempDir dir_{"ember_ckpt_faults"};
};

}  // namespace

// Note [Stale temporaries] and Note [Atomic write], for a whole training checkpoint: 32
// SIGKILLs at seeded moments spread uniformly over one save (from before the first byte
// to after the rename) never leave a torn file, and the next successful save removes the
// temporaries they left.
TEST_F(CheckpointFaults, SavesKilledAtRandomMomentsLeaveTheOldOrTheNewCheckpointWhole) {
  const std::string file = path("ckpt.safetensors");
  const TrainedState a = make_run(1, 1);
  const TrainedState b = make_run(2, 2);
  const auto bits_a = run_bits(a);
  const auto bits_b = run_bits(b);
  ASSERT_NE(bits_a, bits_b);

  io::save_checkpoint(file, *a.model, a.opt.get(), {.epoch = 1});
  ASSERT_GT(fs::file_size(file), 18u << 20);
  // Forks a child that saves `b` over the file once it has told the parent it is starting;
  // returns its pid once it has.
  const auto start_saving_child = [&] {
    int ready[2];
    EXPECT_EQ(::pipe(ready), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(ready[0]);
      const char go = 1;
      if (::write(ready[1], &go, 1) != 1) ::_exit(2);
      try {
        io::save_checkpoint(file, *b.model, b.opt.get(), {.epoch = 2});
      } catch (...) {
        ::_exit(5);
      }
      ::_exit(0);
    }
    ::close(ready[1]);
    char go = 0;
    EXPECT_EQ(::read(ready[0], &go, 1), 1);
    ::close(ready[0]);
    return pid;
  };
  // How long a child's save takes here (fork's copy-on-write faults included), the fastest
  // of three, so the kills can be spread over it.
  int64_t save_us = std::numeric_limits<int64_t>::max();
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const pid_t pid = start_saving_child();
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    save_us = std::min<int64_t>(save_us, std::chrono::duration_cast<std::chrono::microseconds>(
                                             std::chrono::steady_clock::now() - t0)
                                             .count());
  }

  std::mt19937 rng(2024);
  constexpr int kKills = 32;
  int old_seen = 0, new_seen = 0, torn_temporaries = 0;
  for (int k = 0; k < kKills; ++k) {
    // The old one again; this successful save also removes the temporary the last kill
    // left, so they never pile up.
    io::save_checkpoint(file, *a.model, a.opt.get(), {.epoch = 1});
    const pid_t pid = start_saving_child();
    // Stratified over 1.25 save times: kill k lands in the k-th of kKills equal slices,
    // so the moments cover the whole save and a few come after its rename.
    const double slice = 1.25 * static_cast<double>(save_us) / kKills;
    const double at = (k + std::uniform_real_distribution<double>(0.0, 1.0)(rng)) * slice;
    ::usleep(static_cast<useconds_t>(at));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    // A child that finished before its kill exited normally: its save is whole.
    ASSERT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));

    torn_temporaries += dir_entries(dir_.path()).size() > 1 ? 1 : 0;
    const auto loaded = loaded_bits(file);
    ASSERT_TRUE(loaded == bits_a || loaded == bits_b) << "kill " << k << " left a torn checkpoint";
    (loaded == bits_a ? old_seen : new_seen) += 1;
  }
  // The kills must really have hit the save in both halves: before and after the rename.
  EXPECT_GT(old_seen, 0);
  EXPECT_GT(new_seen, 0);
  EXPECT_GT(torn_temporaries, 0) << "no kill landed inside a write: the test proves nothing";
  RecordProperty("kills", kKills);
  RecordProperty("old_whole", old_seen);
  RecordProperty("new_whole", new_seen);
  RecordProperty("temporaries_left", torn_temporaries);
  RecordProperty("save_us", static_cast<int>(save_us));
  std::printf(
      "%d kills over a %.1f ms save: %d left the old checkpoint, %d the new, %d a temporary\n",
      kKills, static_cast<double>(save_us) / 1000.0, old_seen, new_seen, torn_temporaries);

  io::save_checkpoint(file, *b.model, b.opt.get(), {.epoch = 2});
  EXPECT_EQ(dir_entries(dir_.path()), (std::vector<std::string>{"ckpt.safetensors"}));
  EXPECT_EQ(loaded_bits(file), bits_b);
}

TEST_F(CheckpointFaults, AFullDiskIsAnIOErrorNamingThePathAndKeepsTheOldCheckpoint) {
  const std::string file = path("ckpt.safetensors");
  const TrainedState a = make_run(1, 1);
  const TrainedState b = make_run(2, 2);
  io::save_checkpoint(file, *a.model, a.opt.get(), {.epoch = 1});
  const Bytes before = read_bytes(file);

  const std::string msg = error_in_child(path("report.txt"), /*unprivileged=*/false, [&] {
    ::signal(SIGXFSZ, SIG_IGN);  // write() then fails with EFBIG instead of killing the process
    struct rlimit limit = {1 << 20, 1 << 20};  // the disk "fills" 1 MiB into a 19 MB save
    ::setrlimit(RLIMIT_FSIZE, &limit);
    io::save_checkpoint(file, *b.model, b.opt.get(), {.epoch = 2});
  });
  EXPECT_TRUE(mentions(msg, {"IOError: ", file, "cannot write", "File too large"}));
  EXPECT_EQ(read_bytes(file), before);
  EXPECT_EQ(dir_entries(dir_.path()), (std::vector<std::string>{"ckpt.safetensors", "report.txt"}));
}

// Root ignores permission bits, so the save runs as "nobody" in a child.
TEST_F(CheckpointFaults, AReadOnlyDirectoryIsAnIOErrorNamingThePathAndKeepsTheOldCheckpoint) {
  const fs::path ro = dir_.path() / "ro";
  fs::create_directories(ro);
  fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_read |
                                   fs::perms::group_exec | fs::perms::others_read |
                                   fs::perms::others_exec);
  const std::string file = (ro / "ckpt.safetensors").string();
  const TrainedState a = make_run(1, 1);
  const TrainedState b = make_run(2, 2);
  io::save_checkpoint(file, *a.model, a.opt.get(), {.epoch = 1});
  const Bytes before = read_bytes(file);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                          fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);

  const std::string msg = error_in_child(path("report.txt"), /*unprivileged=*/true, [&] {
    io::save_checkpoint(file, *b.model, b.opt.get(), {.epoch = 2});
  });
  EXPECT_TRUE(
      mentions(msg, {"IOError: ", file, "cannot create a temporary file", "Permission denied"}));
  EXPECT_EQ(read_bytes(file), before);
  EXPECT_EQ(dir_entries(ro), (std::vector<std::string>{"ckpt.safetensors"}));
}

// A path below a regular file fails even for root (ENOTDIR): the failure a read-only
// directory gives an unprivileged user, in the test process itself.
TEST_F(CheckpointFaults, APathBelowARegularFileIsAnIOErrorNamingThePath) {
  const std::string file = path("ckpt.safetensors");
  const TrainedState a = make_run(1, 1);
  io::save_checkpoint(file, *a.model, a.opt.get(), {.epoch = 1});
  const Bytes before = read_bytes(file);
  const std::string below = file + "/x.safetensors";
  try {
    io::save_checkpoint(below, *a.model, a.opt.get(), {.epoch = 2});
    ADD_FAILURE() << "no error";
  } catch (const IOError& e) {
    EXPECT_TRUE(mentions(e.what(), {"save_safetensors", below, "Not a directory"}));
  }
  EXPECT_EQ(read_bytes(file), before);
  EXPECT_EQ(dir_entries(dir_.path()), (std::vector<std::string>{"ckpt.safetensors"}));
}

TEST_F(CheckpointFaults, APathThatIsADirectoryIsAnIOErrorNamingThePath) {
  const std::string target = path("ckpt.safetensors");
  fs::create_directories(fs::path(target) / "inside");
  const TrainedState a = make_run(1, 1);
  try {
    io::save_checkpoint(target, *a.model, a.opt.get(), {.epoch = 1});
    ADD_FAILURE() << "no error";
  } catch (const IOError& e) {
    EXPECT_TRUE(mentions(e.what(), {target, "is a directory"}));
  }
  EXPECT_EQ(dir_entries(target), (std::vector<std::string>{"inside"}));
  EXPECT_EQ(dir_entries(dir_.path()), (std::vector<std::string>{"ckpt.safetensors"}));
  // Loading it is an IOError too, and changes nothing.
  TrainedState fresh = make_run(3, 0);
  const auto bits = run_bits(fresh);
  EXPECT_THROW(io::load_checkpoint(target, *fresh.model, fresh.opt.get()), IOError);
  EXPECT_EQ(run_bits(fresh), bits);
}

// --- a Trainer killed mid-epoch, resumed in the test process ---------------------------------

namespace {

data::TensorDataset blobs(int64_t n) {
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n * 4);
  std::vector<int64_t> y(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < 4; ++j) x[4 * i + j] = normal(gen);
    y[i] = (x[4 * i] + x[4 * i + 1] * x[4 * i + 2] > 0.0f ? 1 : 0) + (x[4 * i + 3] > 0.5f ? 1 : 0);
  }
  return data::TensorDataset(Tensor::from_vector<float>(x, {n, 4}),
                             Tensor::from_vector<int64_t>(y, {n}));
}

// Kills its own process with SIGKILL at batch `batch` of epoch `epoch` (0-based): no
// destructor, no flush, as a machine that loses power.
class KillAt : public callbacks::Callback {
 public:
  KillAt(int64_t epoch, int64_t batch) : epoch_(epoch), batch_(batch) {}
  void on_epoch_begin(Trainer&, int64_t epoch) override { current_ = epoch; }
  void on_batch_end(Trainer&, int64_t batch, const Logs&) override {
    if (current_ == epoch_ && batch == batch_) ::raise(SIGKILL);
  }
  bool wants_batch_logs() const override { return true; }

 private:
  int64_t epoch_, batch_, current_ = -1;
};

struct Fitted {
  std::vector<std::pair<std::string, Bytes>> model, optimizer;
};

// A tiny MLP with dropout, Adam and a shuffled loader: every random stream resuming must
// restore. `extra` callbacks join the ModelCheckpoint-free default list.
Fitted fit_mlp(uint64_t seed, const data::TensorDataset& ds, FitOptions options) {
  manual_seed(seed);
  nn::Sequential model{nn::Linear(4, 32), nn::ReLU(), nn::Dropout(0.25), nn::Linear(32, 3)};
  optim::Adam opt(model.parameters(), {.lr = 0.01});
  Trainer trainer(model, opt, loss::CrossEntropy(), {}, Device::cpu());
  options.batch_size = 8;
  options.shuffle = true;
  options.verbose = 0;
  trainer.fit(ds, options);
  return {bits_of(model.state_dict()), bits_of(opt.state_dict())};
}

}  // namespace

TEST_F(CheckpointFaults, ATrainerKilledMidEpochResumesToTheUninterruptedWeightsBitForBit) {
  const auto ds = blobs(96);  // 12 batches an epoch
  constexpr int64_t kEpochs = 5;
  const Fitted uninterrupted = fit_mlp(17, ds, {.epochs = kEpochs, .validation_split = 0.25});

  // The child trains with a checkpoint per epoch and dies in epoch 4, batch 5.
  const std::string tmpl = path("run/state-{epoch}.safetensors");
  const pid_t pid = ::fork();
  if (pid == 0) {
    auto ckpt = std::make_shared<callbacks::ModelCheckpoint>(
        tmpl, callbacks::ModelCheckpointOptions{.training_state = true});
    fit_mlp(17, ds,
            {.epochs = kEpochs,
             .validation_split = 0.25,
             .callbacks = {ckpt, std::make_shared<KillAt>(3, 5)}});
    ::_exit(0);  // not reached
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_EQ(dir_entries(dir_.path() / "run"),
            (std::vector<std::string>{"state-1.safetensors", "state-2.safetensors",
                                      "state-3.safetensors"}));

  // Resumed from the last checkpoint under another seed: the checkpoint decides everything.
  const Fitted resumed = fit_mlp(12345, ds,
                                 {.epochs = kEpochs,
                                  .validation_split = 0.25,
                                  .resume_from = path("run/state-3.safetensors")});
  EXPECT_TRUE(resumed.model == uninterrupted.model) << "model weights differ after resuming";
  EXPECT_TRUE(resumed.optimizer == uninterrupted.optimizer)
      << "optimizer state differs after resuming";
}
