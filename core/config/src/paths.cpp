#include "nexus/config/paths.hpp"

#include <nexus/options.hpp>

#include <filesystem>

namespace nexus::config {

namespace fs = std::filesystem;

std::string resolve_path(const std::string& path, const std::string& base_dir) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

std::vector<std::string> path_options(const PluginCatalog& catalog, const std::string& kind,
                                      const std::string& plugin, const std::string& version) {
  for (const auto& d : catalog) {
    if (!d.problem.empty() || d.kind != kind || d.name != plugin || (!version.empty() && d.version != version)) continue;
    std::vector<std::string> out;
    try {
      for (const auto& spec : parse_option_schema(d.options_schema))
        if (spec.type == "path") out.push_back(spec.name);
    } catch (const OptionError&) {
      // A malformed schema is reported by validation; it resolves nothing here.
    }
    return out;
  }
  return {};
}

void resolve_path_options(PluginSpec& spec, const std::string& kind, const PluginCatalog& catalog,
                          const std::string& base_dir) {
  for (const auto& name : path_options(catalog, kind, spec.plugin, spec.version))
    if (auto it = spec.options.find(name); it != spec.options.end()) it->second = resolve_path(it->second, base_dir);
}

namespace {

// A block with `plugin:` (and optionally `version:`) and `options:` of the given kind.
void resolve_block(Node* block, const std::string& kind, const PluginCatalog& catalog, const std::string& base_dir) {
  if (!block || !block->is_map()) return;
  const Node* plugin = block->find("plugin");
  const Node* version = block->find("version");
  Node* options = block->find("options");
  if (!plugin || !plugin->is_scalar() || !options || !options->is_map()) return;
  const std::string v = version && version->is_scalar() ? version->scalar : "";
  for (const auto& name : path_options(catalog, kind, plugin->scalar, v))
    if (Node* value = options->find(name); value && value->is_scalar()) value->scalar = resolve_path(value->scalar, base_dir);
}

}  // namespace

void resolve_plugin_paths(Node& block, const std::string& kind, const PluginCatalog& catalog, const std::string& base_dir) {
  resolve_block(&block, kind, catalog, base_dir);
}

void resolve_teacher_paths(Node& teacher, const PluginCatalog& catalog, const std::string& base_dir) {
  resolve_block(&teacher, "teacher", catalog, base_dir);
  resolve_block(teacher.find("tower"), "tower", catalog, base_dir);
}

void resolve_tree_paths(Node& root, const PluginCatalog& catalog, const std::string& base_dir) {
  if (Node* data = root.find("data"))
    if (Node* r = data->find("root"); r && r->is_scalar()) r->scalar = resolve_path(r->scalar, base_dir);
  if (Node* teachers = root.find("teachers"); teachers && teachers->is_seq())
    for (auto& t : teachers->items) resolve_teacher_paths(t, catalog, base_dir);
  resolve_block(root.find("router"), "router", catalog, base_dir);
  if (Node* heads = root.find("heads"); heads && heads->is_seq())
    for (auto& h : heads->items) resolve_block(&h, "tower", catalog, base_dir);
  if (Node* losses = root.find("losses"); losses && losses->is_seq())
    for (auto& l : losses->items) resolve_block(&l, "loss", catalog, base_dir);
}

}  // namespace nexus::config
