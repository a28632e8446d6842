// The `ember` command-line tool: parses the command line, prints help the way git does,
// and turns every error into one line on stderr and exit code 1.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "commands.h"
#include "ember/core/version.h"

namespace {

int unknown_command(const std::string& name) {
  std::fprintf(stderr, "ember: '%s' is not an ember command. See 'ember --help'.\n",
               name.c_str());
  return 1;
}

int error(const std::string& message) {
  std::fprintf(stderr, "ember: error: %s\n", message.c_str());
  return 1;
}

// `ember launch [OPTIONS] PROGRAM ARGS...`: PROGRAM is the first word after the launch
// options (each of which takes a value) or after `--`. Removes it and its arguments from
// `args` and returns them, untouched, whatever options they hold.
std::vector<std::string> split_launched_program(std::vector<std::string>& args,
                                               std::vector<std::string>::iterator launch) {
  if (launch == args.end()) return {};
  auto it = launch + 1;
  while (it != args.end()) {
    const std::string& w = *it;
    if (w == "--") {
      std::vector<std::string> program(it + 1, args.end());
      args.erase(it, args.end());
      return program;
    }
    if (w.empty() || w[0] != '-') break;
    const bool takes_value = w != "-h" && w != "--help" && w.find('=') == std::string::npos;
    it += takes_value && it + 1 != args.end() ? 2 : 1;
  }
  std::vector<std::string> program(it, args.end());
  args.erase(it, args.end());
  return program;
}

int run(int argc, char** argv) {
  using namespace ember::cli;

  // Everything after `--` goes, untouched, to the programs `ember bench` runs. `ember
  // launch` takes its program's words as they are, `--` included.
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> passthrough;
  const auto launch_word = std::find(args.begin(), args.end(), std::string("launch"));
  std::vector<std::string> launched = split_launched_program(args, launch_word);
  const auto dashes = std::find(args.begin(), args.end(), std::string("--"));
  const bool has_passthrough = dashes != args.end();
  if (has_passthrough) {
    passthrough.assign(dashes + 1, args.end());
    args.erase(dashes, args.end());
  }

  CLI::App app{"ember: the command-line tool of the ember deep-learning library", "ember"};
  app.set_version_flag("--version", "ember " + ember::version(), "print the version and exit");
  app.require_subcommand(0, 1);

  BenchOptions bench;
  ExportImagesOptions export_images;
  ExportOnnxOptions export_onnx;
  LaunchOptions launch;
  CLI::App* info_cmd = add_info_command(app);
  CLI::App* bench_cmd = add_bench_command(app, bench);
  CLI::App* export_cmd = add_export_images_command(app, export_images);
  CLI::App* onnx_cmd = add_export_onnx_command(app, export_onnx);
  CLI::App* launch_cmd = add_launch_command(app, launch);
  CLI::App* help_cmd = app.add_subcommand("help", "show the help of ember or of one command");
  std::string topic;
  help_cmd->add_option("command", topic, "the command to describe");
  const std::vector<CLI::App*> commands = {info_cmd, bench_cmd, export_cmd, onnx_cmd,
                                          launch_cmd, help_cmd};
  for (CLI::App* c : commands) c->group("Commands");
  app.get_formatter()->label("SUBCOMMAND", "COMMAND");
  // Set after the commands are added, which would otherwise inherit it.
  app.footer("Run 'ember help <command>' or 'ember <command> --help' for a command's options.");
  auto find_command = [&](const std::string& name) -> CLI::App* {
    for (CLI::App* c : commands) {
      if (c->get_name() == name) return c;
    }
    return nullptr;
  };

  // The top level takes only flags, so its first other word names the command; a word
  // that names none gets git's message rather than CLI11's "not expected".
  const auto first = std::find_if(args.begin(), args.end(), [](const std::string& a) {
    return a.empty() || a[0] != '-';
  });
  CLI::App* command = nullptr;
  if (first != args.end()) {
    command = find_command(*first);
    if (command == nullptr) return unknown_command(*first);
  }
  if (has_passthrough && command != bench_cmd) {
    return error("'--' passes arguments to the benchmark programs; only 'ember bench' takes it");
  }
  bench.passthrough = passthrough;

  try {
    std::reverse(args.begin(), args.end());  // CLI11 takes the words last first
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "ember: error: %s\nSee 'ember %s--help'.\n", e.what(),
                 command != nullptr ? (command->get_name() + " ").c_str() : "");
    return 1;
  }

  if (command == nullptr) {
    std::fputs(app.help().c_str(), stdout);
    return 1;
  }
  if (command == help_cmd) {
    if (topic.empty()) {
      std::fputs(app.help().c_str(), stdout);
      return 0;
    }
    CLI::App* described = find_command(topic);
    if (described == nullptr) return unknown_command(topic);
    std::fputs(described->help("ember").c_str(), stdout);
    return 0;
  }
  if (command == info_cmd) return run_info();
  if (command == bench_cmd) return run_bench(bench);
  if (command == onnx_cmd) return run_export_onnx(export_onnx);
  if (command == launch_cmd) {
    launch.command = launched;
    return run_launch(launch);
  }
  return run_export_images(export_images);
}

}  // namespace

int main(int argc, char** argv) {
  // Library errors (a missing data folder, a CUDA failure) become one line, never an
  // uncaught exception.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    return error(e.what());
  } catch (...) {
    return error("unknown exception");
  }
}
