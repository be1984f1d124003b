#include "plugin_check.hpp"

#include <nexus/options.hpp>

#include <algorithm>
#include <cctype>

#include "scalars.hpp"

namespace nexus::config::detail {

namespace {

// Numeric, component-wise: 1.10.0 is newer than 1.9.0.
bool version_less(const std::string& a, const std::string& b) {
  auto next_part = [](const std::string& s, size_t& pos) {
    long value = 0;
    for (; pos < s.size() && s[pos] != '.'; ++pos)
      if (std::isdigit(static_cast<unsigned char>(s[pos]))) value = value * 10 + (s[pos] - '0');
    ++pos;  // skip the dot
    return value;
  };
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    const long x = next_part(a, i), y = next_part(b, j);
    if (x != y) return x < y;
  }
  return false;
}

std::string expects(const OptionSpec& d) {
  if (d.type == "int" && d.data_sized) return "an int or auto";
  if (d.type == "int") return "an int";
  if (d.type == "float") return "a number";
  if (d.type == "bool") return "a bool (true or false)";
  if (d.type == "list") return "a list of scalars";
  if (d.type == "path") return "a path";
  if (d.type == "choice") return "one of " + join(d.choices);
  return "a string";
}

// Checks one option value against its declaration; on success `text` is what the plugin gets.
bool check_option_value(Checker& check, const Node& value, const OptionSpec& decl, const PluginRole& role,
                        const std::string& what, std::string& text) {
  auto mismatch = [&](const std::string& hint = "") {
    check.error(value.loc, what + " expects " + expects(decl) + ", got " + describe_value(value),
                hint);
    return false;
  };
  if (decl.data_sized && value.is_scalar() && !value.quoted && value.scalar == kDataSized) {
    if (role.data_sizing == PluginRole::DataSizing::Refused) {
      check.error(value.loc, what + " can be sized from the data only in a teacher's tower (" + role.owner + ")",
                  "give a number here");
      return false;
    }
    text = value.scalar;
    return true;
  }
  if (decl.type == "list") {
    if (value.is_scalar()) {
      text = value.scalar;
      return true;
    }
    if (!value.is_seq()) return mismatch();
    std::vector<std::string> parts;
    for (const auto& item : value.items) {
      if (!item.is_scalar()) {
        check.error(item.loc, what + " expects a list of scalars, got an entry that is " +
                                  describe_value(item));
        return false;
      }
      parts.push_back(item.scalar);
    }
    text = join(parts, ",");
    return true;
  }
  if (!value.is_scalar()) return mismatch();
  const std::string& s = value.scalar;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  if (decl.type == "int" || decl.type == "float" || decl.type == "bool") {
    const bool ok = decl.type == "int" ? parse_int(s, i)
                    : decl.type == "float" ? parse_number(s, f)
                                           : parse_bool(s, b);
    if (!ok) return mismatch();
    if (value.quoted) return mismatch("remove the quotes");
  } else if (decl.type == "choice") {
    if (std::find(decl.choices.begin(), decl.choices.end(), s) == decl.choices.end()) {
      const std::string guess = did_you_mean(s, decl.choices);
      return mismatch(guess.empty() ? "" : "did you mean '" + guess + "'?");
    }
  } else if (s.empty()) {
    return mismatch();
  }
  text = s;
  return true;
}

const PluginDescriptor* resolve(Checker& check, const PluginCatalog& catalog,
                                const PluginRole& role, const PluginSpec& spec,
                                const Node* version_node) {
  std::vector<const PluginDescriptor*> same_name;
  std::vector<std::string> names_of_kind;
  std::string other_kind;
  const PluginDescriptor* unusable = nullptr;
  for (const auto& d : catalog) {
    if (!d.problem.empty()) {
      if (d.kind == role.kind && d.name == spec.plugin && !unusable) unusable = &d;
      continue;
    }
    if (d.kind == role.kind) {
      if (std::find(names_of_kind.begin(), names_of_kind.end(), d.name) == names_of_kind.end())
        names_of_kind.push_back(d.name);
      if (d.name == spec.plugin) same_name.push_back(&d);
    } else if (d.name == spec.plugin && other_kind.empty()) {
      other_kind = d.kind;
    }
  }
  if (same_name.empty() && unusable) {
    check.error(spec.loc, role.kind + " plugin '" + spec.plugin + "' is installed but broken: " + unusable->problem,
                "`nexus plugins list` shows every plugin with its status; fix or remove the library");
    return nullptr;
  }
  if (same_name.empty()) {
    std::sort(names_of_kind.begin(), names_of_kind.end());
    std::string hint;
    if (!other_kind.empty())
      hint = "'" + spec.plugin + "' is a " + other_kind + " plugin, not a " + role.kind +
             " plugin; ";
    const std::string guess = did_you_mean(spec.plugin, names_of_kind);
    if (!guess.empty()) hint += "did you mean '" + guess + "'? ";
    hint += names_of_kind.empty() ? "no " + role.kind + " plugins are installed"
                                  : "available " + role.kind + " plugins: " + join(names_of_kind);
    check.error(spec.loc, "unknown " + role.kind + " plugin '" + spec.plugin + "'", hint);
    return nullptr;
  }
  // The catalog is in plugin search order, and the registry resolves a name without a version to
  // its first match on the search path: validate against that same component.
  if (spec.version.empty()) return same_name.front();
  std::sort(same_name.begin(), same_name.end(),
            [](auto* a, auto* b) { return version_less(a->version, b->version); });
  for (const auto* d : same_name)
    if (d->version == spec.version) return d;
  std::vector<std::string> versions;
  for (const auto* d : same_name) versions.push_back(d->version);
  check.error(version_node->loc,
              role.kind + " plugin '" + spec.plugin + "' has no version '" + spec.version + "'",
              "available versions: " + join(versions) + " (or leave out 'version' for the first one on the plugin search path)");
  return nullptr;
}

}  // namespace

