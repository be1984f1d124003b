// YAML text -> nexus::config::Node, keeping file:line:col for every value.
#pragma once

#include <cstddef>
#include <string>

#include "nexus/config/loader.hpp"
#include "nexus/config/node.hpp"

namespace nexus::config::detail {

// What is left of a composition's allowance (loader.hpp's limits). One budget is shared by a file
// and everything it includes, so that a web of includes cannot multiply it.
struct YamlBudget {
  std::size_t nodes = kMaxCompositionNodes;
  std::size_t scalar_bytes = kMaxCompositionScalarBytes;
};

// Parses one YAML document whose root may be of any kind (an empty text gives a Null node at
// 1:1). Throws ConfigError on syntax errors, duplicate keys, non-scalar keys, multiple documents
// and a tree beyond `budget` (which it draws down); every diagnostic names `file`.
Node parse_yaml(const std::string& text, const std::string& file, YamlBudget& budget);
Node parse_yaml(const std::string& text, const std::string& file);  // with a budget of its own

}  // namespace nexus::config::detail
