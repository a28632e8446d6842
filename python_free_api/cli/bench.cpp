// `ember bench`: runs every bench_* program with --json into one folder, then prints one
// table combining their reports (the JSON layout is benchmarks/harness.h's).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "commands.h"
#include "ember/core/base/error.h"

extern char** environ;

namespace ember::cli {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Note [Finding the benchmark programs]
// The programs are looked for next to the tool: in the build tree the tool is
// <build>/bin/ember and the programs <build>/benchmarks/bench_*; installed, the tool is
// <prefix>/bin/ember and the programs <prefix>/libexec/ember/bench_*. --programs DIR
// names another folder. The tool's own place comes from /proc/self/exe, so it does not
// matter how it was started (PATH, a relative path, a link).
std::vector<fs::path> default_program_dirs() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const fs::path bin = exe.parent_path();
  return {(bin / ".." / "benchmarks").lexically_normal(),
          (bin / EMBER_CLI_LIBEXEC_FROM_BIN).lexically_normal()};
}

std::vector<fs::path> programs_in(const fs::path& dir) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (name.rfind("bench_", 0) == 0 && it->is_regular_file(type_ec) &&
        ::access(it->path().c_str(), X_OK) == 0) {
      found.push_back(it->path());
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? sep : "") + parts[i];
  return s;
}

// "bench_conv" -> "conv".
std::string short_name(const fs::path& program) {
  return program.filename().string().substr(std::strlen("bench_"));
}

std::vector<fs::path> find_programs(const BenchOptions& opts) {
  const std::vector<fs::path> dirs = opts.programs_dir.empty()
                                         ? default_program_dirs()
                                         : std::vector<fs::path>{fs::path(opts.programs_dir)};
  std::vector<fs::path> programs;
  for (const fs::path& dir : dirs) {
    programs = programs_in(dir);
    if (!programs.empty()) break;
  }
  if (programs.empty()) {
    std::vector<std::string> names;
    for (const fs::path& d : dirs) names.push_back(d.string());
    throw IOError("no benchmark programs (bench_*) found in " + join(names, " or ") +
                  (opts.programs_dir.empty()
                       ? "; build them with -DEMBER_BUILD_BENCHMARKS=ON, or name their "
                         "folder with --programs DIR"
                       : ""));
  }
  if (opts.only.empty()) return programs;

  std::vector<fs::path> chosen;
  for (std::string want : opts.only) {
    if (want.rfind("bench_", 0) == 0) want = want.substr(std::strlen("bench_"));
    auto it = std::find_if(programs.begin(), programs.end(),
                           [&](const fs::path& p) { return short_name(p) == want; });
    if (it == programs.end()) {
      std::vector<std::string> names;
      for (const fs::path& p : programs) names.push_back(short_name(p));
      throw Error("there is no benchmark '" + want + "' (there are: " +
                  join(names, ", ") + ")");
    }
    if (std::find(chosen.begin(), chosen.end(), *it) == chosen.end()) chosen.push_back(*it);
  }
  return chosen;
}

fs::path make_json_dir(const BenchOptions& opts) {
  if (!opts.json_dir.empty()) {
    std::error_code ec;
    fs::create_directories(opts.json_dir, ec);
    if (ec) throw IOError("cannot create " + opts.json_dir + ": " + ec.message());
    return fs::path(opts.json_dir);
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                        "/ember-bench-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw IOError("cannot create a temporary folder " + pattern + ": " +
                  std::strerror(errno));
  }
  return fs::path(pattern);
}

struct Exit {
  int code = 0;         // the exit status, or 128 + the signal
  std::string problem;  // "" when it exited 0
};

// Runs `program args...` and waits for it. With `log`, its stdout and stderr go there.
Exit run_program(const fs::path& program, const std::vector<std::string>& args,
                 const fs::path* log) {
  std::vector<std::string> words = {program.string()};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  int rc = posix_spawn_file_actions_init(&actions);
  if (rc != 0) throw Error(std::string("posix_spawn_file_actions_init: ") + std::strerror(rc));
  if (log != nullptr) {
    rc = posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log->c_str(),
                                          O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  }
  pid_t pid = 0;
  if (rc == 0) {
    std::fflush(stdout);  // the program writes to the same terminal after what we printed
    std::fflush(stderr);
    rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  }
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw IOError("cannot run " + program.string() + ": " + std::strerror(rc));

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      throw Error("waiting for " + program.string() + ": " + std::strerror(errno));
    }
  }
  Exit e;
  if (WIFEXITED(status)) {
    e.code = WEXITSTATUS(status);
    if (e.code != 0) e.problem = "exit code " + std::to_string(e.code);
  } else if (WIFSIGNALED(status)) {
    e.code = 128 + WTERMSIG(status);
    e.problem = std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                strsignal(WTERMSIG(status)) + ")";
  } else {
    e.code = 1;
    e.problem = "stopped";
  }
  return e;
}

