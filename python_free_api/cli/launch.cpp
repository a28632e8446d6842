// ember launch: starts one process per local rank with torchrun's environment, prefixes
// their output lines with "[rank K] ", forwards SIGINT/SIGTERM, and when one rank fails
// stops the others (SIGTERM, then SIGKILL after a grace period) and exits with its code.
//
// Each rank runs in a process group of its own, so stopping a rank stops whatever it
// started too, and a Ctrl-C on the terminal reaches the ranks once, through us.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"

namespace ember::cli {
namespace {

using Clock = std::chrono::steady_clock;

int g_signal_pipe[2] = {-1, -1};

extern "C" void on_signal(int sig) {
  const int saved = errno;
  const char c = static_cast<char>(sig);
  (void)!::write(g_signal_pipe[1], &c, 1);
  errno = saved;
}

// One child output stream: the bytes of a line not yet complete.
struct Stream {
  int fd = -1;
  int rank = 0;
  FILE* out = nullptr;
  std::string partial;
};

void emit(Stream& s, const char* data, size_t n) {
  s.partial.append(data, n);
  size_t start = 0;
  for (size_t nl; (nl = s.partial.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::fprintf(s.out, "[rank %d] %.*s\n", s.rank, static_cast<int>(nl - start),
                 s.partial.data() + start);
  }
  s.partial.erase(0, start);
  std::fflush(s.out);
}

void flush_partial(Stream& s) {
  if (!s.partial.empty()) {
    std::fprintf(s.out, "[rank %d] %s\n", s.rank, s.partial.c_str());
    s.partial.clear();
    std::fflush(s.out);
  }
}

struct Rank {
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int code = 0;  // exit code, or 128 + signal
};

void signal_all(std::vector<Rank>& ranks, int sig) {
  for (Rank& r : ranks) {
    if (r.running) ::kill(-r.pid, sig);  // the rank's process group
  }
}

}  // namespace

CLI::App* add_launch_command(CLI::App& app, LaunchOptions& opts) {
  CLI::App* cmd = app.add_subcommand(
      "launch", "run a program as N ranks of a distributed job (like torchrun)");
  cmd->add_option("--nproc-per-node", opts.nproc_per_node, "processes (ranks) on this machine")
      ->required()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--nnodes", opts.nnodes, "machines in the job")->check(CLI::Range(1, 65536));
  cmd->add_option("--node-rank", opts.node_rank, "this machine's index, 0 to nnodes-1")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--master-addr", opts.master_addr, "address of the machine of rank 0");
  cmd->add_option("--master-port", opts.master_port, "free TCP port on that machine")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--kill-grace", opts.kill_grace_s,
                  "seconds between SIGTERM and SIGKILL when stopping the ranks")
      ->check(CLI::NonNegativeNumber);
  // Shown in the help only: main.cpp takes the program's words off the command line
  // before parsing, so that options meant for the program stay its own.
  cmd->add_option("program", opts.command, "the program and its arguments (after the "
                  "options above, or after --)");
  cmd->footer("Each rank gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, "
              "MASTER_ADDR, MASTER_PORT (and OMP_NUM_THREADS=1 unless set). See "
              "docs/distributed.md.");
  return cmd;
}

int run_launch(const LaunchOptions& opts) {
  if (opts.node_rank >= opts.nnodes) {
    std::fprintf(stderr, "ember launch: --node-rank %d is out of range for --nnodes %d\n",
                 opts.node_rank, opts.nnodes);
    return 1;
  }
  if (opts.command.empty()) {
    std::fprintf(stderr, "ember launch: no program given\n");
    return 1;
  }
  const int world = opts.nnodes * opts.nproc_per_node;

  if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    std::fprintf(stderr, "ember launch: pipe: %s\n", std::strerror(errno));
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);

