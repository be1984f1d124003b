#include <boost/program_options.hpp>

#include <cstdlib>
#include <iostream>

#include "cli.hpp"

namespace nexus::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"plugins", "plugins list|info", "show the plugins found on the search path", cmd_plugins},
      {"validate", "validate FILE", "check a composition without running it", cmd_validate},
      {"forward", "forward FILE", "build a composition and run one forward pass", cmd_forward},
      {"cache", "cache build|merge|ls|verify|gc", "fill, inspect, check and clean the teacher feature cache", cmd_cache},
      {"train", "train FILE", "cache features, train towers, router and heads, then evaluate", cmd_train},
      {"eval", "eval RUN", "score a run against its teachers' own probes (retention)", cmd_eval},
      {"profile", "profile FILE|RUN", "teachers' spectra, CKA redundancy and tower sizes, from the feature cache", cmd_profile},
      {"report", "report RUN", "one self-contained HTML page of plots: curves, retention, routing, spectra", cmd_report},
      {"add-teacher", "add-teacher RUN", "add a teacher to a trained run, training only its tower and the router", cmd_add_teacher},
      {"remove-teacher", "remove-teacher RUN", "drop a teacher from a trained run; report the tasks that are lost", cmd_remove_teacher},
      {"distill", "distill RUN", "consolidate a trained run into one teacher-free student (HF folder + run)", cmd_distill},
      {"convert-run", "convert-run RUN", "rewrite a trusted run's old pickled checkpoints as safetensors", cmd_convert_run},
      {"serve", "serve RUN", "serve a run over HTTP/JSON; swap runs in without a restart", cmd_serve},
      {"version", "version", "print the version and plugin ABI", cmd_version},
  };
  return table;
}

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
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (help) std::cout << visible;
  return !help;
}

}  // namespace nexus::cli
