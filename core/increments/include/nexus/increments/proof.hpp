// proof.json: the evidence an incremental run (add-teacher, remove-teacher, train --from) leaves in
// its folder, and the summary printed from it. Every frozen component's checksum before and after
// (identical, or the proof fails), each task's score before and after with the new teachers' own
// probes, the capabilities lost, wall time, and the verdict.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nexus/evaluation/evaluation.hpp"

namespace nexus {

struct PhaseTimes {
  double cache = 0, train = 0, eval = 0;
  int64_t steps = 0;
  double total() const { return cache + train + eval; }
};

struct ComponentProof {
  std::string name;
  std::string role;                    // frozen, trained, new, widened (by a repair) or mapped (a router not trained)
  std::optional<std::string> before;   // sha256 of the base run's module, where it had one
  std::string after;
  std::optional<bool> identical;       // frozen components only
  std::string why;                     // widened components: the contract that asked for it
};

// The stages of a repair (repair.hpp): router < towers < heads. None: nothing is trained.
enum class RepairScope { None, Router, Towers, Heads };
std::string to_string(RepairScope scope);

// A task's contract as the gate judges it (test split), after a training stage.
struct ContractCheck {
  std::string task, best_teacher;
  double composite = 0, best_probe = 0, retention = 0, contract = 0;  // test accuracies
  bool holds() const { return contract <= 0 || retention >= contract; }
};

// One stage of training in an incremental run: the first is the plan's own (router, new towers);
// each further one widens it (repair.hpp).
struct RepairStage {
  RepairScope scope = RepairScope::Router;
  std::vector<std::string> widened;    // what this stage added to what trains (the first: all it trains)
  std::vector<std::string> trained_tasks;
  int64_t steps = 0, best_step = 0;    // best_step 0: the stage kept the weights it started from
  std::string folder;                  // its checkpoints and metrics, relative to the run
  std::vector<ContractCheck> checks;   // the changed tasks, after the stage
  std::map<std::string, std::string> why;  // widened component -> the failing tasks that asked for it
};
nlohmann::json to_json(const RepairStage& stage);
RepairStage repair_stage_from_json(const nlohmann::json& j);

struct TaskProof {
  std::string task;
  std::optional<double> before;        // the base composite's accuracy, for a kept head
  double after = 0, retention = 0, contract = 0;
  bool violated = false;
  std::vector<ProbeScore> probes;
  std::map<std::string, double> new_teacher_probes;  // test accuracy of each added teacher's probe
};

struct LostTask {
  std::string task, head, why;
};

// The same final composition trained from scratch (--compare-full), for the wall-time comparison.
struct FullRetrain {
  std::string run;
  PhaseTimes timing;
  std::map<std::string, double> accuracy;  // per task
};

// What an increment would do (--dry-run): the plan, the stages a repair may take, and for a change
// that adds no teacher, each changed task's contract judged now, with nothing trained (the router
// renormalised over the remaining teachers).
struct IncrementPreview {
  std::vector<std::string> frozen, trained, changed_tasks;
  std::vector<std::string> never_change;    // frozen, and no repair stage may widen them
  std::vector<RepairStage> stages;          // `widened`: at most these, stage by stage (no checks)
  std::vector<ContractCheck> now;
  std::string no_prediction;                // why `now` is empty
};

struct Proof {
  std::string kind, base_run, run;
  std::vector<std::string> added_teachers, removed_teachers, added_heads, trained, trained_tasks, notes, violations;
  std::vector<LostTask> lost_tasks;
  double kl_weight = 0, kl_temperature = 0;  // the anti-forgetting term as used (weight 0: none)
  std::vector<ComponentProof> components;
  bool frozen_identical = true;
  std::vector<TaskProof> tasks;
  std::string repair_policy;           // --repair as given
  std::vector<RepairStage> stages;     // empty when nothing was trained
  PhaseTimes timing;
  bool stopped_early = false;
  std::optional<FullRetrain> full_retrain;
  double ratio_train_and_eval = 0, ratio_total = 0;  // incremental / full, with full_retrain
  bool ok() const { return violations.empty() && frozen_identical; }

  // Not part of proof.json: what the command reports besides it.
  Evaluation evaluation;       // the new run's
  std::string folder;          // where the run was left: `run`, or <run>.rejected when it failed
  std::optional<IncrementPreview> preview;  // a dry run: only kind, base_run, run, teachers, lost tasks, notes and this
};

// proof.json's content ("format": 1).
nlohmann::json to_json(const Proof& proof);
// The human summary: components, tasks before and after, wall time, status.
void print_proof(const Proof& proof, std::ostream& out);
// A dry run's plan (proof.preview), as printed and as --json gives it.
void print_preview(const Proof& proof, std::ostream& out);
nlohmann::json preview_json(const Proof& proof);

}  // namespace nexus
