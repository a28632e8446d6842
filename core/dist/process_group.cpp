// The default process group: reading torchrun's environment, the rendezvous, the checks
// every collective makes before its backend runs it (Note [Process group] in dist.h).
#include <signal.h>

#include <cstdlib>
#include <mutex>
#include <thread>

#include "ember/core/device.h"
#include "ember/core/dist/backend.h"
#include "ember/core/dist/dist.h"

namespace ember::dist {
namespace {

struct Group {
  GroupInfo info;
  std::string backend_name;
  std::unique_ptr<TcpStore> store;
  std::unique_ptr<Backend> backend;
};

std::mutex g_mutex;
std::unique_ptr<Group> g_group;

// An integer environment variable, or `fallback` when unset; a malformed one is an error.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  EMBER_CHECK_T(dist::DistributedError, end != nullptr && *end == '\0',
                "init_process_group: environment variable ", name, "='", v,
                "' is not an integer");
  return static_cast<int>(x);
}

Group& group(const char* op) {
  EMBER_CHECK_T(dist::DistributedError, g_group != nullptr, op, ": the default process group is "
                "not initialized; call dist::init_process_group() first");
  return *g_group;
}

void check_tensor(const Group& g, const char* op, const Tensor& t, const char* what) {
  EMBER_CHECK(t.defined(), op, ": the ", what, " tensor is undefined");
  EMBER_CHECK(t.is_contiguous(), op, ": the ", what, " tensor ", shape_str(t.shape()),
              " must be contiguous (call .contiguous() and copy the result back)");
  const bool want_cuda = g.backend_name == "nccl";
  EMBER_CHECK_T(DeviceError, t.is_cuda() == want_cuda, op, ": the ", what, " tensor is on ",
                t.device().str(), " but the process group's backend is ", g.backend_name,
                want_cuda ? ", which takes CUDA tensors" : ", which takes CPU tensors");
}

void check_reducible(const char* op, const Tensor& t, ReduceOp rop) {
  const DType d = t.dtype();
  EMBER_CHECK_T(DTypeError, is_floating(d) || d == kInt32 || d == kInt64, op,
                ": cannot reduce ", dtype_name(d),
                " tensors (float32, float64, float16, bfloat16, int32, int64 can)");
  EMBER_CHECK_T(DTypeError, rop != ReduceOp::Avg || is_floating(d), op,
                ": ReduceOp::Avg needs a floating dtype, got ", dtype_name(d),
                " (use Sum and divide)");
}

}  // namespace

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "?";
}

std::string failure_message(const GroupInfo& info, const std::string& backend,
                            const std::string& what, const std::string& cause) {
  // A dead rank's store connection drops at about the moment its peers' sockets do:
  // give the store a moment to notice before concluding that nobody died.
  std::vector<int> dead;
  bool store_lost = false;
  for (int attempt = 0; attempt < 10 && dead.empty() && !store_lost; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(30));
    try {
      dead = info.store->census().dead;
    } catch (const std::exception&) {
      store_lost = true;
    }
  }
  std::string why;
  if (!dead.empty()) {
    // The first to go is the likely cause; peers that gave up after it come later.
    std::string later;
    for (size_t i = 1; i < dead.size(); ++i) later += (i > 1 ? ", " : "") + std::to_string(dead[i]);
    why = detail::str_cat("rank(s) ", dead[0], " exited (their connection to the rendezvous "
                          "store dropped)", later.empty() ? "" : "; after it, rank(s) ",
                          later);
  } else if (store_lost) {
    why = detail::str_cat("rank 0, which hosts the rendezvous store at ",
                          info.store->addr(), ":", info.store->port(),
                          ", is unreachable: it has probably exited");
  } else {
    why = detail::str_cat("no rank has exited: a rank may be hung or slower than the "
                          "timeout (", info.timeout.count(), " ms), or the ranks called "
                          "collectives in different orders or with different sizes");
  }
  return detail::str_cat(what, " failed on rank ", info.rank, " of ", info.world_size, ": ",
                         why, " (", backend, ": ", cause, ")");
}

void Work::wait() const {
  if (state_ != nullptr) state_->wait();  // none: done already (or nothing to do)
}

bool Work::is_completed() const { return state_ == nullptr || state_->completed(); }

bool is_available() {
#if EMBER_WITH_GLOO
  return true;
#else
  return false;
#endif
}

bool is_nccl_available() {
#if EMBER_WITH_NCCL
  return true;
#else
  return false;
#endif
}