// The last `n` lines of a file, for a failed program's log.
std::vector<std::string> tail(const fs::path& file, size_t n) {
  std::ifstream in(file);
  std::deque<std::string> lines;
  for (std::string l; std::getline(in, l);) {
    lines.push_back(l);
    if (lines.size() > n) lines.pop_front();
  }
  return {lines.begin(), lines.end()};
}

struct Outcome {
  std::string name;     // "conv"
  std::string problem;  // why it failed; "" when it did not
  std::string skipped;  // why it was skipped; "" when it ran
  Json report;          // the parsed JSON report (null when there is none)
};

std::string number(const Json& v, const char* format) {
  if (!v.is_number()) return "-";
  const double d = v.get<double>();
  if (std::isnan(d)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, format, d);
  return buf;
}

std::string text(const Json& row, const char* key) {
  auto it = row.find(key);
  return it != row.end() && it->is_string() ? it->get<std::string>() : "";
}

const Json& rows_of(const Json& report) {
  static const Json kNone = Json::array();
  if (!report.is_object()) return kNone;
  auto it = report.find("rows");
  return it != report.end() && it->is_array() ? *it : kNone;
}

void print_device(const Json& report) {
  auto it = report.find("device");
  if (it == report.end() || !it->is_object() || it->empty()) return;
  const Json& d = *it;
  std::printf("device: %s (compute capability %s), driver API %s, runtime %s, cuBLAS %s, "
              "cuDNN %s\n",
              text(d, "name").c_str(), text(d, "compute_capability").c_str(),
              text(d, "driver_api_version").c_str(), text(d, "runtime_version").c_str(),
              text(d, "cublas_version").c_str(), text(d, "cudnn_version").c_str());
}

// One Markdown table of every program's rows, as benchmarks/harness.h prints each.
void print_table(const std::vector<Outcome>& outcomes) {
  std::printf("| benchmark | case | ember ms | baseline | baseline ms | ratio | throughput |\n");
  std::printf("|---|---|---:|---|---:|---:|---:|\n");
  int rows = 0, above_target = 0;
  for (const Outcome& o : outcomes) {
    for (const Json& row : rows_of(o.report)) {
      if (!row.is_object()) continue;
      std::string throughput = number(row.value("throughput", Json()), "%.1f");
      if (throughput != "-") throughput += " " + text(row, "unit");
      const std::string note = text(row, "note");
      if (!note.empty()) throughput += " (" + note + ")";
      const std::string baseline = text(row, "baseline");
      std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", o.name.c_str(),
                  text(row, "name").c_str(), number(row.value("ember_ms", Json()), "%.4g").c_str(),
                  baseline.empty() ? "-" : baseline.c_str(),
                  number(row.value("baseline_ms", Json()), "%.4g").c_str(),
                  number(row.value("ratio", Json()), "%.3f").c_str(), throughput.c_str());
      ++rows;
      if (row.value("within_target", true) == false) ++above_target;
    }
  }
  std::printf("\n%d rows; ratio = ember ms / baseline ms (below 1: ember is faster)", rows);
  if (above_target > 0) std::printf("; %d above the 1.05 target", above_target);
  std::printf("\n");
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app, BenchOptions& opts) {
  CLI::App* cmd = app.add_subcommand(
      "bench", "run the GPU benchmarks (ember against raw cuBLAS/cuDNN) and print one table");
  cmd->add_option("--json", opts.json_dir,
                  "folder for the JSON reports, one per benchmark (default: a new temporary "
                  "folder)")
      ->type_name("DIR");
  cmd->add_option("--programs", opts.programs_dir,
                  "folder holding the bench_* programs (default: <build>/benchmarks next to "
                  "this tool, or the installed libexec/ember)")
      ->type_name("DIR");
  cmd->add_option("--only", opts.only, "run only these benchmarks (e.g. --only conv matmul)")
      ->type_name("NAME");
  cmd->add_flag("-v,--verbose", opts.verbose, "show the programs' own output as they run");
  cmd->footer("Arguments after '--' go to every benchmark program, e.g. "
              "'ember bench -- --reps 50 --warmup 5'.");
  return cmd;
}

