// Trainer::fit in a process group (Note [Distributed fit] in trainer.h): two ranks over
// Gloo with batch 32 each end with the weights and logs of one process with batch 64; the
// callbacks that write files run on rank 0 only, and rank 0's training checkpoint loads
// and evaluates in a single process. The ranks are forked from the test (each test runs in
// a fresh process, so no other thread is forked with them) and reaped within a deadline.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "ember/ember.h"

#include "support/allclose.h"
#include "support/free_port.h"
#include "support/temp_dir.h"

namespace {

using namespace ember;
using ember::testing::allclose;
using ember::testing::values;

data::TensorDataset make_data() {
  manual_seed(7);
  const Tensor x = rand({256, 6}) * 2.0 - 1.0;
  return data::TensorDataset(x, argmax(x, 1));
}

nn::Sequential make_model() {
  manual_seed(1);
  return nn::Sequential{nn::Linear(6, 16), nn::ReLU(), nn::Linear(16, 6)};
}

struct Training {
  nn::Sequential model = make_model();
  optim::Adam opt{model.parameters(), {.lr = 0.01}};
  History history;
};

// Trains on `batch_size` examples a step (per rank in a process group).
void train(Training& run, int64_t batch_size, std::vector<std::shared_ptr<callbacks::Callback>> cbs) {
  const data::TensorDataset ds = make_data();
  Trainer trainer(run.model, run.opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cpu());
  run.history = trainer.fit(ds, {.epochs = 3, .batch_size = batch_size, .validation_split = 0.25,
                                 .callbacks = std::move(cbs), .verbose = 0});
}

// Runs `body(rank)` in `world` forked processes that joined one Gloo group; true when all
// exited 0 within the deadline (the rest are killed).
bool run_ranks(int world, const std::function<void(int)>& body) {
  const int port = ember::testing::free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 0;
      try {
        dist::init_process_group({.backend = "gloo", .rank = rank, .world_size = world,
                                  .master_addr = "127.0.0.1", .master_port = port,
                                  .timeout = std::chrono::seconds(30)});
        body(rank);
        dist::destroy_process_group();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
        code = 1;
      }
      std::fflush(nullptr);
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  bool ok = true;
  for (pid_t pid : pids) {
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ok = false;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  return ok;
}

TEST(DistributedFit, TwoRanksOfBatch32TrainAsOneProcessOfBatch64) {
  if (!dist::is_available()) GTEST_SKIP() << "built without distributed support";
  ember::testing::TempDir dir("ember_dist_fit");
  // Each rank saves its weights and logs; only rank 0 writes the callbacks' files.
  ASSERT_TRUE(run_ranks(2, [&](int rank) {
    Training run;
    const std::string r = std::to_string(rank);
    train(run, 32,
          {std::make_shared<callbacks::CSVLogger>(dir.file("log" + r + ".csv")),
           std::make_shared<callbacks::ModelCheckpoint>(
               dir.file("ckpt" + r + ".safetensors"),
               callbacks::ModelCheckpointOptions{.monitor = "loss", .training_state = true})});
    io::save(run.model, dir.file("weights" + r + ".safetensors"));
    std::ofstream(dir.file("loss" + r + ".txt"))
        << run.history["loss"].back() << " " << run.history["val_accuracy"].back();
  }));
  Training single;
  train(single, 64, {});

  nn::Sequential rank0 = make_model(), rank1 = make_model();
  io::load(rank0, dir.file("weights0.safetensors"));
  io::load(rank1, dir.file("weights1.safetensors"));
  const auto p0 = rank0.parameters(), p1 = rank1.parameters(), ps = single.model.parameters();
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_EQ(values(p0[i]), values(p1[i])) << "the ranks' weights differ, parameter " << i;
    EXPECT_TRUE(allclose(p0[i], ps[i], ember::testing::Tolerance{1e-4, 1e-5}))
        << "parameter " << i;
  }
  // The logs are averaged over the ranks: the same on both, and the one process's.
  std::ifstream l0(dir.file("loss0.txt")), l1(dir.file("loss1.txt"));
  double loss0 = 0, acc0 = 0, loss1 = 0, acc1 = 0;
  l0 >> loss0 >> acc0;
  l1 >> loss1 >> acc1;
  EXPECT_EQ(loss0, loss1);
  EXPECT_EQ(acc0, acc1);
  EXPECT_NEAR(loss0, single.history["loss"].back(), 1e-4);
  // Weights equal to float rounding can still flip a near tie among the 64 validation
  // examples: at most one.
  EXPECT_NEAR(acc0, single.history["val_accuracy"].back(), 1.0 / 64 + 1e-9);
  // Files from rank 0 only.
  EXPECT_TRUE(std::filesystem::exists(dir.file("log0.csv")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("log1.csv")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("ckpt1.safetensors")));
  // Rank 0's training checkpoint loads and evaluates in one process.
  Training loaded;
  io::load_checkpoint(dir.file("ckpt0.safetensors"), loaded.model, &loaded.opt);
  const auto pl = loaded.model.parameters();
  for (size_t i = 0; i < pl.size(); ++i) EXPECT_EQ(values(pl[i]), values(p0[i]));
  Trainer eval(loaded.model, loaded.opt, loss::CrossEntropy(), {metrics::Accuracy()},
               Device::cpu());
  const data::TensorDataset ds = make_data();
  EXPECT_GT(eval.evaluate(ds).back().second, 0.3);  // well above chance (1/6)
}

}  // namespace
