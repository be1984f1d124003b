// nexus eval RUN: score a trained run against its teachers' own probes (evaluation/).
#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli.hpp"
#include "nexus/evaluation/report.hpp"

namespace po = boost::program_options;

namespace nexus::cli {

// The retention table (text), or the violations as errors beside the JSON; exit 1 on a violation.
int report_evaluation(const EvaluationReport& report, bool json) {
  if (!json) print_table(report.evaluation, std::cout << std::flush);
  else
    for (const auto& v : report.evaluation.violations) spdlog::error("retention contract violated: {}", v);
  return report.ok() ? kOk : kRuntimeFailure;
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
  const auto report = evaluate_saved_run(run_dir, cache_root, !json, scanned_registry(g));
  const int rc = report_evaluation(report, json);
  if (json) std::cout << report.json.dump(2) << "\n";
  return rc;
}

}  // namespace nexus::cli
