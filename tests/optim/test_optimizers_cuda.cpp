// The multi-tensor CUDA optimizer updates (kernels/cuda/optim.cu): the launch tables'
// packing and chunk indexing (checked on the CPU, everywhere), then CPU <-> CUDA parity of
// every optimizer over several steps on many tensors of odd sizes (0 and 1 included,
// misaligned ones, more tensors than one table holds), state following a module between
// devices, and clip_grad_norm. The GPU tests are skipped, with the reason, without a GPU.
// (Each optimizer's update rule against the double reference runs on every device, CUDA
// included, in test_optimizers.cpp.)
//
// That one step is ONE launch per device (for up to several hundred tensors) follows from
// the code (see Note [Multi-tensor apply]); launches are not counted here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <ember/ember.h>
#include "ember/kernels/cuda/optim.cuh"
#include "ember/optim/optim.h"
#include "support/allclose.h"
#include "support/device.h"

using namespace ember;
namespace kc = ember::kernels::cuda;

namespace {

using ember::testing::allclose;
using ember::testing::Tolerance;

// CUDA against the CPU: nvcc contracts a * b + c into FMAs and the device's sqrt/division
// round differently from the host's in the last bit; the update rules themselves are the
// same code (kernels/optim_math.h), so this is tighter than the float32 default.
constexpr Tolerance kParityTol{1e-5, 1e-5};

using SgdEntry = kernels::SgdEntry<float>;
using AdamEntry = kernels::AdamEntry<float>;

// --- launch tables ----------------------------------------------------------------------

// Packs `numels` into tables of `Table`'s capacity and checks that walking every chunk of
// every table through multi_tensor_chunk_owner touches each element of each non-empty
// tensor exactly once; returns the number of tables (= launches).
template <typename Table>
int64_t check_tables_cover(const std::vector<int64_t>& numels) {
  std::vector<SgdEntry> entries(numels.size());
  for (size_t i = 0; i < numels.size(); ++i) {
    entries[i].numel = numels[i];
    entries[i].param = reinterpret_cast<float*>(static_cast<uintptr_t>(16 * (i + 1)));
  }
  std::vector<std::vector<int>> hits(numels.size());
  for (size_t i = 0; i < numels.size(); ++i) hits[i].assign(numels[i], 0);

  auto table = std::make_unique<Table>();
  int64_t next = 0, launches = 0;
  const int64_t count = static_cast<int64_t>(entries.size());
  while (next < count) {
    const int64_t before = next;
    next = kc::pack_multi_tensor_table(table.get(), entries.data(), count, next);
    EXPECT_GT(next, before);  // always progresses
    EXPECT_LE(table->count, Table::kCapacity);
    if (table->chunk_begin[table->count] == 0) continue;
    ++launches;
    for (int64_t c = 0; c < table->chunk_begin[table->count]; ++c) {
      const int32_t t = kc::multi_tensor_chunk_owner(table->chunk_begin, table->count, c);
      const auto& e = table->entries[t];
      const size_t which = static_cast<size_t>(
          reinterpret_cast<uintptr_t>(e.param) / 16 - 1);
      const int64_t begin = (c - table->chunk_begin[t]) * kc::kMultiTensorChunk;
      const int64_t n = std::min(kc::kMultiTensorChunk, e.numel - begin);
      EXPECT_GT(n, 0);
      for (int64_t k = begin; k < begin + n; ++k) ++hits[which][k];
    }
  }
  for (size_t i = 0; i < numels.size(); ++i) {
    for (int64_t k = 0; k < numels[i]; ++k) {
      if (hits[i][k] != 1) {
        ADD_FAILURE() << "tensor " << i << " (numel " << numels[i] << ") element " << k
                      << " updated " << hits[i][k] << " times";
        return launches;
      }
    }
  }
  return launches;
}

using SmallSgdTable =
    kc::MultiTensorTable<SgdEntry, kc::multi_tensor_capacity<SgdEntry>(kc::kSmallTableBytes)>;
using LargeSgdTable =
    kc::MultiTensorTable<SgdEntry, kc::multi_tensor_capacity<SgdEntry>(kc::kLargeTableBytes)>;
using LargeAdamTable =
    kc::MultiTensorTable<AdamEntry, kc::multi_tensor_capacity<AdamEntry>(kc::kLargeTableBytes)>;

}  // namespace