void init_process_group(const InitOptions& options) {
  std::lock_guard<std::mutex> lock(g_mutex);
  EMBER_CHECK_T(dist::DistributedError, g_group == nullptr, "init_process_group: the default "
                "process group is already initialized (rank ", g_group->info.rank, " of ",
                g_group->info.world_size, "); call destroy_process_group() first");
  auto g = std::make_unique<Group>();
  GroupInfo& info = g->info;
  // torchrun's variables; a lone process with none of them is a group of one.
  const bool has_env = std::getenv("RANK") != nullptr || std::getenv("WORLD_SIZE") != nullptr;
  info.rank = options.rank >= 0 ? options.rank : env_int("RANK", has_env ? -1 : 0);
  info.world_size =
      options.world_size > 0 ? options.world_size : env_int("WORLD_SIZE", has_env ? -1 : 1);
  info.local_rank = env_int("LOCAL_RANK", 0);
  EMBER_CHECK_T(dist::DistributedError, info.world_size >= 1, "init_process_group: WORLD_SIZE is ",
                info.world_size < 0 ? "unset" : std::to_string(info.world_size),
                " (RANK is set: set WORLD_SIZE too, or pass world_size)");
  EMBER_CHECK_T(dist::DistributedError, info.rank >= 0 && info.rank < info.world_size,
                "init_process_group: rank ", info.rank < 0 ? std::string("unset (RANK)")
                                                            : std::to_string(info.rank),
                " is out of range for WORLD_SIZE=", info.world_size, " (ranks are 0 to ",
                info.world_size - 1, ")");
  const char* addr_env = std::getenv("MASTER_ADDR");
  info.master_addr = !options.master_addr.empty() ? options.master_addr
                     : addr_env != nullptr && *addr_env != '\0' ? addr_env : "127.0.0.1";
  const int port = options.master_port > 0 ? options.master_port : env_int("MASTER_PORT", 29500);
  EMBER_CHECK_T(dist::DistributedError, port > 0 && port < 65536,
                "init_process_group: MASTER_PORT ", port, " is not a TCP port (1 to 65535)");
  EMBER_CHECK_T(dist::DistributedError, options.timeout.count() > 0,
                "init_process_group: the timeout must be positive, got ",
                options.timeout.count(), " ms");
  info.timeout = options.timeout;

  std::string backend = options.backend;
  if (backend.empty()) backend = is_nccl_available() && cuda::device_count() > 0 ? "nccl" : "gloo";
  EMBER_CHECK_T(dist::DistributedError, backend == "gloo" || backend == "nccl",
                "init_process_group: unknown backend '", backend,
                "' (\"gloo\" for CPU tensors, \"nccl\" for CUDA tensors)");
  EMBER_CHECK_T(dist::DistributedError, is_available(), "init_process_group: ember was built "
                "without distributed support (configure with Gloo installed, Debian package "
                "libgloo-dev, and EMBER_DISTRIBUTED=ON)");
  EMBER_CHECK_T(dist::DistributedError, backend != "nccl" || is_nccl_available(),
                "init_process_group: backend \"nccl\" needs a CUDA build of ember with NCCL "
                "found; this build has ", EMBER_WITH_CUDA ? "CUDA but no NCCL" : "no CUDA",
                " (use backend \"gloo\" for CPU tensors)");
  g->backend_name = backend;
  // Gloo writes to its peers' sockets without MSG_NOSIGNAL: a peer that died would kill
  // this process with SIGPIPE instead of failing the collective with a message. Python
  // (so PyTorch) ignores SIGPIPE anyway; do the same unless the program handles it.
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    ::signal(SIGPIPE, SIG_IGN);
  }

  g->store = std::make_unique<TcpStore>(info.master_addr, port, info.rank == 0, info.rank,
                                        info.world_size, info.timeout);
  info.store = g->store.get();
  g->store->wait_for_all_ranks();
  g->backend = backend == "gloo" ? make_gloo_backend(info) : make_nccl_backend(info);
  g_group = std::move(g);
}

void destroy_process_group() {
  std::unique_ptr<Group> g;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g = std::move(g_group);
  }
  if (g == nullptr) return;
  g->backend->shutdown();
  g->backend.reset();
  g->store->say_goodbye();
}

bool is_initialized() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_group != nullptr;
}

int get_rank() { return group("get_rank").info.rank; }
int get_world_size() { return group("get_world_size").info.world_size; }
int get_local_rank() { return env_int("LOCAL_RANK", 0); }
std::string get_backend() { return group("get_backend").backend_name; }

