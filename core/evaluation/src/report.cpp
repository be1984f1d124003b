#include "nexus/evaluation/report.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <ostream>

#include <spdlog/spdlog.h>

#include "nexus/data/caching.hpp"
#include "nexus/model/system.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/run/run_folder.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

// Per class, the mean weight of each teacher the task routes to (load > 0): the others take no
// part in the task and would only add zero columns.
nlohmann::json class_routing_json(const Evaluation& ev, const TaskEvaluation& t) {
  const auto& c = t.class_routing;
  if (c.classes.empty()) return nullptr;
  std::vector<size_t> used;
  nlohmann::json teachers = nlohmann::json::array(), weights = nlohmann::json::array();
  for (size_t i = 0; i < ev.teachers.size() && i < t.load.size(); ++i)
    if (t.load[i] > 0) {
      used.push_back(i);
      teachers.push_back(ev.teachers[i]);
    }
  for (const auto& row : c.weights) {
    nlohmann::json w = nlohmann::json::array();
    for (size_t i : used) w.push_back(i < row.size() ? row[i] : 0.0);
    weights.push_back(w);
  }
  return {{"classes", c.classes}, {"rows", c.rows}, {"teachers", teachers}, {"weights", weights}};
}

}  // namespace

nlohmann::json to_json(const Evaluation& ev) {
  nlohmann::json tasks = nlohmann::json::array();
  for (const auto& t : ev.tasks) {
    nlohmann::json probes = nlohmann::json::object();
    for (const auto& p : t.probes) {
      probes[p.teacher] = {{"val_accuracy", p.val_accuracy}, {"test_accuracy", p.test_accuracy}, {"steps", p.steps}};
      if (!p.report_accuracy.empty()) probes[p.teacher]["report_accuracy"] = p.report_accuracy;
    }
    nlohmann::json reports = nlohmann::json::array();
    for (const auto& r : t.reports)
      reports.push_back({{"split", r.split}, {"rows", r.rows}, {"accuracy", r.accuracy}, {"best_teacher", r.best_teacher},
                         {"best_probe", r.best_probe}, {"retention", r.retention}});
    nlohmann::json routing = nlohmann::json::object();
    for (size_t i = 0; i < ev.teachers.size() && i < t.mean_weight.size(); ++i)
      routing[ev.teachers[i]] = {{"mean_weight", t.mean_weight[i]}, {"load", t.load[i]}};
    nlohmann::json task{{"task", t.task},
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
                     {"shared_variance", t.shared_variance},
                     {"report_splits", reports}};
    if (t.concat_probe)
      task["concat_probe"] = {{"teachers", t.concat_teachers},
                              {"test_accuracy", t.concat_probe->test_accuracy},
                              {"val_accuracy", t.concat_probe->val_accuracy},
                              {"steps", t.concat_probe->steps}};
    if (auto per_class = class_routing_json(ev, t); !per_class.is_null()) task["routing_per_class"] = per_class;
    tasks.push_back(task);
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
    for (const auto& r : t.reports) {  // further test splits: reported, not under the contract
      std::snprintf(line, sizeof line, "%-20s %7lld %9.4f %11.4f  %-16s %9.4f %8s\n", ("  [" + r.split + "]").c_str(),
                    (long long)r.rows, r.accuracy, r.best_probe, ("(" + r.best_teacher + ")").c_str(), r.retention, "report");
      out << line;
    }
    std::string probes = "    probes:";
    for (const auto& p : t.probes) {
      std::snprintf(line, sizeof line, " %s %.4f", p.teacher.c_str(), p.test_accuracy);
      probes += line;
    }
    if (t.concat_probe) {
      std::snprintf(line, sizeof line, "  | all concatenated %.4f", t.concat_probe->test_accuracy);
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

EvaluationReport evaluate_run(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                              const std::string& run_dir, bool progress) {
  EvalOptions eo;
  eo.probe_dir = (fs::path(run_dir) / "probes").string();
  eo.progress = progress;
  EvaluationReport r;
  r.evaluation = evaluate(comp, sys, store, eo);
  r.json = to_json(r.evaluation);
  run::write_json_file((fs::path(run_dir) / "eval.json").string(), r.json.dump(1));
  return r;
}

EvaluationReport evaluate_saved_run(const std::string& run_dir, const std::string& cache_root, bool progress,
                                    const registry::Registry& reg) {
  const auto info = run::read_run_info(run_dir);
  if (const auto note = run::composition_note(info, run_dir); !note.empty()) spdlog::warn("{}", note);
  const auto comp = run::load_run_composition(info, plugin_catalog(reg));
  auto sys = ComposedSystem::build(comp, reg);
  spdlog::info("evaluating {} ({})", run_dir, run::load_run_weights(sys, run_dir));
  cache::FeatureCache store(feature_cache_root(cache_root));
  CachingOptions co;
  co.progress = progress;
  cache_features(comp, sys, store, co);  // reuses what training cached; adds what is missing
  return evaluate_run(comp, sys, store, run_dir, progress);
}

}  // namespace nexus