TEST(MultiTensorTable, FitsTheKernelArgumentLimits) {
  EXPECT_LE(sizeof(SmallSgdTable), kc::kSmallTableBytes);
  EXPECT_LE(sizeof(LargeSgdTable), kc::kLargeTableBytes);
  EXPECT_LE(sizeof(LargeAdamTable), kc::kLargeTableBytes);
  EXPECT_LT(kc::kLargeTableBytes, 32764u);  // CUDA's limit for kernel arguments
  // Models of a few hundred parameter tensors update in one launch.
  EXPECT_GE(LargeAdamTable::kCapacity, 300);
  EXPECT_EQ(kc::kMultiTensorChunk % 4, 0);
}

TEST(MultiTensorTable, ChunksCoverEveryElementOnce) {
  const int64_t C = kc::kMultiTensorChunk;
  EXPECT_EQ(check_tables_cover<SmallSgdTable>({0, 1, 3, C - 1, C, C + 1, 0, 2 * C + 5, 1, 0}), 1);
  EXPECT_EQ(check_tables_cover<SmallSgdTable>({0, 0, 0}), 0);
  EXPECT_EQ(check_tables_cover<SmallSgdTable>({}), 0);
}

TEST(MultiTensorTable, LongListsSplitOverSeveralLaunches) {
  std::mt19937 rng(7);
  std::vector<int64_t> numels;
  for (int i = 0; i < 3 * SmallSgdTable::kCapacity + 5; ++i) {
    numels.push_back(i % 7 == 0 ? 0 : static_cast<int64_t>(rng() % 3000));
  }
  const int64_t nonempty =
      std::count_if(numels.begin(), numels.end(), [](int64_t n) { return n > 0; });
  const int64_t launches = check_tables_cover<SmallSgdTable>(numels);
  EXPECT_EQ(launches, (nonempty + SmallSgdTable::kCapacity - 1) / SmallSgdTable::kCapacity);
  EXPECT_EQ(check_tables_cover<LargeSgdTable>(numels), 1);
}

// --- CPU <-> CUDA parity ------------------------------------------------------------------

namespace {

// Sizes around the float4 width and the chunk size, plus empty and single elements.
const std::vector<int64_t> kSizes = {0, 1, 2, 3, 4, 5, 7, 31, 1000, 4097,
                                     kc::kMultiTensorChunk - 1, kc::kMultiTensorChunk + 3,
                                     3 * kc::kMultiTensorChunk + 1, 1};

std::vector<float> random_values(int64_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// A float32 leaf parameter of `n` elements on `device`. `misaligned` makes it a view that
// starts one float into its storage, so the kernel takes its scalar path.
Tensor make_param(const std::vector<float>& v, Device device, bool misaligned) {
  const int64_t n = static_cast<int64_t>(v.size());
  Tensor t;
  if (misaligned) {
    std::vector<float> padded(v.size() + 1, 0.f);
    std::copy(v.begin(), v.end(), padded.begin() + 1);
    t = Tensor::from_vector(padded, {n + 1}, device).narrow(0, 1, n).detach();
  } else {
    t = Tensor::from_vector(v, {n}, device);
  }
  t.requires_grad_();
  return t;
}

Tensor make_grad(const std::vector<float>& v, Device device, bool misaligned) {
  Tensor t = make_param(v, device, misaligned).detach();
  t.requires_grad_(false);
  return t;
}

using MakeOptimizer =
    std::function<std::unique_ptr<optim::Optimizer>(const std::vector<Tensor>& first,
                                                    const std::vector<Tensor>& second)>;

// Builds `count` parameters (sizes cycling through kSizes, every fifth misaligned) on the
// CPU and copies on the GPU, in two groups, and runs `steps` steps of the same random
// gradients through both optimizers (some parameters skip some steps); then compares the
// parameters and every state tensor.
void check_parity(const MakeOptimizer& make, int count, int steps, const std::string& what) {
  std::mt19937 rng(1234);
  const Device gpu = Device::cuda(0);
  std::vector<Tensor> cpu_params, gpu_params;
  std::vector<bool> misaligned;
  for (int i = 0; i < count; ++i) {
    const int64_t n = kSizes[static_cast<size_t>(i) % kSizes.size()];
    const std::vector<float> v = random_values(n, rng, 1.f);
    misaligned.push_back(i % 5 == 3);
    cpu_params.push_back(make_param(v, Device::cpu(), false));
    gpu_params.push_back(make_param(v, gpu, misaligned.back()));
  }
  const size_t half = cpu_params.size() / 2;
  auto split = [&](const std::vector<Tensor>& all, bool first) {
    return first ? std::vector<Tensor>(all.begin(), all.begin() + half)
                 : std::vector<Tensor>(all.begin() + half, all.end());
  };
  auto cpu_opt = make(split(cpu_params, true), split(cpu_params, false));
  auto gpu_opt = make(split(gpu_params, true), split(gpu_params, false));

  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < cpu_params.size(); ++i) {
      if ((i + s) % 7 == 0) {  // no gradient this step: skipped
        cpu_params[i].set_grad(Tensor());
        gpu_params[i].set_grad(Tensor());
        continue;
      }
      const std::vector<float> g = random_values(cpu_params[i].numel(), rng, 0.5f);
      cpu_params[i].set_grad(make_grad(g, Device::cpu(), false));
      gpu_params[i].set_grad(make_grad(g, gpu, misaligned[i] != (s % 2 == 1)));
    }
    cpu_opt->step();
    gpu_opt->step();
  }
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    EXPECT_TRUE(allclose(gpu_params[i], cpu_params[i], kParityTol))
        << what << " parameter " << i << " (numel " << cpu_params[i].numel() << ")";
  }
  const nn::StateDict cpu_sd = cpu_opt->state_dict(), gpu_sd = gpu_opt->state_dict();
  ASSERT_EQ(cpu_sd.keys(), gpu_sd.keys()) << what;
  for (const auto& [name, t] : cpu_sd) {
    if (t.dtype() == kFloat32) {
      EXPECT_TRUE(allclose(gpu_sd.at(name), t, kParityTol)) << what << " " << name;
    } else {
      EXPECT_EQ(gpu_sd.at(name).to(kFloat64).to_vector<double>(),
                t.to(kFloat64).to_vector<double>())
          << what << " " << name;
    }
  }
}

