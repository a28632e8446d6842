// The CPU memory pool (Note [Host memory]): alignment, reuse without new segments in a
// steady loop, empty_cache, the split between pooled and system buffers, and the CPU
// out-of-memory message.
#include "ember/core/memory/host_memory.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
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

// --- the CPU memory limit (Note [CPU memory limit]) ---------------------------------------

// Removes the limit when a test ends, passed or not.
struct LimitGuard {
  ~LimitGuard() { cpu::set_memory_limit(0); }
};

// Bytes ember holds on the CPU now: what the limit bounds.
size_t held_bytes() {
  const memory::AllocatorStats s = cpu::memory_stats();
  return s.reserved_bytes + s.unpooled_bytes;
}

TEST(HostMemoryLimit, OverTheLimitThrowsWithTheFiguresAndTheNextFitSucceeds) {
  if (cpu::allocator_backend() != "pool") GTEST_SKIP() << "EMBER_CPU_ALLOC=system";
  LimitGuard guard;
  cpu::empty_cache();
  const size_t limit = held_bytes() + 64 * kMiB;
  cpu::set_memory_limit(limit);
  EXPECT_EQ(cpu::memory_limit(), limit);
  const int64_t ooms_before = cpu::memory_stats().ooms;

  void* first = cpu::raw_alloc(40 * kMiB);
  std::string msg;
  try {
    cpu::raw_alloc(40 * kMiB);
    FAIL() << "expected OutOfMemoryError";
  } catch (const OutOfMemoryError& e) {
    msg = e.what();
  }
  const memory::AllocatorStats s = cpu::memory_stats();
  EXPECT_EQ(s.ooms, ooms_before + 1);
  EXPECT_EQ(msg.rfind("CPU out of memory. Tried to allocate 40.00 MiB on the CPU, over the "
                      "memory limit of " + memory::format_size(limit),
                      0),
            0u)
      << msg;
  const std::string figures =
      "In use: " + memory::format_size(s.allocated_bytes + s.unpooled_bytes) +
      "; cached (reserved by ember but unallocated): " +
      memory::format_size(s.reserved_bytes - s.allocated_bytes) +
      "; limit: " + memory::format_size(limit) + ".";
  EXPECT_NE(msg.find(figures), std::string::npos) << msg << "\nexpected: " << figures;
  EXPECT_NE(msg.find("EMBER_CPU_MEMORY_LIMIT"), std::string::npos) << msg;
  EXPECT_LE(held_bytes(), limit);

  // The failure held nothing back: what fits still fits, tensors included.
  void* second = cpu::raw_alloc(16 * kMiB);
  EXPECT_NE(second, nullptr);
  cpu::raw_free(second, 16 * kMiB);
  cpu::raw_free(first, 40 * kMiB);
  EXPECT_THROW(Tensor::empty({static_cast<int64_t>(20 * kMiB)}), OutOfMemoryError);  // 80 MiB
  Tensor t = Tensor::empty({static_cast<int64_t>(10 * kMiB)});                     // 40 MiB
  EXPECT_EQ(t.numel(), static_cast<int64_t>(10 * kMiB));
}

TEST(HostMemoryLimit, SmallBuffersCountAgainstTheLimit) {
  LimitGuard guard;
  cpu::empty_cache();
  const size_t limit = held_bytes() + 768 * 1024;
  cpu::set_memory_limit(limit);
  void* a = cpu::raw_alloc(512 * 1024);
  EXPECT_EQ(cpu::memory_stats().unpooled_bytes >= 512 * 1024, true);
  const std::string msg =
      ember::testing::error_of<OutOfMemoryError>([] { cpu::raw_alloc(512 * 1024); });
  EXPECT_EQ(msg.rfind("CPU out of memory. Tried to allocate 512.00 KiB on the CPU, over the "
                      "memory limit of " + memory::format_size(limit),
                      0),
            0u)
      << msg;
  cpu::raw_free(a, 512 * 1024);
  void* b = cpu::raw_alloc(512 * 1024);  // fits again once `a` is back
  EXPECT_NE(b, nullptr);
  cpu::raw_free(b, 512 * 1024);
}

