// One rank of the distributed tests (tests/dist/test_dist.cpp starts N of these, or
// `ember launch` does): `ember_dist_worker <scenario> [args]`, rank and world from
// torchrun's environment. Exits 0 when the scenario's checks pass; prints what failed.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "ember/ember.h"

using namespace ember;
namespace d = ember::dist;

namespace {

int g_failures = 0;

#define EXPECT_W(cond, ...)                                                      \
  do {                                                                           \
    if (!(cond)) {                                                               \
      ++g_failures;                                                              \
      std::cerr << "check failed: " #cond " " << ember::detail::str_cat(__VA_ARGS__) \
                << "\n";                                                         \
    }                                                                            \
  } while (0)

std::chrono::milliseconds timeout_from_env() {
  const char* v = std::getenv("EMBER_TEST_DIST_TIMEOUT_MS");
  return std::chrono::milliseconds(v ? std::atoll(v) : 20000);
}

void init(const std::string& backend = "gloo") {
  d::init_process_group({.backend = backend, .timeout = timeout_from_env()});
}

// Rank r's element i: small integers, exact in every dtype (bfloat16 included) after a
// sum over 4 ranks and a division by 2 or 4.
double value(int r, int64_t i) { return (r + 1) * static_cast<double>(i % 13) + r; }

Tensor filled(int r, int64_t n, DType dtype) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = value(r, i);
  return Tensor::from_vector<double>(v, {n}).to(dtype);
}

std::vector<double> as_doubles(const Tensor& t) { return t.to(kFloat64).to_vector<double>(); }

void expect_equal(const Tensor& got, const std::vector<double>& want, const std::string& what) {
  const std::vector<double> g = as_doubles(got);
  EXPECT_W(g.size() == want.size(), what, ": ", g.size(), " elements, want ", want.size());
  for (size_t i = 0; i < g.size() && i < want.size(); ++i) {
    if (g[i] != want[i]) {
      EXPECT_W(false, what, ": element ", i, " is ", g[i], ", want ", want[i]);
      return;
    }
  }
}

int collectives() {
  init();
  const int rank = d::get_rank(), world = d::get_world_size();
  const std::vector<DType> dtypes = {kFloat32, kFloat64, kInt32, kInt64, kFloat16, kBFloat16};
  const std::vector<int64_t> sizes = {0, 1, 7, 1000003};
  for (DType dt : dtypes) {
    for (int64_t n : sizes) {
      if (n > 7 && (dt == kFloat16 || dt == kBFloat16 || dt == kInt32)) continue;
      const std::string tag = detail::str_cat(dtype_name(dt), " [", n, "]");
      for (d::ReduceOp op : {d::ReduceOp::Sum, d::ReduceOp::Avg, d::ReduceOp::Max,
                             d::ReduceOp::Min}) {
        if (op == d::ReduceOp::Avg && !is_floating(dt)) continue;
        Tensor t = filled(rank, n, dt);
        d::all_reduce(t, op).wait();
        std::vector<double> want(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          double acc = value(0, i);
          for (int r = 1; r < world; ++r) {
            const double v = value(r, i);
            acc = op == d::ReduceOp::Max ? std::max(acc, v)
                  : op == d::ReduceOp::Min ? std::min(acc, v) : acc + v;
          }
          want[static_cast<size_t>(i)] = op == d::ReduceOp::Avg ? acc / world : acc;
        }
        expect_equal(t, want, "all_reduce " + std::string(d::reduce_op_name(op)) + " " + tag);
      }
      // broadcast from the last rank
      Tensor b = filled(rank, n, dt);
      d::broadcast(b, world - 1).wait();
      expect_equal(b, as_doubles(filled(world - 1, n, dt)), "broadcast " + tag);
      // all_gather, flat and per rank
      Tensor in = filled(rank, n, dt);
      Tensor out = full({world * n}, -1.0, {.dtype = dt});
      d::all_gather_into_tensor(out, in).wait();
      std::vector<double> gathered;
      for (int r = 0; r < world; ++r) {
        const auto part = as_doubles(filled(r, n, dt));
        gathered.insert(gathered.end(), part.begin(), part.end());
      }
      expect_equal(out, gathered, "all_gather_into_tensor " + tag);
      std::vector<Tensor> outs;
      for (int r = 0; r < world; ++r) outs.push_back(full({n}, -1.0, {.dtype = dt}));
      d::all_gather(outs, in).wait();
      for (int r = 0; r < world; ++r) {
        expect_equal(outs[r], as_doubles(filled(r, n, dt)), "all_gather " + tag);
      }
      // reduce_scatter: every rank's input is world chunks of n; rank r keeps chunk r.
      Tensor rs_in = filled(rank, world * n, dt);
      Tensor rs_out = full({n}, -1.0, {.dtype = dt});
      d::reduce_scatter_tensor(rs_out, rs_in, d::ReduceOp::Sum).wait();
      std::vector<double> want_rs(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        for (int r = 0; r < world; ++r) want_rs[static_cast<size_t>(i)] += value(r, rank * n + i);
      }
      expect_equal(rs_out, want_rs, "reduce_scatter_tensor " + tag);
      std::vector<Tensor> chunks;
      for (int r = 0; r < world; ++r) chunks.push_back(rs_in.narrow(0, r * n, n));
      Tensor rs_out2 = full({n}, -1.0, {.dtype = dt});
      d::reduce_scatter(rs_out2, chunks, d::ReduceOp::Sum).wait();
      expect_equal(rs_out2, want_rs, "reduce_scatter " + tag);
    }
  }
  // Asynchronous: several in flight, then waited for in reverse order.
  std::vector<Tensor> ts;
  std::vector<d::Work> works;
  for (int k = 0; k < 8; ++k) {
    ts.push_back(full({1000}, rank + k, {}));
    works.push_back(d::all_reduce(ts.back()));
  }
  for (int k = 7; k >= 0; --k) works[k].wait();
  for (int k = 0; k < 8; ++k) {
    const double want = world * (world - 1) / 2.0 + world * k;
    EXPECT_W(ts[k].to_vector<float>()[999] == want, "async all_reduce ", k);
  }
  d::barrier().wait();
  // Bad inputs are typed errors, before anything is sent.
  try {
    d::all_reduce(ones({4, 4}).t());
    EXPECT_W(false, "a non-contiguous tensor was accepted");
  } catch (const Error& e) {
    EXPECT_W(std::string(e.what()).find("contiguous") != std::string::npos, e.what());
  }
  try {
    d::all_reduce(ones({2}, {.dtype = kInt64}), d::ReduceOp::Avg);
    EXPECT_W(false, "Avg on int64 was accepted");
  } catch (const DTypeError&) {
  }
  d::destroy_process_group();
  return g_failures == 0 ? 0 : 1;
}

