// nexus eval RUN: score a trained run against its teachers' own probes (see core/evaluation.hpp).
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <nexus/sha256.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli.hpp"
#include "nexus/config/composition.hpp"
#include "nexus/core/caching.hpp"
#include "nexus/core/evaluation.hpp"
#include "nexus/core/system.hpp"
#include "nexus/core/trainer.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace nexus::cli {

namespace {

nlohmann::json to_json(const Evaluation& ev) {
  nlohmann::json tasks = nlohmann::json::array();
  for (const auto& t : ev.tasks) {
    nlohmann::json probes = nlohmann::json::object();
    for (const auto& p : t.probes)
      probes[p.teacher] = {{"val_accuracy", p.val_accuracy}, {"test_accuracy", p.test_accuracy}, {"steps", p.steps}};
    nlohmann::json routing = nlohmann::json::object();
    for (size_t i = 0; i < ev.teachers.size() && i < t.mean_weight.size(); ++i)
      routing[ev.teachers[i]] = {{"mean_weight", t.mean_weight[i]}, {"load", t.load[i]}};
    tasks.push_back({{"task", t.task},
                     {"head", t.head},
                     {"split", t.split},
                     {"rows", t.rows},
                     {"accuracy", t.accuracy},
                     {"probes", probes},
                     {"best_teacher", t.best_teacher},
                     {"best_probe", t.best_probe},
                     {"retention", t.retention},
                     {"contract", t.contract},
                     {"violated", t.violated},
                     {"routing", routing},
                     {"routing_entropy", t.routing_entropy},
                     {"shared_variance", t.shared_variance}});
  }
  return {{"teachers", ev.teachers}, {"tasks", tasks}, {"violations", ev.violations}, {"ok", ev.violations.empty()}};
}

void print_table(const Evaluation& ev, std::ostream& out) {
  char line[512];
  std::snprintf(line, sizeof line, "%-20s %7s %9s %11s  %-16s %9s %8s\n", "task", "rows", "composite", "best probe",
                "(teacher)", "retention", "contract");
  out << line;
  for (const auto& t : ev.tasks) {
    std::snprintf(line, sizeof line, "%-20s %7lld %9.4f %11.4f  %-16s %9.4f %8s%s\n", t.task.c_str(), (long long)t.rows,
                  t.accuracy, t.best_probe, ("(" + t.best_teacher + ")").c_str(), t.retention,
                  t.contract > 0 ? std::to_string(t.contract).substr(0, 4).c_str() : "-",
                  t.violated ? "  VIOLATED" : "");
    out << line;
    std::string probes = "    probes:";
    for (const auto& p : t.probes) {
      std::snprintf(line, sizeof line, " %s %.4f", p.teacher.c_str(), p.test_accuracy);
      probes += line;
    }
    out << probes << "\n";
    std::string routing = "    routing:";
    for (size_t i = 0; i < ev.teachers.size() && i < t.mean_weight.size(); ++i) {
      if (t.load[i] == 0) continue;  // a teacher that does not take this task's inputs
      std::snprintf(line, sizeof line, " %s %.3f", ev.teachers[i].c_str(), t.mean_weight[i]);
      routing += line;
    }
    std::snprintf(line, sizeof line, "  (entropy %.3f nats)  shared-space variance %.4g\n", std::max(0.0, t.routing_entropy),
                  t.shared_variance);
    out << routing << line;
  }
  for (const auto& v : ev.violations) out << "retention contract violated: " << v << "\n";
}

}  // namespace

