// nexus validate FILE / nexus forward FILE
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <nexus/plugin_api.hpp>

#include <iostream>
#include <set>

#include "cli.hpp"
#include "nexus/config/composition.hpp"
#include "nexus/core/system.hpp"

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
  torch::NoGradGuard no_grad;
  nlohmann::json out = {{"composition", comp.name}, {"batches", nlohmann::json::array()}};
  std::set<std::string> done;
  for (const auto& slot : sys.teachers()) {
    const std::string modality = to_string(slot.teacher->modality());
    if (!done.insert(modality).second) continue;
    // One example batch per modality, made by the first teacher that takes it.
    // A task-conditioned router needs a task: the first one whose head reads this modality's data.
    std::string task;
    for (const auto& h : comp.heads)
      if (task.empty() && comp.tasks.count(h.task) && comp.tasks.at(h.task).modality == modality) task = h.task;
    if (task.empty() && !sys.router_contexts().empty() && comp.router.condition == "task") task = sys.router_contexts().front();
    auto result = sys.forward(slot.teacher->example_input(a.batch), modality, task);
    nlohmann::json heads;
    for (const auto& [name, t] : result.heads) heads[name] = {t.size(0), t.size(1)};
    auto mean_w = result.weights.mean(0).contiguous();
    std::vector<double> weights(size_t(mean_w.numel()));
    for (int64_t i = 0; i < mean_w.numel(); ++i) weights[size_t(i)] = mean_w[i].item<double>();
    out["batches"].push_back({{"modality", modality},
                              {"batch", a.batch},
                              {"teachers_run", result.ran},
                              {"shared", {result.shared.size(0), result.shared.size(1)}},
                              {"shared_finite", result.shared.isfinite().all().item<bool>()},
                              {"mean_routing_weights", weights},
                              {"heads", heads}});
  }
  if (a.json) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "composition '" << comp.name << "': " << sys.teachers().size() << " teachers -> shared space "
              << sys.shared_dim() << " -> " << sys.heads().size() << " heads\n";
    for (const auto& b : out["batches"]) {
      std::cout << "  " << b["modality"].get<std::string>() << " batch of " << a.batch << ": ran " << b["teachers_run"].dump()
                << ", mean routing weights " << b["mean_routing_weights"].dump() << ", heads " << b["heads"].dump() << "\n";
    }
  }
  return kOk;
}

}  // namespace nexus::cli