// --- DDP equivalence ------------------------------------------------------------------------

std::shared_ptr<nn::Sequential> make_model(uint64_t seed) {
  manual_seed(seed);
  return std::make_shared<nn::Sequential>(
      nn::Sequential{nn::Linear(8, 16), nn::ReLU(), nn::Linear(16, 16), nn::Tanh(),
                     nn::Linear(16, 4)});
}

// The whole batch of step s: 64 samples, the same on every rank.
std::pair<Tensor, Tensor> batch(int step) {
  manual_seed(1000 + step);
  return {randn({64, 8}), randn({64, 4})};
}

void expect_close(const std::vector<Tensor>& a, const std::vector<Tensor>& b,
                  const std::string& what) {
  EXPECT_W(a.size() == b.size(), what);
  double worst = 0;
  for (size_t k = 0; k < a.size() && k < b.size(); ++k) {
    const auto x = a[k].to_vector<float>(), y = b[k].to_vector<float>();
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(double(x[i]) - y[i]));
  }
  EXPECT_W(worst < 2e-5, what, ": the parameters differ by up to ", worst);
  std::cout << what << ": max difference " << worst << "\n";
}

int ddp() {
  init();
  const int rank = d::get_rank(), world = d::get_world_size();
  EXPECT_W(64 % (world * 2) == 0, "world size ", world);
  const int64_t per_rank = 64 / world;
  // Rank 1 starts from other weights: the wrapper must broadcast rank 0's.
  auto model = make_model(rank == 0 ? 7 : 8);
  auto reference = make_model(7);
  // A small bucket cap: several buckets, some launched during backward.
  d::DistributedDataParallel ddp(model, {.bucket_cap_mb = 0.001});
  EXPECT_W(ddp.bucket_indices().size() > 1, "one bucket only");
  const auto params = [](nn::Module& m) { return m.parameters(); };
  expect_close(params(*model), params(*reference), "after construction");

  for (const char* opt_name : {"SGD", "Adam"}) {
    std::unique_ptr<optim::Optimizer> opt, ref_opt;
    if (std::string(opt_name) == "SGD") {
      const optim::SGDOptions o{.lr = 0.1, .momentum = 0.9};
      opt = std::make_unique<optim::SGD>(ddp.parameters(), o);
      ref_opt = std::make_unique<optim::SGD>(reference->parameters(), o);
    } else {
      const optim::AdamOptions o{.lr = 1e-2};
      opt = std::make_unique<optim::Adam>(ddp.parameters(), o);
      ref_opt = std::make_unique<optim::Adam>(reference->parameters(), o);
    }
    for (int step = 0; step < 4; ++step) {
      auto [x, y] = batch(step);
      opt->zero_grad();
      Tensor mine_x = x.narrow(0, rank * per_rank, per_rank);
      Tensor mine_y = y.narrow(0, rank * per_rank, per_rank);
      mse_loss(ddp(mine_x), mine_y).backward();
      opt->step();
      ref_opt->zero_grad();
      mse_loss((*reference)(x), y).backward();
      ref_opt->step();
    }
    expect_close(params(*model), params(*reference), std::string(opt_name) + " x4 steps");
  }

  // no_sync: two micro-batches per rank, the first without communication. The averaged
  // sum of 2 * world micro-batch means is 2 * the mean over the 64 samples.
  optim::SGD opt(ddp.parameters(), {.lr = 0.05});
  optim::SGD ref_opt(reference->parameters(), {.lr = 0.05});
  const int64_t micro = per_rank / 2;
  for (int step = 0; step < 3; ++step) {
    auto [x, y] = batch(10 + step);
    opt.zero_grad();
    {
      auto guard = ddp.no_sync();
      const int64_t at = rank * per_rank;
      mse_loss(ddp(x.narrow(0, at, micro)), y.narrow(0, at, micro)).backward();
    }
    const int64_t at = rank * per_rank + micro;
    mse_loss(ddp(x.narrow(0, at, micro)), y.narrow(0, at, micro)).backward();
    opt.step();
    ref_opt.zero_grad();
    (mse_loss((*reference)(x), y) * 2.0).backward();
    ref_opt.step();
  }
  expect_close(params(*model), params(*reference), "no_sync x3 steps");
  d::destroy_process_group();
  return g_failures == 0 ? 0 : 1;
}

