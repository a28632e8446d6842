// The Gloo backend: CPU tensors, Gloo's TCP transport, the rendezvous through our store.
// Collectives run one at a time, in call order, on the group's worker thread (as
// PyTorch's ProcessGroupGloo does), so every rank issues them in the same order.
#include "ember/core/dist/backend.h"

#if EMBER_WITH_GLOO

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <thread>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

namespace ember::dist {
namespace {

// Gloo's rendezvous reads and writes our store.
class GlooStore : public gloo::rendezvous::Store {
 public:
  explicit GlooStore(TcpStore& store) : store_(store) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    store_.set(key, data);
  }
  std::vector<char> get(const std::string& key) override { return store_.get(key); }
  void wait(const std::vector<std::string>& keys) override { wait(keys, store_.timeout()); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    store_.wait(keys, timeout);
  }

 private:
  TcpStore& store_;
};

// The local address this host reaches `master` from (a UDP connect sends nothing): the
// interface Gloo should listen on when the ranks span machines.
std::string local_address_towards(const std::string& master) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(master.c_str(), "9", &hints, &res) != 0 || res == nullptr) return "";
  std::string out;
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_in local{};
    socklen_t len = sizeof(local);
    char text[INET_ADDRSTRLEN] = {};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
        ::inet_ntop(AF_INET, &local.sin_addr, text, sizeof(text)) != nullptr) {
      out = text;
    }
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(res);
  return out;
}

struct GlooWork : Work::State {
  std::promise<void> promise;
  std::shared_future<void> future = promise.get_future().share();
  void wait() override { future.get(); }
  bool completed() override {
    return future.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
};

using ReduceFn = void (*)(void*, const void*, const void*, size_t);

template <typename T>
gloo::AllreduceOptions::Func reduce_fn(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max: return static_cast<ReduceFn>(&gloo::max<T>);
    case ReduceOp::Min: return static_cast<ReduceFn>(&gloo::min<T>);
    case ReduceOp::Sum:
    case ReduceOp::Avg: break;
  }
  return static_cast<ReduceFn>(&gloo::sum<T>);
}

// Runs `body` with T the element type Gloo computes `dtype` in.
template <typename Body>
void with_type(DType dtype, Body&& body) {
  switch (dtype) {
    case kFloat32: return body.template operator()<float>();
    case kFloat64: return body.template operator()<double>();
    case kInt32: return body.template operator()<int32_t>();
    case kInt64: return body.template operator()<int64_t>();
    default:
      throw DTypeError(detail::str_cat("gloo: no reduction for ", dtype_name(dtype)));
  }
}

class GlooBackend : public Backend {
 public:
  explicit GlooBackend(const GroupInfo& info) : info_(info) {
    gloo::transport::tcp::attr attr;
    const char* iface = std::getenv("GLOO_SOCKET_IFNAME");
    const std::string& m = info.master_addr;
    if (iface != nullptr && *iface != '\0') {
      attr.iface = iface;
    } else if (m == "localhost" || m.rfind("127.", 0) == 0 || m == "::1") {
      attr.hostname = "127.0.0.1";
    } else {
      attr.hostname = local_address_towards(m);
      EMBER_CHECK_T(dist::DistributedError, !attr.hostname.empty(), "init_process_group: rank ",
                    info.rank, " found no local address that reaches MASTER_ADDR=", m,
                    "; set GLOO_SOCKET_IFNAME to the network interface to use");
    }
    try {
      device_ = gloo::transport::tcp::CreateDevice(attr);
      auto ctx = std::make_shared<gloo::rendezvous::Context>(info.rank, info.world_size);
      ctx->setTimeout(info.timeout);
      GlooStore store(*info.store);
      gloo::rendezvous::PrefixStore prefixed("gloo", store);
      ctx->connectFullMesh(prefixed, device_);
      context_ = ctx;
    } catch (const DistributedError&) {
      throw;
    } catch (const std::exception& e) {
      throw DistributedError(
          failure_message(info, "gloo", "init_process_group (connecting the ranks)", e.what()));
    }
    worker_ = std::thread([this] { work_loop(); });
  }

  ~GlooBackend() override { shutdown(); }

  std::string name() const override { return "gloo"; }

  Work all_reduce(const Tensor& t, ReduceOp op) override {
    return enqueue(describe("all_reduce", t, op), [this, t = Tensor(t), op](uint32_t tag) mutable {
      Tensor x = is_reduced_float(t.dtype()) ? t.to(kFloat32) : t;
      all_reduce_in_place(x, op, tag);
      if (!x.is_same(t)) t.copy_(x);
    });
  }

