// Relative file paths in a composition mean "relative to the file they are written in": data.root
// and every plugin option whose schema type is `path`. This is the one place that resolves them,
// for the system a composition builds, for a teacher entry moved into another composition (swaps,
// add-teacher), and for a tree written out somewhere else.
#pragma once

#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/config/node.hpp"

namespace nexus::config {

// `path` when it is empty or absolute, else base_dir/path, normalised.
std::string resolve_path(const std::string& path, const std::string& base_dir);

// The names of the `path`-typed options of the component a composition would use for this
// kind, plugin and version ("" = the first on the search path); empty when it is not installed.
std::vector<std::string> path_options(const PluginCatalog& catalog, const std::string& kind,
                                      const std::string& plugin, const std::string& version = "");

// Resolves the spec's `path` options against base_dir, in place.
void resolve_path_options(PluginSpec& spec, const std::string& kind, const PluginCatalog& catalog,
                          const std::string& base_dir);

// The same on a composition tree: data.root and the `path` options of teachers and their towers,
// the router, heads and losses. A tree written somewhere else then still means the same files.
void resolve_tree_paths(Node& root, const PluginCatalog& catalog, const std::string& base_dir);

// The same for one block with `plugin:` (and `version:`) and `options:` of the given kind: a head
// ("tower"), the router, a loss.
void resolve_plugin_paths(Node& block, const std::string& kind, const PluginCatalog& catalog, const std::string& base_dir);

// The same for one teacher entry (its options and its tower's).
void resolve_teacher_paths(Node& teacher, const PluginCatalog& catalog, const std::string& base_dir);

}  // namespace nexus::config
