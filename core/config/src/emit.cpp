#include "nexus/config/emit.hpp"

#include <nexus/options.hpp>
#include <yaml-cpp/yaml.h>

#include <filesystem>

namespace nexus::config {

namespace fs = std::filesystem;

namespace {

void emit(YAML::Emitter& out, const Node& n) {
  switch (n.kind) {
    case Node::Kind::Null:
      out << YAML::Null;
      break;
    case Node::Kind::Scalar:
      if (n.quoted || n.scalar.empty()) out << YAML::DoubleQuoted;
      out << n.scalar;
      break;
    case Node::Kind::Sequence:
      out << YAML::BeginSeq;
      for (const auto& item : n.items) emit(out, item);
      out << YAML::EndSeq;
      break;
    case Node::Kind::Map:
      out << YAML::BeginMap;
      for (const auto& [key, value] : n.map) {
        out << YAML::Key << key << YAML::Value;
        emit(out, value);
      }
      out << YAML::EndMap;
      break;
  }
}

std::string absolute(const std::string& path, const std::string& base_dir) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return fs::absolute(fs::path(base_dir) / path).lexically_normal().string();
}

// A block with `plugin:` and `options:` of the given kind.
void absolutize_plugin(Node* block, const std::string& kind, const PluginCatalog& catalog, const std::string& base_dir) {
  if (!block || !block->is_map()) return;
  const Node* plugin = block->find("plugin");
  Node* options = block->find("options");
  if (!plugin || !plugin->is_scalar() || !options || !options->is_map()) return;
  for (const auto& d : catalog) {
    if (d.kind != kind || d.name != plugin->scalar) continue;
    for (const auto& spec : parse_option_schema(d.options_schema)) {
      if (spec.type != "path") continue;
      if (Node* v = options->find(spec.name); v && v->is_scalar()) v->scalar = absolute(v->scalar, base_dir);
    }
    return;
  }
}

}  // namespace

std::string to_yaml(const Node& root) {
  YAML::Emitter out;
  out.SetIndent(2);
  emit(out, root);
  return std::string(out.c_str()) + "\n";
}

void absolutize_teacher_paths(Node& teacher, const PluginCatalog& catalog, const std::string& base_dir) {
  absolutize_plugin(&teacher, "teacher", catalog, base_dir);
  absolutize_plugin(teacher.find("tower"), "tower", catalog, base_dir);
}

void absolutize_paths(Node& root, const PluginCatalog& catalog, const std::string& base_dir) {
  if (Node* data = root.find("data"))
    if (Node* r = data->find("root"); r && r->is_scalar()) r->scalar = absolute(r->scalar, base_dir);
  if (Node* teachers = root.find("teachers"); teachers && teachers->is_seq())
    for (auto& t : teachers->items) absolutize_teacher_paths(t, catalog, base_dir);
  absolutize_plugin(root.find("router"), "router", catalog, base_dir);
  if (Node* heads = root.find("heads"); heads && heads->is_seq())
    for (auto& h : heads->items) absolutize_plugin(&h, "tower", catalog, base_dir);
  if (Node* losses = root.find("losses"); losses && losses->is_seq())
    for (auto& l : losses->items) absolutize_plugin(&l, "loss", catalog, base_dir);
}

}  // namespace nexus::config
