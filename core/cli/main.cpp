// nexus: compose frozen pretrained teachers through trainable towers and a learned router.
#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <iostream>

#include "cli.hpp"
#include "nexus/config/diagnostic.hpp"
#include "nexus/core/dataset.hpp"
#include "nexus/core/device.hpp"
#include "nexus/abi.h"
#include "nexus/version.hpp"

namespace po = boost::program_options;
using namespace nexus::cli;

namespace {

const char* kCommands =
    "Commands:\n"
    "  plugins list|info    show the plugins found on the search path\n"
    "  validate FILE        check a composition without running it\n"
    "  forward FILE         build a composition and run one forward pass\n"
    "  cache build|ls|verify|gc  fill, inspect, check and clean the teacher feature cache\n"
    "  train FILE           cache features, train towers, router and heads, then evaluate\n"
    "  eval RUN             score a run against its teachers' own probes (retention)\n"
    "  add-teacher RUN      add a teacher to a trained run, training only its tower and the router\n"
    "  remove-teacher RUN   drop a teacher from a trained run; report the tasks that are lost\n"
    "  serve RUN            serve a run over HTTP/JSON; swap runs in without a restart\n"
    "  version              print the version and plugin ABI\n"
    "Run `nexus COMMAND --help` for a command's options.\n";

}  // namespace

int main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("nexus");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%l] %v");

  Globals g;
  std::string log_level = "warn";
  po::options_description global("Usage: nexus [global options] COMMAND [command options]\n\nGlobal options");
  global.add_options()("help,h", "show this help")
      ("plugin-path", po::value(&g.plugin_paths)->composing(), "plugin directory searched first (repeatable)")
      ("log-level", po::value(&log_level)->default_value("warn"), "trace, debug, info, warn, error or off")
      ("probe-timeout", po::value(&g.probe_timeout)->default_value(30.0), "seconds a plugin probe may take")
      ("no-probe-cache", po::bool_switch(&g.no_probe_cache), "probe every plugin again");
  po::options_description hidden;
  hidden.add_options()("command", po::value<std::string>())("args", po::value<std::vector<std::string>>());
  po::options_description all;
  all.add(global).add(hidden);
  po::positional_options_description pos;
  pos.add("command", 1).add("args", -1);

  try {
    po::variables_map vm;
    auto parsed = po::command_line_parser(argc, argv).options(all).positional(pos).allow_unregistered().run();
    po::store(parsed, vm);
    po::notify(vm);
    spdlog::set_level(spdlog::level::from_str(log_level));
    if (!vm.count("command")) {
      std::cout << global << "\n" << kCommands;
      return vm.count("help") ? kOk : kBadInput;
    }
    const auto command = vm["command"].as<std::string>();
    // Everything after the command word (including its own --options) goes to the command.
    auto rest = po::collect_unrecognized(parsed.options, po::include_positional);
    rest.erase(rest.begin());
    if (vm.count("help")) rest.push_back("--help");
    if (command == "plugins") return cmd_plugins(g, rest);
    if (command == "validate") return cmd_validate(g, rest);
    if (command == "forward") return cmd_forward(g, rest);
    if (command == "cache") return cmd_cache(g, rest);
    if (command == "train") return cmd_train(g, rest);
    if (command == "eval") return cmd_eval(g, rest);
    if (command == "add-teacher") return cmd_add_teacher(g, rest);
    if (command == "remove-teacher") return cmd_remove_teacher(g, rest);
    if (command == "serve") return cmd_serve(g, rest);
    if (command == "version") {
      std::cout << "nexus " << NEXUS_VERSION << " (plugin ABI " << NEXUS_ABI_MAJOR << "." << NEXUS_ABI_MINOR << ")\n";
      return kOk;
    }
    std::cerr << "nexus: unknown command '" << command << "'\n\n" << kCommands;
    return kBadInput;
  } catch (const po::error& e) {
    std::cerr << "nexus: " << e.what() << "\n";
    return kBadInput;
  } catch (const UsageError& e) {
    std::cerr << "nexus: " << e.what() << "\n";
    return kBadInput;
  } catch (const nexus::config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
    return kBadInput;
  } catch (const nexus::DeviceError& e) {
    std::cerr << "nexus: " << e.what() << "\n";
    return kBadInput;
  } catch (const nexus::DatasetError& e) {
    std::cerr << "nexus: " << e.what() << "\n";
    return kBadInput;
  } catch (const std::exception& e) {
    std::cerr << "nexus: error: " << e.what() << "\n";
    return kRuntimeFailure;
  }
}
