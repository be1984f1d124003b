// Growing and shrinking a trained run: which components of a new composition are carried over
// unchanged from a base run, copying them bit for bit, what the increment can change, and the
// checksums that prove the rest stayed as it was.
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

// Copies the kept teachers' feature statistics and towers and the kept heads from `base` into
// `next`, and the router's weights mapped by teacher name: in a parameter one of whose dimensions
// counts the teachers, each kept teacher's slice is copied (a new teacher's keeps its fresh
// initialisation, a removed teacher's is dropped); a parameter of unchanged shape is copied whole.
// Returns "" or why the router starts from its fresh initialisation instead (shapes that cannot
// be mapped, e.g. a conditioned router whose contexts changed).
std::string carry_over(const IncrementPlan& plan, const ComposedSystem& base, ComposedSystem& next);

// sha256 of one module's parameters and buffers (names and bytes, in a fixed order).
std::string module_digest(const ComposedSystem& system, const std::string& module_name);

// sha256 over every module's digest, in trainable_modules() order: equal = bitwise equal weights.
std::string weights_digest(const ComposedSystem& system);

// The system's outputs of one head on cached features (eval mode, no autograd): [rows, outputs].
at::Tensor head_outputs(ComposedSystem& system, const std::vector<at::Tensor>& features, const std::string& task,
                        const std::string& head);

// Whether the router can change a task's output: more than one teacher takes the task's inputs,
// or (one teacher) its routing weight on these rows is not exactly 1 (an unnormalised gate).
bool router_matters(ComposedSystem& system, const std::vector<at::Tensor>& features, const std::string& task);

}  // namespace nexus
