// Distributed: collectives over Gloo in 2 and 4 processes, DDP against one process,
// rendezvous and peer failures, and `ember launch`. Each test starts the ranks as
// processes of tests/dist/dist_worker.cpp (beside this binary) on a free loopback port,
// bounds them with a deadline and reaps every one.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ember/ember.h"

#include "support/free_port.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string self_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string p(buf, n > 0 ? static_cast<size_t>(n) : 0);
  return p.substr(0, p.rfind('/'));
}
std::string worker_path() { return self_dir() + "/ember_dist_worker"; }
std::string ember_tool_path() { return self_dir() + "/../bin/ember"; }

using ember::testing::free_port;

struct Result {
  int code = -1;         // exit code, 128 + signal, or -1 when killed at the deadline
  std::string output;    // stdout and stderr together
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `argv` as N processes with per-process environment additions, output to files;
// kills (SIGKILL) whatever is still running at the deadline. Every child is reaped.
std::vector<Result> run_processes(const std::vector<std::vector<std::string>>& argvs,
                                  const std::vector<std::map<std::string, std::string>>& envs,
                                  std::chrono::seconds deadline_in) {
  const size_t n = argvs.size();
  std::vector<pid_t> pids(n, -1);
  std::vector<std::string> logs(n);
  static int counter = 0;
  for (size_t i = 0; i < n; ++i) {
    logs[i] = ::testing::TempDir() + "ember_dist_" + std::to_string(::getpid()) + "_" +
              std::to_string(counter++) + ".log";
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int fd = ::open(logs[i].c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      for (const auto& [k, v] : envs[i]) ::setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv;
      for (const auto& a : argvs[i]) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    pids[i] = pid;
  }
  std::vector<Result> results(n);
  const auto deadline = Clock::now() + deadline_in;
  size_t left = n;
  while (left > 0) {
    for (size_t i = 0; i < n; ++i) {
      if (pids[i] < 0) continue;
      int status = 0;
      if (::waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        results[i].code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pids[i] = -1;
        --left;
      }
    }
    if (left > 0 && Clock::now() >= deadline) {
      for (size_t i = 0; i < n; ++i) {
        if (pids[i] < 0) continue;
        ::kill(pids[i], SIGKILL);
        ::waitpid(pids[i], nullptr, 0);
        results[i].code = -1;
        pids[i] = -1;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (size_t i = 0; i < n; ++i) {
    results[i].output = slurp(logs[i]);
    ::unlink(logs[i].c_str());
  }
  return results;
}

// `world` ranks of the worker's `scenario` on one port.
std::vector<Result> run_ranks(int world, const std::string& scenario,
                              std::chrono::seconds deadline = std::chrono::seconds(40),
                              const std::map<std::string, std::string>& extra = {}) {
  const int port = free_port();
  std::vector<std::vector<std::string>> argvs;
  std::vector<std::map<std::string, std::string>> envs;
  for (int r = 0; r < world; ++r) {
    argvs.push_back({worker_path(), scenario});
    std::map<std::string, std::string> env = {
        {"RANK", std::to_string(r)}, {"WORLD_SIZE", std::to_string(world)},
        {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)},
        {"OMP_NUM_THREADS", "1"}, {"OPENBLAS_NUM_THREADS", "1"}};
    for (const auto& [k, v] : extra) env[k] = v;
    envs.push_back(env);
  }
  return run_processes(argvs, envs, deadline);
}

void expect_all_pass(const std::vector<Result>& results) {
  for (size_t r = 0; r < results.size(); ++r) {
    EXPECT_EQ(results[r].code, 0) << "rank " << r << " output:\n" << results[r].output;
  }
}

}  // namespace

TEST(DistCollectives, EveryOpDtypeAndSizeIn2Processes) {
  expect_all_pass(run_ranks(2, "collectives"));
}

TEST(DistCollectives, EveryOpDtypeAndSizeIn4Processes) {
  expect_all_pass(run_ranks(4, "collectives"));
}

TEST(DistributedDataParallel, TwoRanksOfBatch32MatchOneProcessOfBatch64) {
  expect_all_pass(run_ranks(2, "ddp"));
}

TEST(DistFaults, ARankKilledMidCollectiveIsNamedByTheOthers) {
  auto results = run_ranks(3, "peer_dies", std::chrono::seconds(30),
                           {{"EMBER_TEST_DIST_TIMEOUT_MS", "5000"}});
  EXPECT_EQ(results[2].code, 128 + SIGKILL) << results[2].output;
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(results[r].code, 0) << "rank " << r << ":\n" << results[r].output;
    EXPECT_NE(results[r].output.find("rank(s) 2 exited"), std::string::npos) << results[r].output;
  }
}

TEST(DistFaults, ARankThatNeverJoinsTimesTheOthersOut) {
  auto results = run_ranks(2, "peer_hangs", std::chrono::seconds(30),
                           {{"EMBER_TEST_DIST_TIMEOUT_MS", "1500"}});
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(results[r].code, 0) << "rank " << r << ":\n" << results[r].output;
  }
  EXPECT_NE(results[0].output.find("no rank has exited"), std::string::npos) << results[0].output;
}

TEST(DistFaults, WrongWorldSizeIsRefusedWithBothSizes) {
  const int port = free_port();
  const std::string p = std::to_string(port);
  auto env = [&](int rank, int world) {
    return std::map<std::string, std::string>{{"RANK", std::to_string(rank)},
                                              {"WORLD_SIZE", std::to_string(world)},
                                              {"MASTER_PORT", p},
                                              {"EMBER_TEST_DIST_TIMEOUT_MS", "4000"}};
  };
  auto results = run_processes({{worker_path(), "init"}, {worker_path(), "init"}},
                               {env(0, 2), env(1, 3)}, std::chrono::seconds(20));
  for (const Result& r : results) {
    EXPECT_EQ(r.code, 3) << r.output;
    EXPECT_NE(r.output.find("WORLD_SIZE=3 but rank 0 with WORLD_SIZE=2"), std::string::npos)
        << r.output;
  }
}

TEST(DistFaults, BusyPortRankOutOfRangeAndAMissingRankAreClearErrors) {
  // Busy port: something already listens on it.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  const std::string busy = std::to_string(ntohs(sa.sin_port));
  const std::string other = std::to_string(free_port());
  auto results = run_processes(
      {{worker_path(), "init"}, {worker_path(), "init"}, {worker_path(), "init"}},
      {{{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_PORT", busy}},
       {{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", other}},
       // Rank 0 of 2 alone: rank 1 never arrives.
       {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", other},
        {"EMBER_TEST_DIST_TIMEOUT_MS", "1500"}}},
      std::chrono::seconds(20));
  ::close(fd);
  EXPECT_EQ(results[0].code, 3) << results[0].output;
  EXPECT_NE(results[0].output.find("cannot listen on port " + busy), std::string::npos)
      << results[0].output;
  EXPECT_NE(results[0].output.find("Address already in use"), std::string::npos)
      << results[0].output;
  EXPECT_EQ(results[1].code, 3) << results[1].output;
  EXPECT_NE(results[1].output.find("rank 2 is out of range for WORLD_SIZE=2"), std::string::npos)
      << results[1].output;
  EXPECT_EQ(results[2].code, 3) << results[2].output;
  EXPECT_NE(results[2].output.find("rank(s) 1 of WORLD_SIZE=2 never arrived"), std::string::npos)
      << results[2].output;
}

TEST(DistFaults, NobodyListeningTimesOutNamingTheAddress) {
  const std::string port = std::to_string(free_port());
  auto results = run_processes({{worker_path(), "init"}},
                               {{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", port},
                                 {"EMBER_TEST_DIST_TIMEOUT_MS", "800"}}},
                               std::chrono::seconds(20));
  EXPECT_EQ(results[0].code, 3) << results[0].output;
  EXPECT_NE(results[0].output.find("rank 1 could not connect to the rendezvous store at "
                                   "127.0.0.1:" + port + " within 800 ms"),
            std::string::npos)
      << results[0].output;
}

TEST(DistProcessGroup, APlainProcessIsAGroupOfOneAndCollectivesCheckTheirInputs) {
  // No torchrun variables: world size 1, rank 0.
  for (const char* v : {"RANK", "WORLD_SIZE", "MASTER_ADDR"}) ::unsetenv(v);
  ember::dist::init_process_group({.master_port = free_port(),
                                   .timeout = std::chrono::seconds(5)});
  EXPECT_EQ(ember::dist::get_rank(), 0);
  EXPECT_EQ(ember::dist::get_world_size(), 1);
  ember::Tensor t = ember::full({5}, 3.0);
  ember::dist::all_reduce(t, ember::dist::ReduceOp::Avg).wait();
  EXPECT_EQ(t.to_vector<float>()[4], 3.0f);
  ember::Tensor wrong = ember::zeros({3});
  EXPECT_THROW(ember::dist::all_gather_into_tensor(wrong, t), ember::ShapeError);
  EXPECT_THROW(ember::dist::broadcast(t, 1), ember::Error);
  EXPECT_THROW(ember::dist::init_process_group(), ember::dist::DistributedError);
  ember::dist::destroy_process_group();
  ember::dist::destroy_process_group();  // twice is fine
  EXPECT_THROW(ember::dist::all_reduce(t), ember::dist::DistributedError);
}

// --- ember launch ---------------------------------------------------------------------------

namespace {

Result launch(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {ember_tool_path(), "launch", "--kill-grace", "1",
                                   "--master-port", std::to_string(free_port())};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_processes({argv}, {{}}, std::chrono::seconds(20))[0];
}

}  // namespace

TEST(EmberLaunch, PrefixesEveryLineAndSetsTorchrunsEnvironment) {
  const Result r = launch({"--nproc-per-node", "3", worker_path(), "echo"});
  EXPECT_EQ(r.code, 0) << r.output;
  for (int rank = 0; rank < 3; ++rank) {
    const std::string k = std::to_string(rank);
    EXPECT_NE(r.output.find("[rank " + k + "] out of rank " + k + " world 3 local " + k),
              std::string::npos) << r.output;
    EXPECT_NE(r.output.find("[rank " + k + "] err of rank " + k), std::string::npos) << r.output;
  }
}

TEST(EmberLaunch, AFailingRankStopsTheOthersAndGivesItsExitCode) {
  const auto start = Clock::now();
  // Rank 1 exits with 7; rank 0 and 2 would sleep for an hour.
  const Result r = launch({"--nproc-per-node", "3", worker_path(), "echo", "0:sleep", "1:7",
                           "2:sleep"});
  EXPECT_EQ(r.code, 7) << r.output;
  EXPECT_NE(r.output.find("rank 1 exited with code 7; stopping the other ranks"),
            std::string::npos) << r.output;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  // Nothing left behind: no process of ours runs the worker any more.
  const std::string ps = [] {
    std::string out;
    FILE* p = ::popen("ps -eo args", "r");
    char line[4096];
    while (p != nullptr && std::fgets(line, sizeof(line), p) != nullptr) out += line;
    if (p != nullptr) ::pclose(p);
    return out;
  }();
  EXPECT_EQ(ps.find(worker_path() + " echo 0:sleep 1:7"), std::string::npos) << ps;
}

TEST(EmberLaunch, ForwardsSigtermToTheRanks) {
  const int port = free_port();
  std::vector<std::string> argv = {ember_tool_path(), "launch", "--nproc-per-node", "2",
                                   "--master-port", std::to_string(port), worker_path(),
                                   "echo", "0:sleep", "1:sleep"};
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(s.data());
    a.push_back(nullptr);
    ::execv(a[0], a.data());
    ::_exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ::kill(pid, SIGTERM);
  int status = 0;
  const auto start = Clock::now();
  while (::waitpid(pid, &status, WNOHANG) != pid) {
    if (Clock::now() - start > std::chrono::seconds(10)) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL() << "ember launch did not exit after SIGTERM";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
}
