// Checks of values on the device (Note [Deferred checks] in core/device.h) and reads that
// do not wait (Note [Reading without waiting] in core/pending_value.h): on the CPU bad
// targets and indices raise at the op; on a GPU at the next synchronization, or at the op
// with sync checks on; the Trainer's epoch waits for the GPU a fixed number of times,
// however many batches it has.
#include <gtest/gtest.h>

#include <ember/ember.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "support/check.h"
#include "support/device.h"

namespace ember {
namespace {

using testing::contains;
using testing::error_of;

Tensor targets(std::vector<int64_t> v, Device device) {
  const auto n = static_cast<int64_t>(v.size());
  return Tensor::from_vector(v, {n}).to(device);
}

// Turns sync checks on (or off) for a test's scope.
struct SyncChecks {
  bool before = cuda::sync_checks();
  explicit SyncChecks(bool on) { cuda::set_sync_checks(on); }
  ~SyncChecks() { cuda::set_sync_checks(before); }
};

TEST(DeferredChecks, OnTheCpuBadTargetsAndIndicesRaiseAtTheOp) {
  const std::string ce = error_of<ShapeError>([] {
    cross_entropy(zeros({3, 4}), targets({0, 4, 9}, Device::cpu()));
  });
  EXPECT_TRUE(contains(ce, "cross_entropy: 2 of 3 target(s) are outside the valid class range "
                           "[0, 4)")) << ce;
  EXPECT_FALSE(contains(ce, "next synchronization")) << ce;
  const std::string emb = error_of<ShapeError>([] {
    embedding(zeros({4, 2}), targets({1, -3, 7}, Device::cpu()));
  });
  EXPECT_TRUE(contains(emb, "embedding: index -3 is out of range for a table of 4 rows")) << emb;
  EXPECT_TRUE(contains(emb, "2 of 3 indices")) << emb;
  cuda::check_deferred_errors();  // nothing queued on the CPU
}

TEST(DeferredChecks, SyncChecksSwitch) {
  {
    SyncChecks on(true);
    EXPECT_TRUE(cuda::sync_checks());
  }
  SyncChecks off(false);
  EXPECT_FALSE(cuda::sync_checks());
}

TEST(PendingValue, ReadsACpuValueAtOnce) {
  PendingValue v(full({}, 2.5));
  ASSERT_TRUE(v.valid());
  EXPECT_TRUE(v.ready());
  EXPECT_EQ(v.value(), 2.5);
  EXPECT_EQ(PendingValue(full({1, 1}, 3.0, {.dtype = kInt64})).value(), 3.0);
  EXPECT_FALSE(PendingValue().valid());
  EXPECT_THROW(PendingValue(zeros({2})), ShapeError);
  EXPECT_THROW(PendingValue{Tensor()}, Error);
  EXPECT_THROW((void)PendingValue().value(), Error);
}

TEST(DeferredChecks, OnAGpuABadTargetRaisesAtTheNextRead) {
  EMBER_SKIP_WITHOUT_GPU();
  SyncChecks off(false);
  const Device gpu = Device::cuda(0);
  cuda::synchronize();
  const uint64_t before = cuda::host_sync_count();
  Tensor loss = cross_entropy(zeros({3, 4}).to(gpu), targets({0, 4, 9}, gpu));
  EXPECT_EQ(cuda::host_sync_count(), before) << "the op waited for the GPU";
  const std::string e = error_of<ShapeError>([&] { (void)loss.item(); });
  EXPECT_TRUE(contains(e, "cross_entropy: 2 of 3 target(s) are outside")) << e;
  EXPECT_TRUE(contains(e, "next synchronization")) << e;
  // Raised once: the next read is clean.
  EXPECT_NO_THROW(cuda::synchronize());
  EXPECT_NO_THROW((void)zeros({1}).to(gpu).item());
}

TEST(DeferredChecks, OnAGpuAProbabilityOutsideTheUnitIntervalRaisesAtTheNextRead) {
  EMBER_SKIP_WITHOUT_GPU();
  SyncChecks off(false);
  const Device gpu = Device::cuda(0);
  cuda::synchronize();
  const uint64_t before = cuda::host_sync_count();
  const Tensor x = Tensor::from_vector(std::vector<float>{0.5f, 1.5f, -0.25f}, {3}).to(gpu);
  Tensor loss = binary_cross_entropy(x, full({3}, 1.0).to(gpu));
  EXPECT_EQ(cuda::host_sync_count(), before) << "the op waited for the GPU";
  const std::string e = error_of<ValueError>([&] { (void)loss.item(); });
  EXPECT_TRUE(contains(e, "binary_cross_entropy: all elements of input should be between 0 and "
                          "1, but 2 of 3 are not")) << e;
  EXPECT_TRUE(contains(e, "next synchronization")) << e;
  EXPECT_NO_THROW(cuda::synchronize());
}

TEST(DeferredChecks, OnAGpuABadIndexRaisesAtSynchronizeAndNothingIsReadOutOfBounds) {
  EMBER_SKIP_WITHOUT_GPU();
  SyncChecks off(false);
  const Device gpu = Device::cuda(0);
  Tensor w = ones({4, 3}).to(gpu).requires_grad_(true);
  Tensor out = embedding(w, targets({1, 1000000, 2}, gpu));
  out.sum().backward();  // the bad index adds nothing anywhere
  const std::string e = error_of<ShapeError>([] { cuda::synchronize(); });
  EXPECT_TRUE(contains(e, "embedding: index 1000000 is out of range for a table of 4 rows")) << e;
  const std::vector<float> rows = out.cpu().to_vector<float>();
  EXPECT_TRUE(std::isnan(rows[3])) << "the bad index's row";
  EXPECT_EQ(rows[0], 1.0f);
  const std::vector<float> g = w.grad().cpu().to_vector<float>();
  EXPECT_EQ(g, (std::vector<float>{0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0}));
}

TEST(DeferredChecks, WithSyncChecksAGpuOpRaisesAtTheCall) {
  EMBER_SKIP_WITHOUT_GPU();
  SyncChecks on(true);
  const Device gpu = Device::cuda(0);
  EXPECT_THROW(cross_entropy(zeros({2, 3}).to(gpu), targets({0, 3}, gpu)), ShapeError);
  EXPECT_THROW(embedding(zeros({4, 2}).to(gpu), targets({-1}, gpu)), ShapeError);
  EXPECT_NO_THROW(cross_entropy(zeros({2, 3}).to(gpu), targets({0, 2}, gpu)));
}

TEST(DeferredChecks, ManyChecksWaitOncePerThousandAndTheThreadsAreSeparate) {
  EMBER_SKIP_WITHOUT_GPU();
  SyncChecks off(false);
  const Device gpu = Device::cuda(0);
  const Tensor x = zeros({8, 10}).to(gpu);
  const Tensor good = targets({0, 1, 2, 3, 4, 5, 6, 7}, gpu);
  cuda::synchronize();
  const uint64_t before = cuda::host_sync_count();
  for (int i = 0; i < 1500; ++i) (void)cross_entropy(x, good);
  EXPECT_EQ(cuda::host_sync_count() - before, 1u) << "the queue of 1024 checks filled once";
  // A bad target in another thread is that thread's error, not this one's.
  std::thread([&] {
    (void)cross_entropy(x, targets({0, 1, 2, 3, 4, 5, 6, 70}, gpu));
    EXPECT_THROW(cuda::check_deferred_errors(), ShapeError);
  }).join();
  EXPECT_NO_THROW(cuda::check_deferred_errors());
}

TEST(DeferredChecks, DeterministicEmbeddingBackwardOnAGpuMatchesTheCpuExactly) {
  EMBER_SKIP_WITHOUT_GPU();
  const bool was = cuda::deterministic();
  cuda::set_deterministic(true);
  manual_seed(3);
  const Tensor w_cpu = randn({50, 17}).requires_grad_(true);
  std::vector<int64_t> idx;
  for (int i = 0; i < 3000; ++i) idx.push_back((i * 37 + i / 7) % 50);
  idx[5] = 4;  // the padding row
  const Tensor g = randn({3000, 17});
  mul(embedding(w_cpu, targets(idx, Device::cpu()), /*padding_idx=*/4), g).sum().backward();
  const Tensor w_gpu = w_cpu.detach().cuda().requires_grad_(true);
  mul(embedding(w_gpu, targets(idx, Device::cuda(0)), 4), g.cuda()).sum().backward();
  cuda::set_deterministic(was);
  EXPECT_EQ(w_gpu.grad().cpu().to_vector<float>(), w_cpu.grad().to_vector<float>());
}

TEST(PendingValue, AGpuValueArrivesWithoutAWait) {
  EMBER_SKIP_WITHOUT_GPU();
  const Tensor x = full({}, 7.0).cuda();
  cuda::synchronize();
  const uint64_t before = cuda::host_sync_count();
  PendingValue v(mul(x, 2.0));
  while (!v.ready()) std::this_thread::yield();
  EXPECT_EQ(v.value(), 14.0);
  EXPECT_EQ(cuda::host_sync_count(), before);
}

// One epoch of fit on the GPU: its waits are the epoch's end (loss, metrics, checks), the
// same for 4 batches as for 16.
uint64_t syncs_of_an_epoch(int64_t batches) {
  manual_seed(0);
  nn::Sequential model{nn::Linear(20, 32), nn::ReLU(), nn::Linear(32, 10)};
  optim::SGD opt(model.parameters(), {.lr = 0.01});
  Trainer trainer(model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cuda(0));
  const int64_t n = batches * 16;
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = i % 10;
  data::TensorDataset data(randn({n, 20}), Tensor::from_vector(y, {n}));
  trainer.fit(data, {.epochs = 1, .batch_size = 16, .verbose = 0});  // warm-up
  const uint64_t before = cuda::host_sync_count();
  trainer.fit(data, {.epochs = 1, .batch_size = 16, .verbose = 0});
  return cuda::host_sync_count() - before;
}

TEST(HostSync, ATrainerEpochWaitsAsOftenForFourBatchesAsForSixteen) {
  EMBER_SKIP_WITHOUT_GPU();
  EXPECT_EQ(syncs_of_an_epoch(4), syncs_of_an_epoch(16));
}

}  // namespace
}  // namespace ember
