// The rendezvous store: a one-thread TCP key-value server on rank 0 and a blocking client
// per rank (see Note [Process group] in core/dist/dist.h).
//
// Wire format, both ways little-endian: a request is [u8 command][u32 key length][key]
// [u32 value length][value]; a reply is [u8 status][u32 length][value], status 0 ok,
// 1 key absent, 2 refused (the value is the message).
#include "ember/core/dist/store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "ember/core/base/error.h"
#include "ember/core/dist/dist.h"

namespace ember::dist {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kSet = 'S', kGet = 'G', kCheck = 'C', kAdd = 'A', kHello = 'H',
               kCensus = 'N', kBye = 'B';
constexpr char kOk = 0, kAbsent = 1, kRefused = 2;
constexpr const char* kRefusedKey = "__ember_refused";
constexpr uint32_t kMaxLength = 1u << 30;

bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads exactly n bytes; false on EOF or error, or when `deadline` passes first.
bool read_all(int fd, void* data, size_t n, Clock::time_point deadline = Clock::time_point::max()) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    if (deadline != Clock::time_point::max()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd pfd{fd, POLLIN, 0};
      const int r = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
    }
    ssize_t got = ::recv(fd, p, n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

bool write_message(int fd, char head, const std::string& key, const std::vector<char>& value,
                   bool with_key) {
  std::vector<char> buf;
  buf.push_back(head);
  auto put_u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) buf.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  if (with_key) {
    put_u32(static_cast<uint32_t>(key.size()));
    buf.insert(buf.end(), key.begin(), key.end());
  }
  put_u32(static_cast<uint32_t>(value.size()));
  buf.insert(buf.end(), value.begin(), value.end());
  return write_all(fd, buf.data(), buf.size());
}

bool read_u32(int fd, uint32_t* v, Clock::time_point deadline = Clock::time_point::max()) {
  unsigned char b[4];
  if (!read_all(fd, b, 4, deadline)) return false;
  *v = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  return *v <= kMaxLength;
}

std::vector<char> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string to_string(const std::vector<char>& v) { return {v.begin(), v.end()}; }

std::string join_ranks(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

}  // namespace

// --- server ---------------------------------------------------------------------------------

class StoreServer {
 public:
  StoreServer(int port, int world_size) : world_size_(world_size) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EMBER_CHECK_T(dist::DistributedError, listen_fd_ >= 0, "init_process_group: rank 0 cannot "
                  "create the store's socket: ", std::strerror(errno));
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    sa.sin_port = htons(static_cast<uint16_t>(port));
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
        ::listen(listen_fd_, 1024) != 0) {
      const int err = errno;
      ::close(listen_fd_);
      throw DistributedError(detail::str_cat(
          "init_process_group: rank 0 cannot listen on port ", port, " (MASTER_PORT) for the "
          "rendezvous store: ", std::strerror(err),
          err == EADDRINUSE ? " (another job, or a previous run still exiting, holds this "
                              "port: choose another MASTER_PORT)" : ""));
    }
    if (::pipe2(wake_, O_CLOEXEC) != 0) {
      ::close(listen_fd_);
      throw DistributedError("init_process_group: rank 0 cannot create the store's pipe");
    }
    thread_ = std::thread([this] { loop(); });
  }

  ~StoreServer() {
    stop_ = true;
    const char c = 0;
    (void)!::write(wake_[1], &c, 1);
    thread_.join();
    for (auto& [fd, client] : clients_) ::close(fd);
    ::close(listen_fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }

 private:
  struct Client {
    int rank = -1;
    bool said_goodbye = false;
  };

  void loop() {
    while (!stop_) {
      std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
      for (auto& [fd, client] : clients_) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents != 0) return;
      if (fds[1].revents & POLLIN) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) {
          const int one = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          clients_[fd] = Client{};
        }
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        if (!serve(fds[i].fd)) drop(fds[i].fd);
      }
    }
  }

  void drop(int fd) {
    Client& c = clients_[fd];
    if (c.rank >= 0 && !c.said_goodbye) dead_.push_back(c.rank);
    if (c.rank >= 0) joined_.erase(c.rank);
    ::close(fd);
    clients_.erase(fd);
  }

  // Handles one request; false when the connection is closed or broken.
  bool serve(int fd) {
    char cmd = 0;
    uint32_t klen = 0, vlen = 0;
    if (!read_all(fd, &cmd, 1) || !read_u32(fd, &klen)) return false;
    std::string key(klen, '\0');
    if (!read_all(fd, key.data(), klen) || !read_u32(fd, &vlen)) return false;
    std::vector<char> value(vlen);
    if (!read_all(fd, value.data(), vlen)) return false;

    auto reply = [&](char status, const std::vector<char>& v) {
      return write_message(fd, status, "", v, false);
    };
    switch (cmd) {
      case kSet:
        data_[key] = std::move(value);
        return reply(kOk, {});
      case kGet: {
        auto it = data_.find(key);
        return it == data_.end() ? reply(kAbsent, {}) : reply(kOk, it->second);
      }
      case kCheck: {
        std::istringstream keys(key);
        std::string k;
        bool all = true;
        while (std::getline(keys, k, '\n')) all = all && data_.count(k) > 0;
        return reply(kOk, to_bytes(all ? "1" : "0"));
      }
      case kAdd: {
        auto& slot = data_[key];
        const int64_t now = (slot.empty() ? 0 : std::stoll(to_string(slot))) +
                            std::stoll(to_string(value));
        slot = to_bytes(std::to_string(now));
        return reply(kOk, slot);
      }
      case kHello: return hello(fd, to_string(value), reply);
      case kCensus: {
        std::string s;
        for (int r : joined_) s += std::to_string(r) + " ";
        s += "|";
        for (int r : dead_) s += " " + std::to_string(r);
        return reply(kOk, to_bytes(s));
      }
      case kBye:
        clients_[fd].said_goodbye = true;
        return reply(kOk, {});
      default:
        return false;
    }
  }

  template <typename Reply>
  bool hello(int fd, const std::string& text, Reply& reply) {
    int rank = -1, world_size = -1;
    std::istringstream(text) >> rank >> world_size;
    std::string refusal;
    if (world_size != world_size_) {
      refusal = detail::str_cat("rank ", rank, " was started with WORLD_SIZE=", world_size,
                                " but rank 0 with WORLD_SIZE=", world_size_,
                                ": every rank must be given the same world size");
    } else if (rank < 0 || rank >= world_size_) {
      refusal = detail::str_cat("rank ", rank, " is out of range for WORLD_SIZE=", world_size_);
    } else if (joined_.count(rank) > 0) {
      refusal = detail::str_cat("rank ", rank, " joined twice: two processes were given "
                                "RANK=", rank);
    }
    if (!refusal.empty()) {
      if (!data_.count(kRefusedKey)) data_[kRefusedKey] = to_bytes(refusal);
      return reply(kRefused, to_bytes(refusal));
    }
    clients_[fd].rank = rank;
    joined_.insert(rank);
    std::erase(dead_, rank);
    return reply(kOk, {});
  }

  int world_size_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::map<int, Client> clients_;
  std::map<std::string, std::vector<char>> data_;
  std::set<int> joined_;
  std::vector<int> dead_;  // in the order their connections dropped
};

