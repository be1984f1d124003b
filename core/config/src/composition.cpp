// validate(): the top level of the schema, plus load_composition() which ties loading,
// overrides and validation together.
#include "nexus/config/composition.hpp"

#include <nexus/text.hpp>

#include <algorithm>
#include <map>
#include <tuple>

#include "nexus/config/loader.hpp"
#include "sections.hpp"

namespace nexus::config {

std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size() && !text.empty()) {
    const auto comma = text.find(',', start);
    const auto end = comma == std::string::npos ? text.size() : comma;
    out.push_back(trim(text.substr(start, end - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::vector<std::string> TaskSpec::report_splits() const {
  const auto it = params.find("report_splits");
  return it == params.end() ? std::vector<std::string>{} : split_names(it->second);
}

namespace {

using detail::Checker;

const std::vector<std::string> kTopKeys = {
    "nexus",    "name",   "description", "include", "shared_dim", "device",    "teachers",
    "router",   "heads",  "losses",      "data",    "trainer",    "retention"};

// Files rank in the order they first show up in the tree, the composition's own file first,
// so that diagnostics read top to bottom even when includes and --set are involved.
void rank_files(const Node& n, std::map<std::string, size_t>& rank) {
  rank.emplace(n.loc.file, rank.size());
  for (const auto& loc : n.key_locs) rank.emplace(loc.file, rank.size());
  for (const auto& item : n.items) rank_files(item, rank);
  for (const auto& [key, value] : n.map) rank_files(value, rank);
}

void sort_diagnostics(const Node& root, std::vector<Diagnostic>& diags) {
  std::map<std::string, size_t> rank;
  rank_files(root, rank);
  auto key = [&](const Diagnostic& d) {
    auto it = rank.find(d.loc.file);
    return std::make_tuple(it == rank.end() ? rank.size() : it->second, d.loc.line, d.loc.column);
  };
  std::stable_sort(diags.begin(), diags.end(),
                   [&](const Diagnostic& a, const Diagnostic& b) { return key(a) < key(b); });
}

void check_top_scalars(Checker& check, const Node& root, Composition& c, bool& shared_dim_ok) {
  const std::string where = "the composition";
  if (const Node* n = check.require(root, "nexus", where,
                                    "start the file with 'nexus: 1' (the schema version)")) {
    if (auto v = check.integer(*n, "'nexus' (the schema version)"); v && *v != 1) {
      check.error(n->loc, "unsupported schema version nexus: " + std::to_string(*v) +
                              "; this build of NEXUS reads version 1",
                  "write 'nexus: 1', or use the NEXUS release that introduced version " +
                      std::to_string(*v));
    }
  }
  if (const Node* n = check.require(root, "name", where, "give the composition a name")) {
    if (auto s = check.string(*n, "'name'")) {
      if (s->empty()) check.error(n->loc, "'name' must not be empty");
      c.name = *s;
    }
  }
  if (const Node* n = root.find("description")) check.string(*n, "'description'");
  if (const Node* n = check.require(root, "shared_dim", where,
                                    "the width of the space all teacher towers project into, "
                                    "e.g. shared_dim: 256")) {
    if (auto v = check.integer(*n, "'shared_dim'", detail::positive())) {
      c.shared_dim = *v;
      shared_dim_ok = true;
    }
  }
  if (const Node* n = root.find("device")) {
    if (auto s = check.string(*n, "'device'")) {
      if (detail::valid_device(*s)) c.trainer.device = *s;
      else check.error(n->loc, "'device' must be auto, cpu, cuda or cuda:N, got '" + *s + "'");
    }
  }
}

}  // namespace

std::vector<Diagnostic> validate(const Node& root, const PluginCatalog& catalog,
                                 Composition& out) {
  std::vector<Diagnostic> diags;
  Checker check(diags);
  if (!root.is_map()) {
    check.error(Location{root.loc.file, 1, 1},
                root.is_null() ? "the composition is empty; expected a YAML mapping"
                               : "expected the composition to be a YAML mapping, found a " +
                                     root.kind_name());
    return diags;
  }

  Composition c;
  c.source = root.loc.file;
  detail::Context ctx{check, catalog, c};
  check.check_keys(root, kTopKeys, "the composition");
  check_top_scalars(check, root, c, ctx.shared_dim_known);

  // Later sections refer to earlier ones: heads to data.tasks, router to teachers, losses to
  // heads, retention to the heads' tasks.
  if (const Node* n = root.find("data")) detail::check_data(ctx, *n);
  if (const Node* n = check.require(root, "teachers", "the composition",
                                    "list the teachers to distill from"))
    detail::check_teachers(ctx, *n);
  if (const Node* n = check.require(root, "router", "the composition",
                                    "e.g. router: {plugin: softmax}"))
    detail::check_router(ctx, *n);
  if (const Node* n = check.require(root, "heads", "the composition",
                                    "list the task heads trained on the shared space"))
    detail::check_heads(ctx, *n);
  if (const Node* n = check.require(root, "losses", "the composition",
                                    "e.g. losses: [{plugin: cross_entropy, head: <head name>}]"))
    detail::check_losses(ctx, *n);
  // trainer.device, when given, wins over the top-level device.
  if (const Node* n = root.find("trainer")) detail::check_trainer(ctx, *n);
  if (const Node* n = root.find("retention")) detail::check_retention(ctx, *n);

  sort_diagnostics(root, diags);
  if (diags.empty()) out = std::move(c);
  return diags;
}

Composition load_composition(const std::string& path, const std::vector<std::string>& overrides,
                             const PluginCatalog& catalog) {
  Node root = load_file(path);
  for (const auto& assignment : overrides) apply_override(root, assignment);
  Composition c;
  auto diags = validate(root, catalog, c);
  if (!diags.empty()) throw ConfigError(std::move(diags));
  c.source = path;
  return c;
}

}  // namespace nexus::config