  Work broadcast(const Tensor& t, int src) override {
    return enqueue(describe("broadcast", t) + " from rank " + std::to_string(src),
                   [this, t, src](uint32_t tag) {
      if (t.nbytes() == 0) return;
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(static_cast<char*>(t.data_ptr()), t.nbytes());
      opts.setRoot(src);
      opts.setTag(tag);
      opts.setTimeout(info_.timeout);
      gloo::broadcast(opts);
    });
  }

  Work all_gather(const Tensor& output, const Tensor& input) override {
    return enqueue(describe("all_gather", input), [this, output, input](uint32_t tag) {
      if (input.nbytes() == 0) return;
      gloo::AllgatherOptions opts(context_);
      opts.setInput(static_cast<char*>(input.data_ptr()), input.nbytes());
      opts.setOutput(static_cast<char*>(output.data_ptr()), output.nbytes());
      opts.setTag(tag);
      opts.setTimeout(info_.timeout);
      gloo::allgather(opts);
    });
  }

  // As PyTorch's Gloo group does it: an all-reduce of the whole input, then this rank
  // keeps its chunk (Gloo's own reduce-scatter is an older, typed algorithm without
  // timeouts).
  Work reduce_scatter(const Tensor& output, const Tensor& input, ReduceOp op) override {
    return enqueue(describe("reduce_scatter", input, op),
                   [this, output = Tensor(output), input, op](uint32_t tag) mutable {
      Tensor x = input.to(is_reduced_float(input.dtype()) ? kFloat32 : input.dtype()).clone();
      all_reduce_in_place(x, op, tag);
      const int64_t n = output.numel();
      output.copy_(x.narrow(0, info_.rank * n, n).view(output.shape()));
    });
  }

  Work barrier() override {
    return enqueue("barrier", [this](uint32_t tag) {
      gloo::BarrierOptions opts(context_);
      opts.setTag(tag);
      opts.setTimeout(info_.timeout);
      gloo::barrier(opts);
    });
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    context_.reset();
    device_.reset();
  }

 private:
  using Job = std::function<void(uint32_t tag)>;

  static std::string describe(const char* op, const Tensor& t) {
    return detail::str_cat(op, " of ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
  }
  static std::string describe(const char* op, const Tensor& t, ReduceOp rop) {
    return describe(op, t) + " (" + reduce_op_name(rop) + ")";
  }

  void all_reduce_in_place(const Tensor& x, ReduceOp op, uint32_t tag) {
    const auto n = static_cast<size_t>(x.numel());
    if (n == 0) return;
    with_type(x.dtype(), [&]<typename T>() {
      T* data = x.data<T>();
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data, n);
      opts.setReduceFunction(reduce_fn<T>(op));
      opts.setTag(tag);
      opts.setTimeout(info_.timeout);
      gloo::allreduce(opts);
      if constexpr (std::is_floating_point_v<T>) {
        if (op == ReduceOp::Avg) {
          const T scale = T(1) / static_cast<T>(info_.world_size);
          for (size_t i = 0; i < n; ++i) data[i] *= scale;
        }
      }
    });
  }

  Work enqueue(std::string what, Job job) {
    auto state = std::make_shared<GlooWork>();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      EMBER_CHECK_T(dist::DistributedError, !stopping_, what,
                    ": the process group is being destroyed");
      queue_.push_back({std::move(what), std::move(job), state});
    }
    cv_.notify_one();
    return Work(state);
  }

  void work_loop() {
    uint32_t tag = 0;
    while (true) {
      Item item;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      try {
        item.job(tag++);
        item.state->promise.set_value();
      } catch (const std::exception& e) {
        // A rank's failure leaves Gloo's connections unusable: say who, once, per Work.
        item.state->promise.set_exception(std::make_exception_ptr(
            DistributedError(failure_message(info_, "gloo", item.what, e.what()))));
      }
    }
  }

  struct Item {
    std::string what;
    Job job;
    std::shared_ptr<GlooWork> state;
  };

  GroupInfo info_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::Context> context_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace

std::unique_ptr<Backend> make_gloo_backend(const GroupInfo& info) {
  return std::make_unique<GlooBackend>(info);
}

}  // namespace ember::dist

#else  // !EMBER_WITH_GLOO

namespace ember::dist {

std::unique_ptr<Backend> make_gloo_backend(const GroupInfo&) {
  throw DistributedError("init_process_group: ember was built without distributed support "
                         "(Gloo was not found: install libgloo-dev and reconfigure with "
                         "EMBER_DISTRIBUTED=ON)");
}

}  // namespace ember::dist

#endif  // EMBER_WITH_GLOO
