// Scoring a trained run: the composite per task, each teacher's own linear probe on the same
// cached features with the same budget, retention against the composition's contract, routing.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nexus/config/composition.hpp"

namespace nexus {
class ComposedSystem;
namespace cache {
class FeatureCache;
}

struct ProbeScore {
  std::string teacher;
  double val_accuracy = 0, test_accuracy = 0;
  int64_t steps = 0;
  bool reused = false;  // read from the run's probes/ folder instead of trained now
  std::map<std::string, double> report_accuracy;  // per report split (TaskSpec::report_splits)
};

// A report split of a task: scored like the test split, reported beside it, not contracted.
struct ReportSplit {
  std::string split;
  int64_t rows = 0;
  double accuracy = 0, best_probe = 0, retention = 0;
  std::string best_teacher;
};

// Mean routing weight per teacher over the test inputs of each class: whether the router sends
// some classes to one teacher and others to another.
struct ClassRouting {
  std::vector<std::string> classes;
  std::vector<int64_t> rows;                 // per class
  std::vector<std::vector<double>> weights;  // [class][teacher], composition order
};

struct TaskEvaluation {
  std::string task, head, split;        // split: the cache's name for it, e.g. "test[:1000]"
  int64_t rows = 0;
  double accuracy = 0;                  // the composite on the test split
  std::vector<ProbeScore> probes;       // teachers that take the task's modality, composition order
  // The baseline a user tries first: one probe on all those teachers' features concatenated
  // (standardised, same cache, same budget); absent when only one teacher takes the task.
  std::optional<ProbeScore> concat_probe;
  std::vector<std::string> concat_teachers;
  std::string best_teacher;
  double best_probe = 0;
  double retention = 0;                 // accuracy / best_probe
  double contract = 0;                  // minimum retention; 0 = none
  bool violated = false;
  std::vector<double> mean_weight;      // per teacher (composition order): mean routing weight
  std::vector<double> load;             // per teacher: fraction of inputs that selected it
  ClassRouting class_routing;
  double routing_entropy = 0;           // mean per-input entropy of the routing weights (nats)
  double shared_variance = 0;           // mean per-dimension variance of the shared space
  std::vector<ReportSplit> reports;     // the task's report splits, in the order it lists them
};

struct Evaluation {
  std::vector<std::string> teachers;
  std::vector<TaskEvaluation> tasks;
  std::vector<std::string> violations;  // one line per task below its contract
};

struct EvalOptions {
  std::string probe_dir;  // where probe weights and scores are kept and reused; "" = not kept
  std::string reuse_dir;  // another run's probes/ folder: scores stored there are reused, never written
  bool progress = true;
};

// The steps each teacher's probe gets on a task: what the composite's trainer gave each task.
int64_t probe_budget(const config::Composition& composition);

// The minimum retention the composition asks of a task (retention.tasks, else retention.default;
// 0 = no contract).
double retention_contract(const config::Composition& composition, const std::string& task);

// Each teacher's own linear probe on a head's task, for the teachers that take its modality
// (composition order): reused when stored under the same key (options.probe_dir, then
// options.reuse_dir), else trained and stored in options.probe_dir.
std::vector<ProbeScore> teacher_probes(const config::Composition& composition, ComposedSystem& system,
                                       cache::FeatureCache& store, const config::HeadSpec& head, const EvalOptions& options);

// `system` holds the weights to score (see load_run_weights). Needs complete cache entries of
// every task's train, val and test splits (cache_features builds them).
Evaluation evaluate(const config::Composition& composition, ComposedSystem& system, cache::FeatureCache& store,
                    const EvalOptions& options);

}  // namespace nexus