TEST(HostMemoryLimit, ZeroRemovesTheLimit) {
  LimitGuard guard;
  cpu::set_memory_limit(held_bytes() + kMiB);
  EXPECT_THROW(cpu::raw_alloc(8 * kMiB), OutOfMemoryError);
  cpu::set_memory_limit(0);
  EXPECT_EQ(cpu::memory_limit(), 0u);
  void* p = cpu::raw_alloc(8 * kMiB);
  EXPECT_NE(p, nullptr);
  cpu::raw_free(p, 8 * kMiB);
}

// The environment is read once per process, so these run this test binary again with
// the variable set, and the child test below reports what it saw.
TEST(HostMemoryLimitEnvChild, Report) {
  if (std::getenv("EMBER_TEST_LIMIT_CHILD") == nullptr) GTEST_SKIP() << "run by the tests below";
  for (int i = 0; i < 2; ++i) {  // a bad value fails every use, not only the first
    try {
      std::printf("limit=%zu\n", cpu::memory_limit());
    } catch (const Error& e) {
      std::printf("error=%s\n", e.what());
    }
  }
  try {
    void* p = cpu::raw_alloc(4 * kMiB);
    cpu::raw_free(p, 4 * kMiB);
    std::printf("alloc=ok\n");
  } catch (const OutOfMemoryError& e) {
    std::printf("oom=%s\n", e.what());
  } catch (const Error& e) {
    std::printf("alloc_error=%s\n", e.what());
  }
}

std::string run_child(const std::string& value) {
  char self[4096] = {};
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "";
  const std::string cmd = "EMBER_TEST_LIMIT_CHILD=1 EMBER_CPU_MEMORY_LIMIT='" + value + "' '" +
                          std::string(self, static_cast<size_t>(n)) +
                          "' --gtest_filter=HostMemoryLimitEnvChild.Report 2>&1";
  std::FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buf[4096];
  size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, got);
  pclose(pipe);
  return out;
}

TEST(HostMemoryLimitEnv, SizesWithUnitsSetTheLimit) {
  EXPECT_NE(run_child("8GiB").find("limit=8589934592\nlimit=8589934592\nalloc=ok"),
            std::string::npos);
  EXPECT_NE(run_child("512M").find("limit=536870912\n"), std::string::npos);
  EXPECT_NE(run_child("1073741824").find("limit=1073741824\n"), std::string::npos);
}

TEST(HostMemoryLimitEnv, TheLimitIsEnforced) {
  const std::string out = run_child("3MiB");
  EXPECT_NE(out.find("limit=3145728\n"), std::string::npos) << out;
  EXPECT_NE(out.find("oom=CPU out of memory. Tried to allocate 4.00 MiB on the CPU, over the "
                     "memory limit of 3.00 MiB"),
            std::string::npos)
      << out;
}

TEST(HostMemoryLimitEnv, BadValuesAreAnErrorNamingTheVariableAtEveryUse) {
  const std::string out = run_child("lots");
  const std::string error = "error=EMBER_CPU_MEMORY_LIMIT=\"lots\" is not a memory size";
  const size_t first = out.find(error);
  ASSERT_NE(first, std::string::npos) << out;
  EXPECT_NE(out.find(error, first + 1), std::string::npos) << out;
  EXPECT_NE(out.find("alloc_error=EMBER_CPU_MEMORY_LIMIT"), std::string::npos) << out;
  EXPECT_NE(run_child("0").find("is zero bytes"), std::string::npos);
  EXPECT_NE(run_child("-2G").find("error=EMBER_CPU_MEMORY_LIMIT=\"-2G\""), std::string::npos);
}

}  // namespace
