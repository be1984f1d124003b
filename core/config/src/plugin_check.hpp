// Checking a `plugin:` / `version:` / `options:` block against the installed plugins.
#pragma once

#include <string>
#include <vector>

#include <nexus/options.hpp>

#include "checker.hpp"
#include "nexus/config/composition.hpp"

namespace nexus::config::detail {

struct PluginRole {
  std::string kind;                      // "teacher", "tower", "router", "loss"
  std::string owner;                     // for messages: "teacher 'bert'", "head 'cls'"
  std::vector<std::string> host_filled;  // required options the host supplies when absent
  // Whether `auto` is allowed for the plugin's data-sized options ("int|auto"): only where the
  // host measures the data before creating the component (a teacher's tower).
  enum class DataSizing { Refused, Allowed } data_sizing = DataSizing::Refused;
};

// Reads `plugin`, `version` and `options` from the mapping `block` into `out` and checks them
// against `catalog`. Keys of `block` other than these three are the caller's business.
// Returns true when the plugin was found and its options are well-formed.
bool check_plugin(Checker& check, const Node& block, const PluginCatalog& catalog,
                  const PluginRole& role, PluginSpec& out);

}  // namespace nexus::config::detail
