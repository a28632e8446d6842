// The NCCL backend with one rank on GPU 0: the collectives on CUDA tensors (values, dtypes,
// ordering with the compute stream) and DistributedDataParallel leaving one rank's
// gradients as they are. Skipped without a GPU or without NCCL in the build.
#include <gtest/gtest.h>

#include <vector>

#include "ember/ember.h"

#include "support/allclose.h"
#include "support/device.h"
#include "support/free_port.h"

namespace {

using namespace ember;
using ember::testing::values;

class NcclOneRank : public ::testing::Test {
 protected:
  void SetUp() override {
    EMBER_SKIP_WITHOUT_GPU();
    if (!dist::is_nccl_available()) GTEST_SKIP() << "built without NCCL";
    dist::init_process_group({.backend = "nccl", .rank = 0, .world_size = 1,
                              .master_addr = "127.0.0.1",
                              .master_port = ember::testing::free_port()});
  }
  void TearDown() override { dist::destroy_process_group(); }
};

TEST_F(NcclOneRank, CollectivesOnCudaTensors) {
  EXPECT_EQ(dist::get_backend(), "nccl");
  const Device gpu = Device::cuda(0);
  for (DType dt : {kFloat32, kFloat16, kBFloat16}) {
    // Written by a kernel on the compute stream just before: the collective must wait for it.
    Tensor t = (arange(0, 1031).to(kFloat32) * 0.5).to(dt).to(gpu);
    const std::vector<double> before = values(t);
    for (dist::ReduceOp op : {dist::ReduceOp::Sum, dist::ReduceOp::Avg, dist::ReduceOp::Max,
                              dist::ReduceOp::Min}) {
      dist::all_reduce(t, op).wait();
      EXPECT_EQ(values(t), before) << dist::reduce_op_name(op) << " " << dt;
    }
    dist::broadcast(t, 0).wait();
    EXPECT_EQ(values(t), before);
    Tensor gathered = zeros({1031}, {.dtype = dt, .device = gpu});
    dist::all_gather_into_tensor(gathered, t).wait();
    EXPECT_EQ(values(gathered), before);
  }
  Tensor ints = Tensor::from_vector<int64_t>({3, -4, 5}, {3}).to(gpu);
  dist::all_reduce(ints, dist::ReduceOp::Sum).wait();
  EXPECT_EQ(ints.cpu().to_vector<int64_t>(), (std::vector<int64_t>{3, -4, 5}));
  dist::barrier().wait();
}

TEST_F(NcclOneRank, DdpOfOneRankKeepsTheGradients) {
  const Device gpu = Device::cuda(0);
  manual_seed(3);
  auto make = [] {
    manual_seed(4);
    return std::make_shared<nn::Sequential>(
        nn::Sequential{nn::Linear(8, 16), nn::ReLU(), nn::Linear(16, 3)});
  };
  auto plain = make(), wrapped = make();
  plain->to(gpu);
  wrapped->to(gpu);
  dist::DistributedDataParallel ddp{nn::AnyModule(wrapped)};
  const Tensor x = rand({5, 8}).to(gpu);
  (*plain)(x).sum().backward();
  ddp(x).sum().backward();
  const auto a = plain->parameters(), b = wrapped->parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(ember::testing::allclose(b[i].grad(), a[i].grad())) << "parameter " << i;
  }
}

}  // namespace
