// An evaluation as a run folder keeps it (RUN/eval.json) and as people read it (the retention
// table that `nexus train` and `nexus eval` print).
#pragma once

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <string>

#include "nexus/evaluation/evaluation.hpp"

namespace nexus {
namespace registry {
class Registry;
}

nlohmann::json to_json(const Evaluation& evaluation);
void print_table(const Evaluation& evaluation, std::ostream& out);

struct EvaluationReport {
  Evaluation evaluation;
  nlohmann::json json;  // what RUN/eval.json holds
  bool ok() const { return evaluation.violations.empty(); }
};

// Evaluates the system (weights loaded) on the test splits, keeping probe scores in RUN/probes/,
// and writes RUN/eval.json.
EvaluationReport evaluate_run(const config::Composition& composition, ComposedSystem& system,
                              cache::FeatureCache& store, const std::string& run_dir, bool progress);

// `nexus eval RUN`: the run's composition (a warning when it changed since) and weights, its
// features from the cache (computing what is missing), evaluated into RUN/eval.json.
EvaluationReport evaluate_saved_run(const std::string& run_dir, const std::string& cache_root, bool progress,
                                    const registry::Registry& registry);

}  // namespace nexus