void write_run_info(const std::string& run_dir, const std::string& composition_file,
                    const std::vector<std::string>& overrides, const nlohmann::json* extra,
                    const std::string& composition_recorded) {
  fs::create_directories(run_dir);
  const auto path = fs::absolute(composition_file).lexically_normal().string();
  const auto recorded = composition_recorded.empty() ? path : fs::absolute(composition_recorded).lexically_normal().string();
  nlohmann::json j{{"format", 1}, {"composition", recorded}, {"composition_sha256", sha256_file(path)}, {"overrides", overrides}};
  if (extra) j.update(*extra);
  const auto tmp = (fs::path(run_dir) / "run.json.tmp").string();
  std::ofstream(tmp) << j.dump(1) << "\n";
  fs::rename(tmp, fs::path(run_dir) / "run.json");
}

RunInfo read_run_info(const std::string& run_dir) {
  const auto info_file = fs::path(run_dir) / "run.json";
  if (!fs::exists(info_file))
    throw UsageError(run_dir + " is not a run folder: no run.json (runs are written by `nexus train FILE --run DIR`)");
  nlohmann::json info;
  try {
    std::ifstream in(info_file);
    info = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error("corrupt " + info_file.string() + ": " + e.what());
  }
  RunInfo r;
  r.composition = info.at("composition");
  r.overrides = info.value("overrides", std::vector<std::string>{});
  if (!fs::exists(r.composition)) throw UsageError("the composition of run " + run_dir + ", " + r.composition + ", no longer exists");
  r.changed = sha256_file(r.composition) != info.value("composition_sha256", "");
  return r;
}

int evaluate_and_report(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                        const std::string& run_dir, bool json, nlohmann::json* json_out) {
  EvalOptions eo;
  eo.probe_dir = (fs::path(run_dir) / "probes").string();
  eo.progress = !json;
  const auto ev = evaluate(comp, sys, store, eo);
  const auto j = to_json(ev);
  const auto tmp = (fs::path(run_dir) / "eval.json.tmp").string();
  std::ofstream(tmp) << j.dump(1) << "\n";
  fs::rename(tmp, fs::path(run_dir) / "eval.json");
  if (json_out) *json_out = j;
  if (!json) print_table(ev, std::cout << std::flush);
  else
    for (const auto& v : ev.violations) spdlog::error("retention contract violated: {}", v);
  return ev.violations.empty() ? kOk : kRuntimeFailure;
}

int cmd_eval(const Globals& g, const std::vector<std::string>& args) {
  bool json = false;
  std::string run_dir, cache_root;
  po::options_description opts(
      "Usage: nexus eval RUN [--json]\n\n"
      "Scores a trained run on each task's test split beside every teacher's own linear probe\n"
      "(same cached features, same step budget), prints retention = composite / best probe and\n"
      "routing statistics, writes RUN/eval.json, and exits 1 naming every task whose retention is\n"
      "below the composition's contract.\n\nOptions");
  opts.add_options()("cache", po::value(&cache_root), "feature cache folder (default $NEXUS_CACHE_DIR/features)")
      ("json", po::bool_switch(&json), "machine-readable results on stdout");
  if (!parse_command(args, opts, {{"run", &run_dir}})) return kOk;
  if (run_dir.empty()) throw UsageError("eval needs a RUN folder (written by `nexus train`)");
  const auto info = read_run_info(run_dir);
  const auto& file = info.composition;
  const auto& overrides = info.overrides;
  if (info.changed) spdlog::warn("{} changed since the run was trained; evaluating with its current content", file);

  const auto reg = scanned_registry(g);
  const auto comp = config::load_composition(file, overrides, plugin_catalog(reg));
  auto sys = ComposedSystem::build(comp, reg);
  const auto ckpt = load_run_weights(sys, run_dir);
  spdlog::info("evaluating {} ({})", run_dir, ckpt);

  cache::FeatureCache store(feature_cache_root(cache_root));
  CachingOptions co;
  co.progress = !json;
  cache_features(comp, sys, store, co);  // reuses what training cached; adds what is missing
  nlohmann::json j;
  const int rc = evaluate_and_report(comp, sys, store, run_dir, json, &j);
  if (json) std::cout << j.dump(2) << "\n";
  return rc;
}

}  // namespace nexus::cli
