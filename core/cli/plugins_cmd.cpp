// nexus plugins list|info
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <nexus/options.hpp>
#include <nexus/text.hpp>

#include <iomanip>
#include <iostream>

#include "cli.hpp"

namespace po = boost::program_options;

namespace nexus::cli {
namespace {

nlohmann::json row_json(const registry::ComponentRecord& c) {
  return {{"kind", c.kind},     {"name", c.name},       {"version", c.plugin_version},
          {"plugin", c.plugin_name}, {"library", c.library}, {"status", registry::to_string(c.status)},
          {"reason", c.reason}, {"description", c.description}, {"options", c.options_schema}};
}

int list(const registry::Registry& reg, bool json) {
  const auto rows = reg.components();
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& c : rows) out.push_back(row_json(c));
    std::cout << out.dump(2) << "\n";
    return kOk;
  }
  size_t wname = 4;
  for (const auto& c : rows) wname = std::max(wname, c.name.size());
  std::cout << std::left << std::setw(8) << "KIND" << std::setw(int(wname) + 2) << "NAME" << std::setw(9) << "VERSION"
            << std::setw(13) << "STATUS" << "LIBRARY\n";
  for (const auto& c : rows) {
    std::cout << std::left << std::setw(8) << c.kind << std::setw(int(wname) + 2) << c.name << std::setw(9)
              << (c.plugin_version.empty() ? "-" : c.plugin_version) << std::setw(13) << registry::to_string(c.status)
              << c.library << "\n";
    if (!c.reason.empty()) std::cout << "        reason: " << c.reason << "\n";
  }
  if (rows.empty()) {
    std::cout << "no plugins found; searched:\n";
    for (const auto& d : reg.search_path()) std::cout << "  " << d << "\n";
  }
  return kOk;
}

int info(const registry::Registry& reg, const std::string& name, bool json) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : reg.components()) {
    if (c.name != name) continue;
    if (json) {
      out.push_back(row_json(c));
      continue;
    }
    std::cout << c.kind << " '" << c.name << "' " << c.plugin_version << " — " << c.description << "\n"
              << "  plugin:  " << c.plugin_name << "\n  library: " << c.library << "\n  status:  "
              << registry::to_string(c.status) << (c.reason.empty() ? "" : " (" + c.reason + ")") << "\n";
    std::cout << "  options:" << (c.options_schema.empty() ? " none" : "") << "\n";
    for (const auto& s : parse_option_schema(c.options_schema)) {
      const std::string type = s.type == "choice" ? join(s.choices, "|") : s.type;
      std::cout << "    " << std::left << std::setw(16) << s.name << std::setw(20) << type
                << (s.required ? "required" : s.has_default ? "default " + s.default_value : "optional") << "\n";
    }
    out.push_back(row_json(c));
  }
  if (json) std::cout << out.dump(2) << "\n";
  if (out.empty()) {
    std::cerr << "nexus: no plugin component named '" << name << "'\n";
    return kBadInput;
  }
  return kOk;
}

}  // namespace

int cmd_plugins(const Globals& g, const std::vector<std::string>& args) {
  bool json = false;
  std::string action, name;
  po::options_description opts("Usage: nexus plugins list [--json] | nexus plugins info NAME [--json]\n\nOptions");
  opts.add_options()("json", po::bool_switch(&json), "machine-readable output");
  if (!parse_command(args, opts, {{"action", &action}, {"name", &name}})) return kOk;
  if (action == "list") return list(scanned_registry(g), json);
  if (action == "info") {
    if (name.empty()) throw UsageError("plugins info needs a component NAME");
    return info(scanned_registry(g), name, json);
  }
  throw UsageError(action.empty() ? "plugins needs an action: list or info" : "unknown plugins action '" + action + "'");
}

}  // namespace nexus::cli