// --- client ---------------------------------------------------------------------------------

namespace {

// One connection attempt to addr:port; -1 with `why` set when it fails.
int try_connect(const std::string& addr, int port, std::string* why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) {
    *why = detail::str_cat("cannot resolve '", addr, "': ", ::gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      *why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd >= 0) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return fd;
}

}  // namespace

TcpStore::TcpStore(const std::string& addr, int port, bool is_server, int rank, int world_size,
                   std::chrono::milliseconds timeout)
    : addr_(addr), port_(port), rank_(rank), world_size_(world_size), timeout_(timeout) {
  if (is_server) server_ = std::make_unique<StoreServer>(port, world_size);
  const auto deadline = Clock::now() + timeout;
  std::string why = "no attempt";
  auto pause = std::chrono::milliseconds(10);
  while (true) {
    fd_ = try_connect(is_server ? "127.0.0.1" : addr, port, &why);
    if (fd_ >= 0 || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(250));
  }
  EMBER_CHECK_T(dist::DistributedError, fd_ >= 0, "init_process_group: rank ", rank,
                " could not connect to the rendezvous store at ", where(), " within ",
                timeout.count(), " ms (last error: ", why, "); is rank 0 running, and are "
                "MASTER_ADDR and MASTER_PORT the same on every rank?");
  const auto r = request(kHello, "", to_bytes(detail::str_cat(rank, " ", world_size)));
  (void)r;
}

TcpStore::~TcpStore() {
  if (fd_ >= 0) ::close(fd_);
  server_.reset();
}