template <typename Opt, typename Options>
MakeOptimizer maker(Options first, Options second) {
  return [first, second](const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
    return std::make_unique<Opt>(
        std::vector<optim::ParamGroup<Options>>{{a, first}, {b, second}});
  };
}

}  // namespace

TEST(OptimizerCuda, SgdMatchesCpu) {
  EMBER_SKIP_WITHOUT_GPU();
  check_parity(maker<optim::SGD>(optim::SGDOptions{.lr = 0.1},
                                 optim::SGDOptions{.lr = 0.05, .weight_decay = 0.01}),
               30, 3, "SGD plain");
  check_parity(maker<optim::SGD>(
                   optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.2},
                   optim::SGDOptions{
                       .lr = 0.05, .momentum = 0.8, .weight_decay = 0.01, .nesterov = true}),
               30, 4, "SGD momentum/nesterov");
}

TEST(OptimizerCuda, AdamMatchesCpu) {
  EMBER_SKIP_WITHOUT_GPU();
  check_parity(maker<optim::Adam>(optim::AdamOptions{.lr = 0.01},
                                  optim::AdamOptions{.lr = 0.003, .betas = {0.8, 0.9},
                                                     .weight_decay = 0.01, .amsgrad = true}),
               30, 4, "Adam");
}

TEST(OptimizerCuda, AdamWMatchesCpu) {
  EMBER_SKIP_WITHOUT_GPU();
  check_parity(maker<optim::AdamW>(optim::AdamWOptions{.lr = 0.01},
                                   optim::AdamWOptions{.lr = 0.002, .weight_decay = 0.1,
                                                       .amsgrad = true}),
               30, 4, "AdamW");
}

TEST(OptimizerCuda, RmspropMatchesCpu) {
  EMBER_SKIP_WITHOUT_GPU();
  check_parity(maker<optim::RMSprop>(
                   optim::RMSpropOptions{.lr = 0.01},
                   optim::RMSpropOptions{.lr = 0.005, .alpha = 0.9, .weight_decay = 0.01,
                                         .momentum = 0.5, .centered = true}),
               30, 4, "RMSprop");
}

TEST(OptimizerCuda, ManyTensorsUseTheLargeTableAndSplitBeyondIt) {
  EMBER_SKIP_WITHOUT_GPU();
  // Past the small table (45 Adam tensors) and past the large one (363): 400 tensors.
  check_parity(maker<optim::Adam>(optim::AdamOptions{.lr = 0.01},
                                  optim::AdamOptions{.lr = 0.02, .amsgrad = true}),
               80, 2, "Adam, 80 tensors");
  check_parity(maker<optim::Adam>(optim::AdamOptions{.lr = 0.01},
                                  optim::AdamOptions{.lr = 0.02}),
               400, 2, "Adam, 400 tensors");
}

