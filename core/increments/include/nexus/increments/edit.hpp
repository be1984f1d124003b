// The composition of an incremental run, made by editing the base run's composition tree: the
// teachers of a teacher file added (add-teacher), or one teacher and everything only it served
// removed (remove-teacher). The edited tree keeps each node's location in the file it came from,
// so validation errors point into the base composition or the teacher file.
#pragma once

#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/config/node.hpp"
#include "nexus/run/run_folder.hpp"

namespace nexus {
class ComposedSystem;

// The base run's composition as one tree: its overrides applied, relative paths made absolute (the
// new run's composition lives in another folder).
config::Node run_composition_tree(const run::RunInfo& info, const config::PluginCatalog& catalog);

// Appends what `teacher_file` holds: one teacher entry (name, plugin, options, tower), or a mapping
// with teachers: and, to add a capability, heads:, losses: and data: {tasks: ...}. Paths in it
// resolve against its own folder. ConfigError (with file:line:col) for anything else, or for a task
// the base already defines.
void add_teacher_file(config::Node& tree, const std::string& teacher_file, const config::PluginCatalog& catalog);

// What removing a teacher takes with it: the heads (and their tasks) of a modality no remaining
// teacher takes. InputError when the teacher is not there, is the last one, is what the router
// reads, or would leave no task at all.
struct Removal {
  std::string teacher;
  std::vector<std::string> lost_heads, lost_tasks;
};
Removal plan_removal(const config::Composition& base, const ComposedSystem& base_system, const std::string& teacher,
                     const std::string& base_run);
// Drops the teacher, the lost heads and their losses, data.tasks and retention entries.
void remove_teacher(config::Node& tree, const Removal& removal);

// The edited tree validated, and the YAML text the new run records as its composition.
struct EditedComposition {
  config::Composition composition;
  std::string text;
};
EditedComposition finish_edit(const config::Node& tree, const config::PluginCatalog& catalog, const std::string& kind,
                              const std::string& base_run);

}  // namespace nexus
