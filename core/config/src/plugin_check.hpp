// Checking a `plugin:` / `version:` / `options:` block against the installed plugins.
#pragma once

#include <string>
#include <vector>

#include "checker.hpp"
#include "nexus/config/composition.hpp"

namespace nexus::config::detail {

// One entry of a PluginDescriptor::options_schema.
struct OptionDecl {
  std::string name;
  std::string type;                  // int, float, bool, string, path, list, choice
  std::vector<std::string> choices;  // for choice(...)
  bool required = false;
  std::string default_value;         // "" when none
};

// Parses the `name:type[!][=default]` grammar; returns false and sets `problem` if malformed.
bool parse_options_schema(const std::string& schema, std::vector<OptionDecl>& out,
                          std::string& problem);

struct PluginRole {
  std::string kind;                      // "teacher", "tower", "router", "loss"
  std::string owner;                     // for messages: "teacher 'bert'", "head 'cls'"
  std::vector<std::string> host_filled;  // required options the host supplies when absent
};

// Reads `plugin`, `version` and `options` from the mapping `block` into `out` and checks them
// against `catalog`. Keys of `block` other than these three are the caller's business.
// Returns true when the plugin was found and its options are well-formed.
bool check_plugin(Checker& check, const Node& block, const PluginCatalog& catalog,
                  const PluginRole& role, PluginSpec& out);

}  // namespace nexus::config::detail
