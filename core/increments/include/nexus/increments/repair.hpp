// Repairing an incremental run that would miss a retention contract.
//
// Removing a teacher takes away what the router chose; when that teacher carried a task, the
// remaining towers were trained as its understudies (gated to a few per cent) and re-weighing them
// cannot bring the task back within its contract. Adding a teacher can miss one too. Rather than
// `--force` or a full retrain, the increment widens what it trains one stage at a time, and only
// where a contract would fail:
//
//   router   what the plan trains anyway: the router (and any new teacher's tower);
//   towers   + the carried-over towers of the teachers that read a failing task's modality;
//   heads    + the failing tasks' heads.
//
// Each stage continues from the weights the previous one left (StartFrom::CurrentWeights: no
// statistics refit, no tower re-initialised), trains every task the widened components can change,
// and gives each task that had a head in the base run the anti-forgetting term toward the base
// composite's outputs: the tasks that must not change are held where they were, the failing ones
// are pulled toward what the base run (with the removed teacher) answered. Feature statistics
// never widen, and neither does any component no failing task reads: those of other modalities'
// tasks stay bit-identical, as the proof checks.
//
// "Would fail" is the gate's own judgement, made after each stage: the composite's test accuracy
// against the best teacher probe's, under the task's contract (what `nexus eval` reports). The
// validation split was the first choice, but a probe's validation accuracy is the best of the 20
// checks that select it, biased upward by a few points against the composite's: judged there,
// add-teacher runs whose contracts held on test were widened (docs/adding-a-teacher.md).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/evaluation/evaluation.hpp"
#include "nexus/increments/proof.hpp"

namespace nexus {
class ComposedSystem;
struct TaskData;
struct SplitFeatures;

// How far a repair may widen, and whether it widens only where a contract would fail (auto) or
// through every stage up to its scope regardless (`--repair towers`: a user who knows).
struct RepairPolicy {
  enum class When { AsNeeded, Always };
  RepairScope scope = RepairScope::Heads;  // the widest stage
  When when = When::AsNeeded;
};

// "auto" (as needed, up to heads), "router", "towers", "heads" (every stage up to it) or "none"
// (train nothing). UsageError otherwise.
RepairPolicy parse_repair_policy(const std::string& text);
std::string to_string(const RepairPolicy& policy);

// The composite's accuracy on a split of a head's task (its modules in eval mode).
double head_accuracy(ComposedSystem& system, const SplitFeatures& split, const config::HeadSpec& head);

// The composite's accuracy on a head's test split against its teachers' probes (their test
// accuracies) and the task's contract.
ContractCheck check_contract(const config::Composition& composition, ComposedSystem& system, const SplitFeatures& test,
                             const config::HeadSpec& head, const std::vector<ProbeScore>& probes);

// What the stage `scope` makes trainable beyond what already trains (`frozen` holds what does
// not): for towers, the frozen towers of every teacher that reads the modality of one of `tasks`;
// for heads, those tasks' frozen heads; for router, nothing (the plan already trains it). Norms
// never. Each component comes with why (the tasks, and their checks where `checks` has them).
struct Widening {
  RepairScope scope = RepairScope::Router;
  std::vector<std::string> components;  // trainable_modules() order
  std::map<std::string, std::string> why;
};
Widening widen(RepairScope scope, const std::vector<std::string>& tasks, const config::Composition& composition,
               const ComposedSystem& system, const std::set<std::string>& frozen,
               const std::vector<ContractCheck>& checks);

// Whether training the modules outside `frozen` can change a task's outputs: its head trains, a
// tower of a teacher that reads it trains, or the router trains and has a choice on it.
bool can_change(ComposedSystem& system, const TaskData& data, const std::set<std::string>& frozen);

}  // namespace nexus
