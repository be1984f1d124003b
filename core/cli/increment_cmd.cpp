// nexus add-teacher / remove-teacher: change a trained run's teachers and train only what the
// change needs, with the evidence that everything else stayed as it was (increments/).
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli.hpp"
#include "increment.hpp"
#include "nexus/evaluation/report.hpp"

namespace po = boost::program_options;

namespace nexus::cli {

namespace {

void add_common_options(po::options_description& opts, IncrementRequest& a, bool& json) {
  add_increment_options(opts, a);
  opts.add_options()("kl-temperature", po::value(&a.kl_temperature)->default_value(a.kl_temperature),
                     "softmax temperature of the anti-forgetting KL term")
      ("solo-steps", po::value(&a.solo_steps), "of the steps, those in which each new tower trains alone first (default: half)")
      ("resume", po::bool_switch(&a.resume), "continue an interrupted run (<out>.partial)")
      ("cache", po::value(&a.cache_root), "feature cache folder (default $NEXUS_CACHE_DIR/features)")
      ("fp16", po::bool_switch(&a.fp16_cache), "cache new features as fp16")
      ("json", po::bool_switch(&json), "print the proof as JSON");
}

}  // namespace

void add_increment_options(po::options_description& opts, IncrementRequest& a, const std::string& prefix) {
  opts.add_options()("kl-weight", po::value(&a.kl_weight)->default_value(a.kl_weight),
                     (prefix + "weight of the anti-forgetting KL term between the old and the new composite on the old tasks").c_str())
      ("steps", po::value(&a.steps),
       (prefix + "training steps of each stage (default: a quarter of a task's share of the composition's steps, per task trained)").c_str())
      ("force", po::bool_switch(&a.force), (prefix + "write the run even when a task misses its retention contract (marked failing)").c_str())
      ("compare-full", po::bool_switch(&a.compare_full), (prefix + "also train the final composition from scratch and compare wall times").c_str())
      ("repair", po::value<std::string>()->default_value("auto")->notifier([&a](const std::string& v) { a.repair = parse_repair_policy(v); }),
       (prefix + "where a changed task misses its contract (as the gate judges it), widen what trains: "
                 "auto (stage by stage, only as far as needed: the router, then the towers of that task's modality, then its "
                 "head), router (the router and new towers only), towers or heads (every stage up to it), none (train nothing)").c_str())
      ("dry-run", po::bool_switch(&a.dry_run), (prefix + "print the plan and the contracts as they stand; write no run (missing features are cached)").c_str());
}

int report_increment(const Proof& proof, const IncrementRequest& request, bool json) {
  if (proof.preview) {
    if (json) std::cout << preview_json(proof).dump(2) << "\n";
    else print_preview(proof, std::cout);
    return kOk;
  }
  if (json) {
    std::cout << to_json(proof).dump(2) << "\n";
  } else {
    print_table(proof.evaluation, std::cout << std::flush);
    print_proof(proof, std::cout);
  }
  if (!proof.frozen_identical) spdlog::error("a frozen component changed: the proof failed (see {}/proof.json)", proof.folder);
  for (const auto& v : proof.violations) spdlog::error("retention contract violated: {}", v);
  if (!proof.violations.empty())
    std::cerr << (request.force ? "nexus: the run is kept at " + proof.run + ", marked failing (--force)\n"
                                : "nexus: the run is not written; it is kept for inspection at " + proof.folder +
                                      " (--force writes it anyway, marked failing)\n");
  return proof.ok() ? kOk : kRuntimeFailure;
}

int cmd_add_teacher(const Globals& g, const std::vector<std::string>& args) {
  IncrementRequest a;
  bool json = false;
  std::string teacher_file;
  po::options_description opts(
      "Usage: nexus add-teacher RUN --teacher FILE.yaml --out NEWRUN [options]\n\n"
      "Adds the teacher(s) in FILE (one teacher entry as in `teachers:`, or a mapping with teachers:\n"
      "and, to add a capability, heads:, losses: and data: {tasks: ...}) to a trained run, caches only\n"
      "the new teachers' features, and trains only their towers and the router (and new heads); every\n"
      "other component is carried over bit for bit. Writes NEWRUN with its composition, checkpoints,\n"
      "evaluation and proof.json (checksums before/after, per-task scores before/after, the new\n"
      "teachers' probes, wall time). Where a task would miss its retention contract, the training\n"
      "widens to the kept towers of its modality, then to its head (--repair). Exits 1 when a task\n"
      "still misses its contract.\n\nOptions");
  opts.add_options()("teacher", po::value(&teacher_file), "YAML file with the teacher(s) to add")
      ("out", po::value(&a.out), "the new run folder");
  add_common_options(opts, a, json);
  if (!parse_command(args, opts, {{"run", &a.base_run}})) return kOk;
  if (a.base_run.empty() || teacher_file.empty() || a.out.empty())
    throw UsageError("add-teacher needs a RUN, --teacher FILE.yaml and --out NEWRUN");
  a.progress = !json;
  return report_increment(add_teacher(a, teacher_file, scanned_registry(g)), a, json);
}

int cmd_remove_teacher(const Globals& g, const std::vector<std::string>& args) {
  IncrementRequest a;
  bool json = false, no_retrain = false;
  std::string teacher;
  po::options_description opts(
      "Usage: nexus remove-teacher RUN --teacher NAME --out NEWRUN [options]\n\n"
      "Drops a teacher, its tower and its router output from a trained run, and names the tasks no\n"
      "remaining teacher can serve (lost). Retrains the router on the tasks where it still has a\n"
      "choice; where a task would still miss its retention contract, widens the training to the\n"
      "remaining towers of its modality, then to its head (--repair), keeping the other tasks close\n"
      "to the base run and every component no failing task reads bit-identical. --dry-run prints\n"
      "that plan and the contracts as they stand.\n\nOptions");
  opts.add_options()("teacher", po::value(&teacher), "name of the teacher to remove")
      ("out", po::value(&a.out), "the new run folder")
      ("no-retrain", po::bool_switch(&no_retrain), "train nothing: keep the router, renormalised over the remaining teachers (--repair none)");
  add_common_options(opts, a, json);
  if (!parse_command(args, opts, {{"run", &a.base_run}})) return kOk;
  if (a.base_run.empty() || teacher.empty() || a.out.empty())
    throw UsageError("remove-teacher needs a RUN, --teacher NAME and --out NEWRUN");
  if (no_retrain) a.repair = parse_repair_policy("none");
  a.progress = !json;
  return report_increment(remove_teacher(a, teacher, scanned_registry(g)), a, json);
}

}  // namespace nexus::cli
