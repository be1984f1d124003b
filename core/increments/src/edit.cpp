#include "nexus/increments/edit.hpp"

#include <nexus/teacher.hpp>
#include <nexus/text.hpp>

#include <algorithm>
#include <filesystem>

#include "nexus/config/emit.hpp"
#include "nexus/config/loader.hpp"
#include "nexus/config/paths.hpp"
#include "nexus/model/system.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

// The value under `key`, created empty (of `kind`) when the map does not have it.
config::Node& child(config::Node& map, const std::string& key, config::Node::Kind kind) {
  if (!map.find(key)) {
    config::Node n;
    n.kind = kind;
    map.map.emplace_back(key, n);
    map.key_locs.push_back(map.loc);
  }
  return *map.find(key);
}

// The teacher entries of a teacher file.
std::vector<config::Node> teacher_entries(const config::Node& add) {
  if (add.find("plugin")) return {add};
  const auto* list = add.find("teachers");
  if (!list)
    throw config::ConfigError({config::Diagnostic{
        add.loc, "expected a teacher entry (name, plugin, options, tower) or a mapping with 'teachers:'",
        "e.g.\n    name: minilm\n    plugin: hf_encoder\n    options: {path: models/all-MiniLM-L6-v2}\n    tower: {plugin: mlp}"}});
  std::vector<config::Diagnostic> diags;
  for (size_t i = 0; i < add.map.size(); ++i)
    if (!contains({"teachers", "heads", "losses", "data"}, add.map[i].first))
      diags.push_back({add.key_locs[i], "unexpected key '" + add.map[i].first + "' in a teacher file",
                       "a teacher file holds teachers:, and optionally heads:, losses: and data: {tasks: ...}"});
  if (!list->is_seq()) diags.push_back({list->loc, "'teachers' must be a list of teacher entries", ""});
  if (!diags.empty()) throw config::ConfigError(diags);
  return list->items;
}

void add_tasks(config::Node& tree, const config::Node& add) {
  const auto* data = add.find("data");
  const auto* tasks = data ? data->find("tasks") : nullptr;
  if (!tasks || !tasks->is_map()) return;
  auto& into = child(child(tree, "data", config::Node::Kind::Map), "tasks", config::Node::Kind::Map);
  for (size_t i = 0; i < tasks->map.size(); ++i) {
    if (into.find(tasks->map[i].first))
      throw config::ConfigError({config::Diagnostic{tasks->key_locs[i],
                                                    "task '" + tasks->map[i].first + "' is already defined by the run's composition",
                                                    "give the new task another name"}});
    into.map.push_back(tasks->map[i]);
    into.key_locs.push_back(tasks->key_locs[i]);
  }
}

std::string scalar(const config::Node& n, const std::string& key) {
  const auto* v = n.find(key);
  return v && v->is_scalar() ? v->scalar : std::string();
}

template <class Pred>
void erase_items(config::Node* seq, Pred pred) {
  if (!seq || !seq->is_seq()) return;
  seq->items.erase(std::remove_if(seq->items.begin(), seq->items.end(), pred), seq->items.end());
}

void erase_keys(config::Node* map, const std::vector<std::string>& keys) {
  if (!map || !map->is_map()) return;
  for (size_t i = map->map.size(); i-- > 0;)
    if (contains(keys, map->map[i].first)) {
      map->map.erase(map->map.begin() + std::ptrdiff_t(i));
      map->key_locs.erase(map->key_locs.begin() + std::ptrdiff_t(i));
    }
}

}  // namespace

config::Node run_composition_tree(const run::RunInfo& info, const config::PluginCatalog& catalog) {
  auto root = config::load_file(info.composition);
  for (const auto& o : info.overrides) config::apply_override(root, o);
  config::resolve_tree_paths(root, catalog, fs::absolute(info.composition).parent_path().string());
  return root;
}

void add_teacher_file(config::Node& tree, const std::string& teacher_file, const config::PluginCatalog& catalog) {
  const auto add = config::load_file(teacher_file);  // throws with file:line:col on bad YAML
  const auto dir = fs::absolute(teacher_file).parent_path().string();
  auto teachers = teacher_entries(add);
  for (auto& t : teachers) config::resolve_teacher_paths(t, catalog, dir);
  auto& seq = child(tree, "teachers", config::Node::Kind::Sequence);
  seq.items.insert(seq.items.end(), teachers.begin(), teachers.end());
  if (const auto* heads = add.find("heads")) {
    auto& h = child(tree, "heads", config::Node::Kind::Sequence);
    for (auto item : heads->items) {
      config::resolve_plugin_paths(item, "tower", catalog, dir);
      h.items.push_back(item);
    }
  }
  if (const auto* losses = add.find("losses")) {
    auto& l = child(tree, "losses", config::Node::Kind::Sequence);
    l.items.insert(l.items.end(), losses->items.begin(), losses->items.end());
  }
  add_tasks(tree, add);
}

Removal plan_removal(const config::Composition& base, const ComposedSystem& base_sys, const std::string& teacher,
                     const std::string& base_run) {
  std::vector<std::string> names;
  for (const auto& t : base.teachers) names.push_back(t.name);
  if (!contains(names, teacher))
    throw InputError("run " + base_run + " has no teacher '" + teacher + "' (it has " + join_or(names, "-") + ")");
  if (names.size() == 1) throw InputError("'" + teacher + "' is the run's only teacher: nothing would be left");
  if (base.router.input == "teacher:" + teacher)
    throw InputError("the router reads teacher '" + teacher + "''s features (router.input): change router.input first");
  // Which modalities the remaining teachers take: the tasks of any other modality are lost.
  std::vector<std::string> remaining;
  for (const auto& t : base_sys.teachers())
    if (t.name != teacher) remaining.push_back(to_string(t.teacher->modality()));
  Removal r;
  r.teacher = teacher;
  for (const auto& h : base.heads)
    if (!contains(remaining, base.tasks.at(h.task).modality)) {
      r.lost_heads.push_back(h.name);
      if (!contains(r.lost_tasks, h.task)) r.lost_tasks.push_back(h.task);
    }
  if (r.lost_heads.size() == base.heads.size())
    throw InputError("removing '" + teacher + "' would leave no task a teacher can serve");
  return r;
}

void remove_teacher(config::Node& tree, const Removal& r) {
  erase_items(tree.find("teachers"), [&](const config::Node& n) { return scalar(n, "name") == r.teacher; });
  erase_items(tree.find("heads"), [&](const config::Node& n) { return contains(r.lost_heads, scalar(n, "name")); });
  erase_items(tree.find("losses"), [&](const config::Node& n) { return contains(r.lost_heads, scalar(n, "head")); });
  if (auto* data = tree.find("data")) erase_keys(data->find("tasks"), r.lost_tasks);
  if (auto* retention = tree.find("retention")) erase_keys(retention->find("tasks"), r.lost_tasks);
}

EditedComposition finish_edit(const config::Node& tree, const config::PluginCatalog& catalog, const std::string& kind,
                              const std::string& base_run) {
  EditedComposition e;
  auto diags = config::validate(tree, catalog, e.composition);
  if (!diags.empty()) throw config::ConfigError(std::move(diags));
  e.text = "# Written by `nexus " + kind + "` from the run " + fs::absolute(base_run).lexically_normal().string() + ".\n" +
           config::to_yaml(tree);
  return e;
}

}  // namespace nexus
