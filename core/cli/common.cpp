#include <boost/program_options.hpp>

#include <cstdlib>
#include <iostream>

#include "cli.hpp"

namespace nexus::cli {

registry::Registry scanned_registry(const Globals& g) {
  registry::RegistryOptions o;
  o.plugin_paths = g.plugin_paths;
  o.probe_timeout_seconds = g.probe_timeout;
  o.use_probe_cache = !g.no_probe_cache && !std::getenv("NEXUS_NO_PROBE_CACHE");
  registry::Registry r(o);
  r.scan();
  return r;
}

bool parse_command(const std::vector<std::string>& args, boost::program_options::options_description& visible,
                   const std::vector<std::pair<std::string, std::string*>>& positionals) {
  namespace po = boost::program_options;
  bool help = false;
  visible.add_options()("help,h", po::bool_switch(&help), "show this help");
  po::options_description hidden;
  po::positional_options_description pos;
  for (const auto& [name, target] : positionals) {
    hidden.add_options()(name.c_str(), po::value(target));
    pos.add(name.c_str(), 1);
  }
  po::options_description all;
  all.add(visible).add(hidden);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
  po::notify(vm);
  if (help) std::cout << visible;
  return !help;
}

}  // namespace nexus::cli