  std::vector<Rank> ranks(opts.nproc_per_node);
  std::vector<Stream> streams;
  for (int local = 0; local < opts.nproc_per_node; ++local) {
    const int rank = opts.node_rank * opts.nproc_per_node + local;
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      std::fprintf(stderr, "ember launch: pipe: %s\n", std::strerror(errno));
      signal_all(ranks, SIGKILL);
      return 1;
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(SIGINT, &dfl, nullptr);
      ::sigaction(SIGTERM, &dfl, nullptr);
      ::sigaction(SIGHUP, &dfl, nullptr);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(opts.nproc_per_node).c_str(), 1);
      ::setenv("GROUP_RANK", std::to_string(opts.node_rank).c_str(), 1);
      ::setenv("MASTER_ADDR", opts.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(opts.master_port).c_str(), 1);
      // As torchrun: ranks share the cores, so one thread each unless told otherwise.
      if (opts.nproc_per_node > 1) ::setenv("OMP_NUM_THREADS", "1", 0);
      std::vector<char*> argv;
      for (const std::string& a : opts.command) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "ember launch: cannot run '%s': %s\n", argv[0], std::strerror(errno));
      std::fflush(stderr);
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    if (pid < 0) {
      std::fprintf(stderr, "ember launch: fork: %s\n", std::strerror(errno));
      signal_all(ranks, SIGKILL);
      return 1;
    }
    ::setpgid(pid, pid);  // also here: no race with a signal before the child's own call
    ranks[local] = Rank{rank, pid, true, 0};
    streams.push_back(Stream{out[0], rank, stdout, {}});
    streams.push_back(Stream{err[0], rank, stderr, {}});
  }

  int failed_rank = -1, exit_code = 0, forwarded = 0;
  bool stopping = false;
  Clock::time_point kill_at = Clock::time_point::max();
  Clock::time_point drain_until = Clock::time_point::max();
  auto stop_others = [&](int sig) {
    if (!stopping) {
      stopping = true;
      signal_all(ranks, sig);
      kill_at = Clock::now() + std::chrono::milliseconds(
                                   static_cast<int64_t>(opts.kill_grace_s * 1000));
    }
  };

  while (true) {
    std::vector<pollfd> fds{{g_signal_pipe[0], POLLIN, 0}};
    for (const Stream& s : streams) fds.push_back({s.fd, POLLIN, 0});
    ::poll(fds.data(), fds.size(), 50);
    char sig = 0;
    while (::read(g_signal_pipe[0], &sig, 1) == 1) {
      // Forward what we received; the ranks then exit, and we stop the rest after grace.
      forwarded = sig;
      signal_all(ranks, sig);
      if (!stopping) {
        stopping = true;
        kill_at = Clock::now() + std::chrono::milliseconds(
                                     static_cast<int64_t>(opts.kill_grace_s * 1000));
      }
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      Stream& s = streams[i - 1];
      if (s.fd < 0 || fds[i].revents == 0) continue;
      char buf[65536];
      const ssize_t n = ::read(s.fd, buf, sizeof(buf));
      if (n > 0) {
        emit(s, buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        flush_partial(s);
        ::close(s.fd);
        s.fd = -1;
      }
    }
    std::erase_if(streams, [](const Stream& s) { return s.fd < 0; });

    for (Rank& r : ranks) {
      if (!r.running) continue;
      int status = 0;
      if (::waitpid(r.pid, &status, WNOHANG) != r.pid) continue;
      r.running = false;
      r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      // Whatever it started dies with it (its process group).
      ::kill(-r.pid, SIGKILL);
      if (r.code != 0 && failed_rank < 0 && !stopping) {
        failed_rank = r.rank;
        exit_code = r.code;
        std::fprintf(stderr, "ember launch: rank %d exited with code %d%s; stopping the "
                     "other ranks\n", r.rank, r.code,
                     WIFSIGNALED(status) ? (std::string(" (signal ") +
                                            strsignal(WTERMSIG(status)) + ")").c_str() : "");
        std::fflush(stderr);
        stop_others(SIGTERM);
      }
    }
    const bool any_running =
        std::any_of(ranks.begin(), ranks.end(), [](const Rank& r) { return r.running; });
    if (any_running && Clock::now() >= kill_at) {
      signal_all(ranks, SIGKILL);
      kill_at = Clock::time_point::max();
    }
    if (!any_running) {
      // Output still in the pipes comes through; a grandchild holding them open does not
      // keep us waiting for long.
      if (drain_until == Clock::time_point::max()) {
        drain_until = Clock::now() + std::chrono::milliseconds(500);
      }
      if (streams.empty() || Clock::now() >= drain_until) break;
    }
  }
  for (Stream& s : streams) {
    flush_partial(s);
    ::close(s.fd);
  }
  ::close(g_signal_pipe[0]);
  ::close(g_signal_pipe[1]);
  if (failed_rank >= 0) return exit_code;
  if (forwarded != 0) return 128 + forwarded;
  for (const Rank& r : ranks) {
    if (r.code != 0) return r.code;
  }
  return 0;
}

}  // namespace ember::cli