int run_bench(const BenchOptions& opts) {
  for (const std::string& a : opts.passthrough) {
    if (a == "--json" || a.rfind("--json=", 0) == 0) {
      throw Error("ember bench gives each program its own --json; use "
                  "'ember bench --json DIR'");
    }
  }
  const std::vector<fs::path> programs = find_programs(opts);
  const fs::path json_dir = make_json_dir(opts);

  std::vector<Outcome> outcomes;
  for (const fs::path& program : programs) {
    Outcome o;
    o.name = short_name(program);
    const fs::path json = json_dir / (program.filename().string() + ".json");
    const fs::path log = json_dir / (program.filename().string() + ".log");
    std::error_code ec;
    fs::remove(json, ec);  // a report left from an earlier run must not pass for this one

    std::vector<std::string> args = {"--json", json.string()};
    args.insert(args.end(), opts.passthrough.begin(), opts.passthrough.end());
    if (opts.verbose) {
      std::printf("== %s\n", program.filename().c_str());
    } else {
      std::printf("%-24s ", program.filename().c_str());
    }
    const auto start = std::chrono::steady_clock::now();
    const Exit exit = run_program(program, args, opts.verbose ? nullptr : &log);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    std::ifstream in(json);
    if (in) {
      o.report = Json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (o.report.is_discarded() || !o.report.is_object()) {
        o.report = Json();
        o.problem = "its JSON report " + json.string() + " is not valid JSON";
      }
    } else if (exit.problem.empty()) {
      o.problem = "it wrote no JSON report to " + json.string();
    }
    if (!exit.problem.empty()) o.problem = exit.problem;
    if (o.problem.empty() && o.report.contains("skipped")) {
      const Json& why = o.report["skipped"];
      o.skipped = why.is_string() ? why.get<std::string>() : "no reason given";
    }
    if (o.problem.empty() && o.report.contains("failures") && o.report["failures"].is_array() &&
        !o.report["failures"].empty()) {
      o.problem = std::to_string(o.report["failures"].size()) + " correctness check(s) failed";
    }

    if (opts.verbose) std::printf("== %s: ", program.filename().c_str());
    if (!o.problem.empty()) {
      std::printf("FAILED (%s)\n", o.problem.c_str());
      if (!opts.verbose) {
        for (const std::string& l : tail(log, 15)) std::printf("    %s\n", l.c_str());
        std::printf("    (its whole output: %s)\n", log.c_str());
      }
    } else if (!o.skipped.empty()) {
      std::printf("skipped (no GPU)\n");
    } else {
      std::printf("%zu rows in %.1f s\n", rows_of(o.report).size(), seconds);
    }
    std::fflush(stdout);
    outcomes.push_back(std::move(o));
  }

  int failed = 0, skipped = 0;
  const Outcome* measured = nullptr;  // the first with rows, for the device line
  for (const Outcome& o : outcomes) {
    if (!o.problem.empty()) ++failed;
    if (!o.skipped.empty()) ++skipped;
    if (measured == nullptr && !rows_of(o.report).empty()) measured = &o;
  }
  std::printf("\n");
  if (measured != nullptr) {
    print_device(measured->report);
    print_table(outcomes);
  }
  std::printf("JSON reports: %s\n", json_dir.c_str());

  const int total = static_cast<int>(outcomes.size());
  if (failed > 0) {
    std::printf("ember bench: %d of %d benchmark(s) failed\n", failed, total);
    return 1;
  }
  if (skipped == total) {
    const std::string which =
        total == 1 ? "the benchmark was" : "all " + std::to_string(total) + " benchmarks were";
    std::printf("ember bench: %s skipped: no GPU (%s)\n", which.c_str(),
                outcomes.front().skipped.c_str());
  } else if (skipped > 0) {
    std::printf("ember bench: %d of %d benchmark(s) skipped: no GPU\n", skipped, total);
  }
  return 0;
}

}  // namespace ember::cli