TEST(OptimizerCuda, StateFollowsAModuleMovedBetweenDevices) {
  EMBER_SKIP_WITHOUT_GPU();
  manual_seed(3);
  nn::Linear a(5, 3), b(5, 3);
  b.load_state_dict(a.state_dict());
  optim::Adam opt_a(a.parameters(), {.lr = 0.01});
  optim::Adam opt_b(b.parameters(), {.lr = 0.01});
  const Tensor x = randn({4, 5});
  auto train_step = [&](nn::Linear& m, optim::Adam& opt, Device d) {
    opt.zero_grad();
    sum(pow(m(x.to(d)), 2.0)).backward();
    opt.step();
  };
  train_step(a, opt_a, Device::cpu());
  train_step(b, opt_b, Device::cpu());
  b.to(Device::cuda(0));  // the optimizer's state moves with the parameters at the next step
  for (int i = 0; i < 3; ++i) {
    train_step(a, opt_a, Device::cpu());
    train_step(b, opt_b, Device::cuda(0));
  }
  EXPECT_TRUE(b.weight().is_cuda());
  EXPECT_TRUE(allclose(b.weight(), a.weight(), kParityTol)) << "weight";
  EXPECT_TRUE(allclose(b.bias(), a.bias(), kParityTol)) << "bias";
}

TEST(OptimizerCuda, StateDictLoadsAcrossDevices) {
  EMBER_SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  const std::vector<float> v = random_values(37, rng, 1.f);
  Tensor gpu_p = make_param(v, Device::cuda(0), false);
  optim::RMSprop gpu_opt({gpu_p}, {.lr = 0.01, .momentum = 0.9, .centered = true});
  const std::vector<float> g = random_values(37, rng, 1.f);
  gpu_p.set_grad(make_grad(g, Device::cuda(0), false));
  gpu_opt.step();
  const nn::StateDict sd = gpu_opt.state_dict();
  for (const auto& [name, t] : sd) EXPECT_FALSE(t.is_cuda()) << name;

  Tensor cpu_p = make_param(gpu_p.detach().cpu().to_vector<float>(), Device::cpu(), false);
  optim::RMSprop cpu_opt({cpu_p});
  cpu_opt.load_state_dict(sd);
  gpu_p.set_grad(make_grad(g, Device::cuda(0), false));
  cpu_p.set_grad(make_grad(g, Device::cpu(), false));
  gpu_opt.step();
  cpu_opt.step();
  EXPECT_TRUE(allclose(gpu_p, cpu_p, kParityTol)) << "after a step from the loaded state";
}

TEST(OptimizerCuda, ClipGradNormMatchesCpu) {
  EMBER_SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  const double inf = std::numeric_limits<double>::infinity();
  for (double norm_type : {2.0, 1.0, 3.0, inf}) {
    std::vector<Tensor> cpu_ps, gpu_ps;
    for (int64_t n : {0, 1, 7, 1000, 20001}) {
      const std::vector<float> g = random_values(n, rng, 2.f);
      cpu_ps.push_back(make_param(std::vector<float>(n, 0.f), Device::cpu(), false));
      gpu_ps.push_back(make_param(std::vector<float>(n, 0.f), Device::cuda(0), false));
      cpu_ps.back().set_grad(make_grad(g, Device::cpu(), false));
      gpu_ps.back().set_grad(make_grad(g, Device::cuda(0), false));
    }
    const Tensor cpu_total = optim::clip_grad_norm(cpu_ps, 1.0, norm_type);
    const Tensor gpu_total = optim::clip_grad_norm(gpu_ps, 1.0, norm_type);
    EXPECT_TRUE(gpu_total.is_cuda());
    const std::string what = "norm_type " + std::to_string(norm_type);
    EXPECT_TRUE(allclose(gpu_total, cpu_total, kParityTol)) << what << " total";
    for (size_t i = 0; i < cpu_ps.size(); ++i) {
      EXPECT_TRUE(allclose(gpu_ps[i].grad(), cpu_ps[i].grad(), kParityTol))
          << what << " grad " << i;
    }
  }
}
