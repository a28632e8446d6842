// Generators: the CPU engine and the per-device Philox offsets.
#include "ember/core/random.h"

#include <sstream>

#include "ember/core/base/error.h"

namespace ember {

namespace {

constexpr uint64_t kDefaultSeed = 67280421310721ULL;  // PyTorch's default seed

struct Generators {
  std::mutex mu;
  uint64_t seed = kDefaultSeed;
  std::mt19937_64 cpu{kDefaultSeed};
  uint64_t philox_cpu = 0;
  std::vector<uint64_t> philox_cuda = std::vector<uint64_t>(16, 0);
};

Generators& gens() {
  static Generators g;
  return g;
}

}  // namespace

void manual_seed(uint64_t seed) {
  auto& g = gens();
  std::lock_guard<std::mutex> lock(g.mu);
  g.seed = seed;
  g.cpu.seed(seed);
  g.philox_cpu = 0;
  std::fill(g.philox_cuda.begin(), g.philox_cuda.end(), 0);
}

uint64_t initial_seed() { return gens().seed; }

std::mt19937_64& cpu_generator() { return gens().cpu; }
std::mutex& cpu_generator_mutex() { return gens().mu; }

PhiloxState philox_reserve(Device device, uint64_t n) {
  auto& g = gens();
  std::lock_guard<std::mutex> lock(g.mu);
  uint64_t* counter = &g.philox_cpu;
  if (device.is_cuda()) {
    EMBER_CHECK(device.index() < static_cast<int>(g.philox_cuda.size()),
                "philox_reserve: device index ", device.index(), " out of range");
    counter = &g.philox_cuda[device.index()];
  }
  PhiloxState s{g.seed, *counter};
  // Each Philox call yields 4 values; round up so calls never overlap.
  *counter += (n + 3) / 4 * 4;
  return s;
}

RngState get_rng_state() {
  auto& g = gens();
  std::lock_guard<std::mutex> lock(g.mu);
  RngState s;
  s.seed = g.seed;
  std::ostringstream os;
  os << g.cpu;
  s.cpu_engine = os.str();
  s.philox_offset_cpu = g.philox_cpu;
  s.philox_offset_cuda = g.philox_cuda;
  return s;
}

void set_rng_state(const RngState& s) {
  auto& g = gens();
  std::lock_guard<std::mutex> lock(g.mu);
  std::istringstream is(s.cpu_engine);
  std::mt19937_64 engine;
  is >> engine;
  EMBER_CHECK(!is.fail(), "set_rng_state: the CPU generator state is not valid");
  g.seed = s.seed;
  g.cpu = engine;
  g.philox_cpu = s.philox_offset_cpu;
  g.philox_cuda = s.philox_offset_cuda;
  if (g.philox_cuda.size() < 16) g.philox_cuda.resize(16, 0);
}

}  // namespace ember
