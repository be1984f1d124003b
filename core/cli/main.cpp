// nexus: compose frozen pretrained teachers through trainable towers and a learned router.
#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli.hpp"
#include "nexus/abi.h"
#include "nexus/config/diagnostic.hpp"
#include "nexus/model/compute_threads.hpp"
#include "nexus/version.hpp"

namespace po = boost::program_options;
using namespace nexus::cli;

namespace {

std::string command_list() {
  size_t width = 0;
  for (const auto& c : commands()) width = std::max(width, std::string(c.synopsis).size());
  std::ostringstream out;
  out << "Commands:\n";
  for (const auto& c : commands()) out << "  " << std::left << std::setw(int(width) + 2) << c.synopsis << c.summary << "\n";
  out << "Run `nexus COMMAND --help` for a command's options.\n";
  return out.str();
}

// Parses the global options and dispatches to the command; returns its exit code.
int run(int argc, char** argv) {
  Globals g;
  po::options_description global("Usage: nexus [global options] COMMAND [command options]\n\nGlobal options");
  global.add_options()("help,h", "show this help")
      ("plugin-path", po::value(&g.plugin_paths)->composing(), "plugin directory searched first (repeatable)")
      ("log-level", po::value(&g.log_level)->default_value("warn"), "trace, debug, info, warn, error or off")
      ("probe-timeout", po::value(&g.probe_timeout)->default_value(30.0), "seconds a plugin probe may take")
      ("no-probe-cache", po::bool_switch(&g.no_probe_cache), "probe every plugin again")
      ("compute-threads", po::value(&g.compute_threads)->default_value(0),
       "threads for libtorch's CPU work per process (0: OMP_NUM_THREADS if set, else all cores; under --nproc, cores / N)");
  po::options_description hidden;
  hidden.add_options()("command", po::value<std::string>())("args", po::value<std::vector<std::string>>());
  po::options_description all;
  all.add(global).add(hidden);
  po::positional_options_description pos;
  pos.add("command", 1).add("args", -1);
  po::variables_map vm;
  po::parsed_options parsed(&all);
  try {
    parsed = po::command_line_parser(argc, argv).options(all).positional(pos).allow_unregistered().run();
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  spdlog::set_level(spdlog::level::from_str(g.log_level));
  const auto threads = nexus::apply_compute_threads(g.compute_threads);
  spdlog::debug("compute threads: {} ({})", threads.count, threads.reason);
  if (!vm.count("command")) {
    std::cout << global << "\n" << command_list();
    return vm.count("help") ? kOk : kBadInput;
  }
  const auto name = vm["command"].as<std::string>();
  // Everything after the command word (including its own --options) goes to the command.
  auto rest = po::collect_unrecognized(parsed.options, po::include_positional);
  rest.erase(rest.begin());
  if (vm.count("help")) rest.push_back("--help");
  for (const auto& c : commands())
    if (name == c.name) return c.run(g, rest);
  std::cerr << "nexus: unknown command '" << name << "'\n\n" << command_list();
  return kBadInput;
}

}  // namespace


int main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("nexus");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%l] %v");
  try {
    return run(argc, argv);
  } catch (const nexus::InputError& e) {
    // A composition's diagnostics are complete lines ("file:line:col: error: ..."); the rest is one sentence.
    if (dynamic_cast<const nexus::config::ConfigError*>(&e)) std::cerr << e.what() << "\n";
    else std::cerr << "nexus: " << e.what() << "\n";
    return kBadInput;
  } catch (const std::exception& e) {
    std::cerr << "nexus: error: " << e.what() << "\n";
    return kRuntimeFailure;
  }
}

namespace nexus::cli {

int cmd_version(const Globals&, const std::vector<std::string>&) {
  std::cout << "nexus " << NEXUS_VERSION << " (plugin ABI " << NEXUS_ABI_MAJOR << "." << NEXUS_ABI_MINOR << ")\n";
  return kOk;
}

}  // namespace nexus::cli
