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

}  // namespace nexus::config
