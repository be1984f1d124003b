// nexus validate FILE / nexus forward FILE
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <iostream>

#include "cli.hpp"
#include "nexus/config/composition.hpp"
#include "nexus/model/inference.hpp"
#include "nexus/model/system.hpp"

namespace po = boost::program_options;

namespace nexus::cli {
namespace {

struct ComposeArgs {
  std::string file;
  std::vector<std::string> overrides;
  bool json = false;
  int64_t batch = 4;
};

// Parses FILE [--set k=v]... [--json]; returns false if --help was printed.
bool parse(const std::string& usage, const std::vector<std::string>& args, ComposeArgs& a, bool with_batch) {
  po::options_description opts(usage + "\n\nOptions");
  opts.add_options()("set", po::value(&a.overrides)->composing(), "override a value, e.g. --set trainer.lr=1e-3 (repeatable)")
      ("json", po::bool_switch(&a.json), "machine-readable output");
  if (with_batch) opts.add_options()("batch", po::value(&a.batch)->default_value(4), "example batch size");
  if (!parse_command(args, opts, {{"file", &a.file}})) return false;
  if (a.file.empty()) throw UsageError("missing composition FILE");
  return true;
}

nlohmann::json diagnostics_json(const config::ConfigError& e) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& d : e.diagnostics())
    out.push_back({{"file", d.loc.file}, {"line", d.loc.line}, {"column", d.loc.column}, {"message", d.message}, {"hint", d.hint}});
  return out;
}

}  // namespace

int cmd_validate(const Globals& g, const std::vector<std::string>& args) {
  ComposeArgs a;
  if (!parse("Usage: nexus validate FILE [--set key=value]... [--json]", args, a, false)) return kOk;
  const auto reg = scanned_registry(g);
  try {
    const auto comp = config::load_composition(a.file, a.overrides, plugin_catalog(reg));
    if (a.json)
      std::cout << nlohmann::json{{"file", a.file}, {"valid", true}, {"teachers", comp.teachers.size()}, {"heads", comp.heads.size()}}.dump(2) << "\n";
    else
      std::cout << a.file << ": ok (" << comp.teachers.size() << " teachers, " << comp.heads.size() << " heads, "
                << comp.losses.size() << " losses, router " << comp.router.router.plugin << ")\n";
    return kOk;
  } catch (const config::ConfigError& e) {
    if (!a.json) throw;
    std::cout << nlohmann::json{{"file", a.file}, {"valid", false}, {"errors", diagnostics_json(e)}}.dump(2) << "\n";
    return kBadInput;
  }
}

int cmd_forward(const Globals& g, const std::vector<std::string>& args) {
  ComposeArgs a;
  if (!parse("Usage: nexus forward FILE [--set key=value]... [--batch N] [--json]", args, a, true)) return kOk;
  if (a.batch < 1) throw UsageError("--batch must be >= 1");
  const auto reg = scanned_registry(g);
  const auto comp = config::load_composition(a.file, a.overrides, plugin_catalog(reg));
  auto sys = ComposedSystem::build(comp, reg);
  nlohmann::json out = {{"composition", comp.name}, {"batches", nlohmann::json::array()}};
  for (const auto& e : forward_examples(comp, sys, a.batch))
    out["batches"].push_back({{"modality", e.modality},
                              {"batch", e.batch},
                              {"teachers_run", e.teachers_run},
                              {"shared", e.shared_shape},
                              {"shared_finite", e.shared_finite},
                              {"mean_routing_weights", e.mean_routing_weights},
                              {"heads", e.heads}});
  if (a.json) {
    std::cout << out.dump(2) << "\n";
    return kOk;
  }
  std::cout << "composition '" << comp.name << "': " << sys.teachers().size() << " teachers -> shared space "
            << sys.shared_dim() << " -> " << sys.heads().size() << " heads\n";
  for (const auto& b : out["batches"])
    std::cout << "  " << b["modality"].get<std::string>() << " batch of " << a.batch << ": ran " << b["teachers_run"].dump()
              << ", mean routing weights " << b["mean_routing_weights"].dump() << ", heads " << b["heads"].dump() << "\n";
  return kOk;
}

}  // namespace nexus::cli
