// Writing a composition tree back out as a standalone YAML file: what add-teacher and
// remove-teacher record as the composition of the run they make.
#pragma once

#include <string>

#include "nexus/config/composition.hpp"
#include "nexus/config/node.hpp"

namespace nexus::config {

// YAML text for the tree (block style, keys in document order). Scalars that were quoted stay
// quoted, so `'1'` is still a string when the text is read back.
std::string to_yaml(const Node& root);

// Makes every relative file path in the tree absolute, resolved against `base_dir`: data.root and
// each plugin option whose schema type is `path` (teachers and their towers, router, heads,
// losses). A tree written somewhere else then still means the same files.
void absolutize_paths(Node& root, const PluginCatalog& catalog, const std::string& base_dir);

// The same for one teacher entry (its options and its tower's).
void absolutize_teacher_paths(Node& teacher, const PluginCatalog& catalog, const std::string& base_dir);

}  // namespace nexus::config
