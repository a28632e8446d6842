// The TCP key-value store of the rendezvous (internal): rank 0 runs the server, every
// rank holds one client connection. See Note [Process group] in core/dist/dist.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ember::dist {

class StoreServer;

// What the store knows about the ranks: who said hello, who dropped without goodbye.
struct RankCensus {
  std::vector<int> joined;
  std::vector<int> dead;  // first to drop first
};

class TcpStore {
 public:
  // Rank 0 (`is_server`) listens on `port` (any address) and connects to itself; others
  // connect to addr:port, retrying until `timeout`. Then the client introduces itself as
  // `rank` of `world_size`; the server refuses a WORLD_SIZE other than its own, a rank
  // out of range or one that already joined. Throws DistributedError.
  TcpStore(const std::string& addr, int port, bool is_server, int rank, int world_size,
           std::chrono::milliseconds timeout);
  ~TcpStore();
  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  void set(const std::string& key, const std::vector<char>& value);
  // Waits (up to the timeout) for the key; throws DistributedError naming it.
  std::vector<char> get(const std::string& key);
  // Whether every key is present.
  bool check(const std::vector<std::string>& keys);
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);
  int64_t add(const std::string& key, int64_t delta);
  RankCensus census();
  // Waits until all `world_size` ranks have said hello; a missing rank or a refused one
  // (the server keeps the first refusal's message) is a DistributedError.
  void wait_for_all_ranks();
  // A clean goodbye: the server does not count this rank as dead.
  void say_goodbye();

  const std::string& addr() const { return addr_; }
  int port() const { return port_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  std::vector<char> request(char cmd, const std::string& key, const std::vector<char>& value);
  std::string where() const;

  std::string addr_;
  int port_;
  int rank_;
  int world_size_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<StoreServer> server_;
  int fd_ = -1;
  std::mutex mutex_;  // one request at a time on the connection
};

}  // namespace ember::dist
