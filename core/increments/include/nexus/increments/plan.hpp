// Growing and shrinking a trained run, first step: which components of a new composition are
// carried over unchanged from a base run and which the increment trains.
#pragma once

#include <ATen/core/Tensor.h>

#include <set>
#include <string>
#include <vector>

#include "nexus/config/composition.hpp"

namespace nexus {
class ComposedSystem;

struct IncrementPlan {
  std::vector<std::string> added_teachers;  // new, or changed (same name, other teacher or tower)
  std::vector<std::string> kept_teachers;
  std::vector<std::string> removed_teachers;
  std::vector<std::string> added_heads, kept_heads, removed_heads;
  std::set<std::string> frozen;             // trainable_modules() names carried over unchanged
  std::vector<std::string> trained;         // every other module: what the increment trains
                                            // ("router" is frozen but mapped when not trained)
  bool router_trained = true;
  std::vector<std::string> notes;           // e.g. why a same-named teacher counts as new
  bool changes_anything() const {
    return !added_teachers.empty() || !removed_teachers.empty() || !added_heads.empty() || !removed_heads.empty();
  }
};

// Compares the system built from a base run's composition with the one built from the new
// composition. A teacher is kept when its name, fingerprint (plugin, weights, preprocessing) and
// tower spec are the same; a head when its name, task, outputs and tower spec are.
IncrementPlan plan_increment(const config::Composition& base, const ComposedSystem& base_system,
                             const config::Composition& next, const ComposedSystem& next_system, bool train_router);

// Refuses a plan that cannot make a useful run, before anything is written: one that changes
// nothing (InputError naming `base_run`), or one that adds a teacher whose modality no head of the
// new composition reads (config::ConfigError at the teacher's entry, saying how to add a task).
void check_plan(const IncrementPlan& plan, const config::Composition& next, const ComposedSystem& next_system,
                const std::string& base_run);

// Whether the router can change a task's output: more than one teacher takes the task's inputs,
// or (one teacher) its routing weight on these rows is not exactly 1 (an unnormalised gate).
bool router_matters(ComposedSystem& system, const std::vector<at::Tensor>& features, const std::string& task);

}  // namespace nexus
