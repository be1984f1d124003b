// YAML text -> nexus::config::Node, keeping file:line:col for every value.
#pragma once

#include <string>

#include "nexus/config/node.hpp"

namespace nexus::config::detail {

// Parses one YAML document whose root may be of any kind (an empty text gives a Null node at
// 1:1). Throws ConfigError on syntax errors, duplicate keys, non-scalar keys and multiple
// documents; every diagnostic names `file`.
Node parse_yaml(const std::string& text, const std::string& file);

}  // namespace nexus::config::detail
