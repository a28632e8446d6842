// The CPU memory pool (Note [Host memory]): alignment, reuse without new segments in a
// steady loop, empty_cache, the split between pooled and system buffers, and the CPU
// out-of-memory message.
#include "ember/core/memory/host_memory.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "support/check.h"

namespace {

using namespace ember;
constexpr size_t kMiB = size_t{1} << 20;

bool aligned64(const void* p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; }

TEST(HostMemory, BackendIsThePoolByDefault) {
  if (std::getenv("EMBER_CPU_ALLOC") != nullptr) GTEST_SKIP() << "EMBER_CPU_ALLOC is set";
  EXPECT_EQ(cpu::allocator_backend(), "pool");
}

TEST(HostMemory, BuffersAreAlignedAndWritable) {
  for (const size_t bytes : {size_t{1}, size_t{100}, kMiB, kMiB + 1, 3 * kMiB + 7, 40 * kMiB}) {
    void* p = cpu::raw_alloc(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_TRUE(aligned64(p)) << bytes;
    std::memset(p, 0xab, bytes);
    EXPECT_EQ(static_cast<unsigned char*>(p)[bytes - 1], 0xab);
    cpu::raw_free(p, bytes);
  }
  EXPECT_EQ(cpu::raw_alloc(0), nullptr);
  cpu::raw_free(nullptr, 0);  // a no-op
}

TEST(HostMemory, LargeBuffersAreReusedWithoutNewSegments) {
  if (cpu::allocator_backend() != "pool") GTEST_SKIP() << "EMBER_CPU_ALLOC=system";
  // Like a training step: the same large activations allocated and freed again and again.
  const Shape big{8, 32, 148, 148};  // 22.4 MB as float32, above glibc's mmap threshold
  {  // the first step takes the segments
    Tensor a = Tensor::empty(big);
    Tensor b = Tensor::empty(big);
  }
  const memory::AllocatorStats before = cpu::memory_stats();
  for (int step = 0; step < 5; ++step) {
    Tensor a = Tensor::empty(big);
    Tensor b = relu(a.fill_(1.0f));
    EXPECT_TRUE(aligned64(a.data<float>()));
    EXPECT_EQ(b.data<float>()[b.numel() - 1], 1.0f);
  }
  const memory::AllocatorStats after = cpu::memory_stats();
  EXPECT_EQ(after.device_allocs, before.device_allocs);
  EXPECT_GE(after.cache_hits - before.cache_hits, 10);
  EXPECT_GE(after.peak_allocated_bytes, 2 * 8 * 32 * 148 * 148 * sizeof(float));
}

TEST(HostMemory, SmallBuffersBypassThePool) {
  if (cpu::allocator_backend() != "pool") GTEST_SKIP() << "EMBER_CPU_ALLOC=system";
  const memory::AllocatorStats before = cpu::memory_stats();
  {
    Tensor t = Tensor::empty({1000});
    Tensor u = Tensor::empty({static_cast<int64_t>(kMiB / 4)});  // exactly 1 MiB: not pooled
  }
  EXPECT_EQ(cpu::memory_stats().num_allocs, before.num_allocs);
}

TEST(HostMemory, EmptyCacheGivesFreeSegmentsBack) {
  if (cpu::allocator_backend() != "pool") GTEST_SKIP() << "EMBER_CPU_ALLOC=system";
  void* p = cpu::raw_alloc(64 * kMiB);
  const memory::AllocatorStats held = cpu::memory_stats();
  EXPECT_GE(held.reserved_bytes, 64 * kMiB);
  cpu::raw_free(p, 64 * kMiB);
  EXPECT_EQ(cpu::memory_stats().reserved_bytes, held.reserved_bytes);  // cached, not given back
  cpu::empty_cache();
  const memory::AllocatorStats emptied = cpu::memory_stats();
  EXPECT_LE(emptied.reserved_bytes + 64 * kMiB, held.reserved_bytes);
  EXPECT_GT(emptied.device_frees, held.device_frees);
}

TEST(HostMemory, ResetPeakStats) {
  if (cpu::allocator_backend() != "pool") GTEST_SKIP() << "EMBER_CPU_ALLOC=system";
  { Tensor t = Tensor::empty({static_cast<int64_t>(16 * kMiB)}); }
  EXPECT_GE(cpu::memory_stats().peak_allocated_bytes, 64 * kMiB);
  cpu::reset_peak_memory_stats();
  EXPECT_EQ(cpu::memory_stats().peak_allocated_bytes, cpu::memory_stats().allocated_bytes);
}

TEST(HostMemory, ImpossibleAllocationThrowsCpuOutOfMemory) {
  // 2^60 bytes: more than any machine has, refused by aligned_alloc even with overcommit.
  const std::string msg = ember::testing::error_of<OutOfMemoryError>(
      [] { Tensor t = Tensor::empty({int64_t{1} << 58}); });
  EXPECT_EQ(msg.rfind("CPU out of memory. Tried to allocate 1073741824.00 GiB", 0), 0u) << msg;
  EXPECT_NE(msg.find("ember::cpu::empty_cache()"), std::string::npos) << msg;
  // The pool still works afterwards.
  Tensor t = Tensor::empty({static_cast<int64_t>(4 * kMiB)});
  EXPECT_EQ(t.numel(), static_cast<int64_t>(4 * kMiB));
}

TEST(HostMemory, CpuOutOfMemoryMessage) {
  const std::string msg = memory::out_of_memory_message(30 * kMiB, memory::kCpuDevice, true,
                                                        12 * kMiB, 24 * 1024 * kMiB,
                                                        512 * kMiB, 600 * kMiB);
  EXPECT_NE(msg.find("CPU out of memory. Tried to allocate 30.00 MiB. The machine has a total "
                     "capacity of 24.00 GiB of which 12.00 MiB is available. Of the allocated "
                     "memory 512.00 MiB is allocated by ember, and 88.00 MiB is reserved by "
                     "ember but unallocated."),
            std::string::npos)
      << msg;
  const std::string no_info = memory::out_of_memory_message(30 * kMiB, memory::kCpuDevice, false,
                                                            0, 0, 0, 0);
  EXPECT_NE(no_info.find("CPU out of memory. Tried to allocate 30.00 MiB on the CPU."),
            std::string::npos)
      << no_info;
}

}  // namespace