bool check_plugin(Checker& check, const Node& block, const PluginCatalog& catalog,
                  const PluginRole& role, PluginSpec& out) {
  const Node* plugin = check.require(block, "plugin", role.owner,
                                     "name the " + role.kind + " plugin to use, e.g. plugin: ...");
  const Node* version = block.find("version");
  const Node* options = block.find("options");
  bool ok = true;

  // Options are read even when the plugin is unknown, so shape errors still show up.
  struct Given {
    std::string key;
    const Node* value;
    Location key_loc;
  };
  std::vector<Given> given;
  if (options && !options->is_null()) {
    if (check.map(*options, "options of " + role.owner, "a mapping of option: value")) {
      for (size_t i = 0; i < options->map.size(); ++i) {
        const auto& [key, value] = options->map[i];
        if (value.is_map()) {
          check.error(value.loc, "option '" + key + "' of " + role.owner +
                                     " must be a scalar or a list of scalars, got a mapping");
          ok = false;
          continue;
        }
        given.push_back({key, &value, options->key_locs[i]});
        out.option_locs[key] = value.loc;
      }
    } else {
      ok = false;
    }
  }
  if (version) {
    if (auto v = check.string(*version, "'version' of " + role.owner)) out.version = *v;
    else ok = false;
  }
  if (!plugin) return false;
  auto name = check.string(*plugin, "'plugin' of " + role.owner);
  if (!name) return false;
  out.plugin = *name;
  out.loc = plugin->loc;

  const PluginDescriptor* desc = resolve(check, catalog, role, out, version);
  if (!desc) return false;

  // One grammar for host and plugins: the plugin API's own parser (torch-free, header-only).
  std::vector<OptionSpec> decls;
  try {
    decls = parse_option_schema(desc->options_schema);
  } catch (const OptionError& e) {
    check.error(plugin->loc, role.kind + " plugin '" + out.plugin + "' " + desc->version +
                                 " declares a malformed options schema: " + e.what(),
                "this is a bug in the plugin; report it to its author");
    return false;
  }
  std::vector<std::string> accepted;
  for (const auto& d : decls) accepted.push_back(d.name);

  const std::string plugin_desc = role.kind + " plugin '" + out.plugin + "'";
  for (const auto& [key, value, key_loc] : given) {
    // Named, not captured: a lambda may not capture a structured binding before C++20 (clang).
    const std::string& name = key;
    auto decl = std::find_if(decls.begin(), decls.end(), [&](auto& d) { return d.name == name; });
    if (decl == decls.end()) {
      const std::string guess = did_you_mean(key, accepted);
      std::string hint = guess.empty() ? "" : "did you mean '" + guess + "'? ";
      hint += accepted.empty() ? plugin_desc + " takes no options"
                               : "accepted options: " + join(accepted);
      check.error(key_loc, "unknown option '" + key + "' for " + plugin_desc +
                                            " (" + role.owner + ")", hint);
      ok = false;
      continue;
    }
    std::string text;
    if (check_option_value(check, *value, *decl, role, "option '" + key + "' of " + plugin_desc, text))
      out.options[key] = text;
    else
      ok = false;
  }
  for (const auto& d : decls) {
    if (!d.required || out.option_locs.count(d.name)) continue;
    if (std::find(role.host_filled.begin(), role.host_filled.end(), d.name) !=
        role.host_filled.end())
      continue;
    check.error(plugin->loc, plugin_desc + " (" + role.owner + ") requires option '" + d.name +
                                 "' (" + expects(d) + ")",
                "add it under options:, e.g. options: {" + d.name + ": ...}");
    ok = false;
  }
  return ok;
}

}  // namespace nexus::config::detail