// --- faults ---------------------------------------------------------------------------------

// The last rank dies in the middle of a large all_reduce; the others must fail within the
// timeout with a message naming it. Prints the error on success.
int peer_dies() {
  init();
  const int rank = d::get_rank(), world = d::get_world_size();
  d::barrier().wait();
  Tensor big = ones({4 << 20});
  if (rank == world - 1) {
    d::all_reduce(big);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ::kill(::getpid(), SIGKILL);
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    for (int k = 0; k < 1000; ++k) d::all_reduce(big).wait();
    std::cerr << "no error although rank " << world - 1 << " died\n";
    return 1;
  } catch (const d::DistributedError& e) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start).count();
    std::cout << "error after " << ms << " ms: " << e.what() << "\n";
    const std::string want = "rank(s) " + std::to_string(world - 1) + " exited";
    EXPECT_W(std::string(e.what()).find(want) != std::string::npos, "message lacks '", want,
             "': ", e.what());
    EXPECT_W(ms <= timeout_from_env().count() + 3000, "took ", ms, " ms");
    // Stay a moment: a survivor that exits at once would be counted dead by the others.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  }
  return g_failures == 0 ? 0 : 1;
}

// The last rank stays alive but never joins the all_reduce: the others must fail at the
// timeout, saying that nobody exited.
int peer_hangs() {
  init();
  const int rank = d::get_rank(), world = d::get_world_size();
  d::barrier().wait();
  if (rank == world - 1) {
    std::this_thread::sleep_for(timeout_from_env() + std::chrono::milliseconds(2500));
    return 0;
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    d::all_reduce(ones({100})).wait();
    std::cerr << "no error although rank " << world - 1 << " never joined\n";
    return 1;
  } catch (const d::DistributedError& e) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start).count();
    std::cout << "error after " << ms << " ms: " << e.what() << "\n";
    EXPECT_W(std::string(e.what()).find("no rank has exited") != std::string::npos, e.what());
    EXPECT_W(ms >= timeout_from_env().count() - 100 && ms <= timeout_from_env().count() + 2000,
             "took ", ms, " ms");
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  }
  return g_failures == 0 ? 0 : 1;
}

// Joins (or fails to) and prints the error; exit 0 on success, 3 on DistributedError.
int just_init() {
  try {
    init();
    d::barrier().wait();
    std::cout << "joined as rank " << d::get_rank() << " of " << d::get_world_size() << "\n";
    d::destroy_process_group();
    return 0;
  } catch (const d::DistributedError& e) {
    std::cout << "DistributedError: " << e.what() << "\n";
    return 3;
  }
}

// For the launcher: a line on each stream, then exit with RANK's code from the list.
int echo(int argc, char** argv) {
  const int rank = std::atoi(std::getenv("RANK"));
  std::cout << "out of rank " << rank << " world " << std::getenv("WORLD_SIZE") << " local "
            << std::getenv("LOCAL_RANK") << "\n" << std::flush;
  std::cerr << "err of rank " << rank << "\n" << std::flush;
  for (int i = 2; i < argc; ++i) {
    // "R:CODE" exits rank R with CODE after a short pause; "R:sleep" never ends.
    const std::string a = argv[i];
    const auto colon = a.find(':');
    if (std::atoi(a.substr(0, colon).c_str()) != rank) continue;
    const std::string what = a.substr(colon + 1);
    if (what == "sleep") {
      std::this_thread::sleep_for(std::chrono::hours(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return std::atoi(what.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string scenario = argc > 1 ? argv[1] : "";
  try {
    if (scenario == "collectives") return collectives();
    if (scenario == "ddp") return ddp();
    if (scenario == "peer_dies") return peer_dies();
    if (scenario == "peer_hangs") return peer_hangs();
    if (scenario == "init") return just_init();
    if (scenario == "echo") return echo(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "rank " << std::getenv("RANK") << ": " << e.what() << "\n";
    return 2;
  }
  std::cerr << "unknown scenario '" << scenario << "'\n";
  return 64;
}