std::string TcpStore::where() const { return detail::str_cat(addr_, ":", port_); }

std::vector<char> TcpStore::request(char cmd, const std::string& key,
                                    const std::vector<char>& value) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto lost = [&] {
    return DistributedError(detail::str_cat(
        "rank ", rank_, " lost its connection to the rendezvous store at ", where(),
        ": rank 0, which hosts it, has probably exited"));
  };
  EMBER_CHECK_T(dist::DistributedError, fd_ >= 0, "rank ", rank_, ": the store connection to ",
                where(), " is closed");
  if (!write_message(fd_, cmd, key, value, true)) throw lost();
  const auto deadline = Clock::now() + timeout_;
  char status = 0;
  uint32_t len = 0;
  if (!read_all(fd_, &status, 1, deadline) || !read_u32(fd_, &len, deadline)) throw lost();
  std::vector<char> out(len);
  if (!read_all(fd_, out.data(), len, deadline)) throw lost();
  if (status == kRefused) {
    throw DistributedError(detail::str_cat("init_process_group: the rendezvous store at ",
                                           where(), " refused rank ", rank_, ": ",
                                           to_string(out)));
  }
  if (status == kAbsent) throw std::out_of_range(key);
  return out;
}

void TcpStore::set(const std::string& key, const std::vector<char>& value) {
  request(kSet, key, value);
}

bool TcpStore::check(const std::vector<std::string>& keys) {
  std::string joined;
  for (size_t i = 0; i < keys.size(); ++i) joined += (i ? "\n" : "") + keys[i];
  return to_string(request(kCheck, joined, {})) == "1";
}

void TcpStore::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  while (!check(keys)) {
    if (Clock::now() >= deadline) {
      std::string names;
      for (const auto& k : keys) names += (names.empty() ? "" : ", ") + k;
      const RankCensus c = census();
      throw DistributedError(detail::str_cat(
          "rank ", rank_, " timed out after ", timeout.count(), " ms waiting for the keys [",
          names, "] in the rendezvous store at ", where(),
          c.dead.empty() ? std::string()
                         : detail::str_cat("; rank(s) ", join_ranks(c.dead), " have exited")));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

std::vector<char> TcpStore::get(const std::string& key) {
  wait({key}, timeout_);
  return request(kGet, key, {});
}

int64_t TcpStore::add(const std::string& key, int64_t delta) {
  return std::stoll(to_string(request(kAdd, key, to_bytes(std::to_string(delta)))));
}

RankCensus TcpStore::census() {
  const std::string s = to_string(request(kCensus, "", {}));
  RankCensus c;
  std::istringstream in(s);
  std::string word;
  bool dead = false;
  while (in >> word) {
    if (word == "|") {
      dead = true;
      continue;
    }
    (dead ? c.dead : c.joined).push_back(std::stoi(word));
  }
  return c;
}

void TcpStore::wait_for_all_ranks() {
  const auto deadline = Clock::now() + timeout_;
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    if (check({kRefusedKey})) {
      throw DistributedError(detail::str_cat("init_process_group: rank ", rank_,
                                             ": the rendezvous at ", where(), " failed: ",
                                             to_string(request(kGet, kRefusedKey, {}))));
    }
    const RankCensus c = census();
    if (static_cast<int>(c.joined.size()) >= world_size_) return;
    EMBER_CHECK_T(dist::DistributedError, c.dead.empty(), "init_process_group: rank ", rank_,
                  ": rank(s) ", join_ranks(c.dead), " joined the rendezvous at ", where(),
                  " and exited before every rank had arrived");
    if (Clock::now() >= deadline) {
      std::vector<int> missing;
      for (int r = 0; r < world_size_; ++r) {
        if (std::find(c.joined.begin(), c.joined.end(), r) == c.joined.end()) {
          missing.push_back(r);
        }
      }
      throw DistributedError(detail::str_cat(
          "init_process_group: rank ", rank_, " waited ", timeout_.count(), " ms at ",
          where(), " but rank(s) ", join_ranks(missing), " of WORLD_SIZE=", world_size_,
          " never arrived (not started, crashed, or given another MASTER_ADDR/MASTER_PORT)"));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

void TcpStore::say_goodbye() {
  try {
    request(kBye, "", {});
  } catch (const std::exception&) {
    // Rank 0 may have left first; nothing to tell then.
  }
}

}  // namespace ember::dist
