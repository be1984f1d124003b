// Growing and shrinking a trained run, second step: the kept components are copied from the base
// run into the new system bit for bit, and the router's per-teacher weights follow the teachers by
// name.
#pragma once

#include <string>

#include "nexus/increments/plan.hpp"

namespace nexus {

// Copies the kept teachers' feature statistics and towers and the kept heads from `base` into
// `next`, and the router's weights mapped by teacher name: in a parameter one of whose dimensions
// counts the teachers, each kept teacher's slice is copied (a new teacher's keeps its fresh
// initialisation, a removed teacher's is dropped); a parameter of unchanged shape is copied whole.
// Returns "" or why the router starts from its fresh initialisation instead (shapes that cannot
// be mapped, e.g. a conditioned router whose contexts changed).
std::string carry_over(const IncrementPlan& plan, const ComposedSystem& base, ComposedSystem& next);

}  // namespace nexus