Work all_reduce(const Tensor& t, ReduceOp op) {
  Group& g = group("all_reduce");
  check_tensor(g, "all_reduce", t, "");
  check_reducible("all_reduce", t, op);
  return g.backend->all_reduce(t, op);
}

Work broadcast(const Tensor& t, int src) {
  Group& g = group("broadcast");
  check_tensor(g, "broadcast", t, "");
  EMBER_CHECK(src >= 0 && src < g.info.world_size, "broadcast: source rank ", src,
              " is out of range for world size ", g.info.world_size);
  return g.backend->broadcast(t, src);
}

Work all_gather_into_tensor(const Tensor& output, const Tensor& input) {
  Group& g = group("all_gather");
  check_tensor(g, "all_gather", output, "output");
  check_tensor(g, "all_gather", input, "input");
  EMBER_CHECK_T(DTypeError, output.dtype() == input.dtype(), "all_gather: output is ",
                dtype_name(output.dtype()), " but input is ", dtype_name(input.dtype()));
  EMBER_CHECK_T(ShapeError, output.numel() == input.numel() * g.info.world_size,
                "all_gather: output ", shape_str(output.shape()), " has ", output.numel(),
                " elements, expected world size ", g.info.world_size, " x input ",
                shape_str(input.shape()), " = ", input.numel() * g.info.world_size);
  return g.backend->all_gather(output, input);
}

Work all_gather(const std::vector<Tensor>& outputs, const Tensor& input) {
  Group& g = group("all_gather");
  EMBER_CHECK_T(ShapeError, static_cast<int>(outputs.size()) == g.info.world_size,
                "all_gather: ", outputs.size(), " output tensors for world size ",
                g.info.world_size);
  for (const Tensor& o : outputs) {
    check_tensor(g, "all_gather", o, "output");
    EMBER_CHECK_T(ShapeError, o.numel() == input.numel() && o.dtype() == input.dtype(),
                  "all_gather: output ", dtype_name(o.dtype()), " ", shape_str(o.shape()),
                  " does not match input ", dtype_name(input.dtype()), " ",
                  shape_str(input.shape()));
  }
  Tensor flat = empty({input.numel() * g.info.world_size},
                      {.dtype = input.dtype(), .device = input.device()});
  all_gather_into_tensor(flat, input).wait();
  for (int r = 0; r < g.info.world_size; ++r) {
    Tensor out = outputs[r];
    out.copy_(flat.narrow(0, r * input.numel(), input.numel()).view(outputs[r].shape()));
  }
  return Work();
}

Work reduce_scatter_tensor(const Tensor& output, const Tensor& input, ReduceOp op) {
  Group& g = group("reduce_scatter");
  check_tensor(g, "reduce_scatter", output, "output");
  check_tensor(g, "reduce_scatter", input, "input");
  check_reducible("reduce_scatter", input, op);
  EMBER_CHECK_T(DTypeError, output.dtype() == input.dtype(), "reduce_scatter: output is ",
                dtype_name(output.dtype()), " but input is ", dtype_name(input.dtype()));
  EMBER_CHECK_T(ShapeError, input.numel() == output.numel() * g.info.world_size,
                "reduce_scatter: input ", shape_str(input.shape()), " has ", input.numel(),
                " elements, expected world size ", g.info.world_size, " x output ",
                shape_str(output.shape()), " = ", output.numel() * g.info.world_size);
  return g.backend->reduce_scatter(output, input, op);
}

Work reduce_scatter(const Tensor& output, const std::vector<Tensor>& inputs, ReduceOp op) {
  Group& g = group("reduce_scatter");
  EMBER_CHECK_T(ShapeError, static_cast<int>(inputs.size()) == g.info.world_size,
                "reduce_scatter: ", inputs.size(), " input tensors for world size ",
                g.info.world_size);
  check_tensor(g, "reduce_scatter", output, "output");
  Tensor flat = empty({output.numel() * g.info.world_size},
                      {.dtype = output.dtype(), .device = output.device()});
  for (int r = 0; r < g.info.world_size; ++r) {
    EMBER_CHECK_T(ShapeError, inputs[r].defined() && inputs[r].numel() == output.numel(),
                  "reduce_scatter: input ", r, " does not have output's ", output.numel(),
                  " elements");
    flat.narrow(0, r * output.numel(), output.numel()).copy_(inputs[r].reshape({-1}));
  }
  return reduce_scatter_tensor(output, flat, op);
}

Work barrier() {
  Group& g = group("barrier");
  return g.backend->barrier();
}

}  // namespace ember::dist
