#include "nexus/serving/snapshot.hpp"

#include <nexus/teacher.hpp>
#include <nexus/text.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <stdexcept>

#include "nexus/config/paths.hpp"
#include "nexus/model/device.hpp"
#include "nexus/registry/registry.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/run/run_folder.hpp"

namespace fs = std::filesystem;

namespace nexus::serving {

namespace {

std::string checkpoint_name(const std::string& run_dir) {
  return fs::path(run_dir).filename().string() + "@" + fs::path(run::run_checkpoint(run_dir)).filename().string();
}

}  // namespace

RunSource run_source(const std::string& dir, const registry::Registry& reg) {
  const auto info = run::read_run_info(dir);
  if (const auto note = run::composition_note(info, dir); !note.empty()) spdlog::warn("{}", note);
  return {fs::weakly_canonical(fs::absolute(dir)).string(), run::load_run_composition(info, plugin_catalog(reg))};
}

namespace {

// Where each module's weights come from (unnamed ones: the base run's checkpoint) once the
// recipe's overlays are applied to `comp`, and the version they make.
struct Sources {
  std::map<std::string, std::string> checkpoint_of;
  std::set<std::string> named;
  std::string version;
};

Sources apply_overlays(const Recipe& recipe, config::Composition& comp, const registry::Registry& registry) {
  Sources out;
  out.version = checkpoint_name(recipe.base.dir);
  const auto catalog = plugin_catalog(registry);
  for (const auto& overlay : recipe.overlays) {
    const auto ckpt = run::run_checkpoint(overlay.run.dir);
    for (const auto& c : overlay.components) {
      if (c.rfind("teacher.", 0) != 0) {
        out.checkpoint_of[c] = ckpt;
        out.named.insert(c);
        continue;
      }
      const auto name = c.substr(8);
      const auto& theirs = overlay.run.composition.teachers;
      const auto src = std::find_if(theirs.begin(), theirs.end(), [&](const auto& t) { return t.name == name; });
      if (src == theirs.end()) throw std::runtime_error("run " + overlay.run.dir + " has no teacher '" + name + "'");
      const auto dst = std::find_if(comp.teachers.begin(), comp.teachers.end(), [&](const auto& t) { return t.name == name; });
      if (dst == comp.teachers.end())
        throw std::runtime_error("the served composition has no teacher '" + name +
                                 "' to replace (a new teacher comes with its run: swap in add-teacher's output)");
      *dst = *src;
      // Its relative paths resolve against the composition it came from.
      const auto base = fs::path(overlay.run.composition.source).parent_path().string();
      config::resolve_path_options(dst->teacher, "teacher", catalog, base);
      config::resolve_path_options(dst->tower, "tower", catalog, base);
      for (const auto& m : {"norm." + name, "tower." + name}) {
        out.checkpoint_of[m] = ckpt;
        out.named.insert(m);
      }
    }
    // Appended piece by piece: GCC 12 at C++20 (the CUDA build) warns falsely on "+" + std::string&&.
    out.version.append("+").append(join(overlay.components, ",")).append("=").append(checkpoint_name(overlay.run.dir));
  }
  return out;
}

// Each teacher's example input through every head of its modality: all outputs finite.
void smoke_check(const Snapshot& snap) {
  torch::NoGradGuard no_grad;
  for (const auto& t : snap.system->teachers()) {
    const std::string m = to_string(t.teacher->modality());
    for (const auto& [task, modality] : snap.modality_of_task) {
      if (modality != m) continue;
      const auto r = snap.system->forward_routed(t.teacher->example_input(2), m, task);
      for (const auto& [head, out] : r.heads)
        if (!out.isfinite().all().item<bool>())
          throw std::runtime_error("smoke check failed: head '" + head + "' gives non-finite outputs on teacher '" +
                                   t.name + "''s example input");
    }
  }
}

}  // namespace

std::shared_ptr<const Snapshot> load_snapshot(Recipe recipe, std::shared_ptr<const registry::Registry> registry) {
  auto snap = std::make_shared<Snapshot>();
  snap->registry = registry;
  snap->composition = recipe.base.composition;
  auto& comp = snap->composition;
  const auto sources = apply_overlays(recipe, comp, *registry);

  snap->system = std::make_unique<ComposedSystem>(ComposedSystem::build(comp, *registry));
  const auto device = resolve_device(recipe.device.empty() ? comp.trainer.device : recipe.device);
  snap->system->to(Placement(device));
  snap->device = describe_device(device);
  std::vector<std::string> modules;
  for (const auto& [name, m] : snap->system->trainable_modules()) modules.push_back(name);
  std::sort(modules.begin(), modules.end());
  for (const auto& c : sources.named)
    if (!std::binary_search(modules.begin(), modules.end(), c))
      throw std::runtime_error("unknown component '" + c + "' (this system has " + join(modules) + ", and teacher.NAME)");
  run::load_run_weights(*snap->system, recipe.base.dir, sources.checkpoint_of);
  // The digest tells apart runs in folders of the same name, and mixes of components.
  snap->version = sources.version + "#" + weights_digest(*snap->system).substr(0, 12);
  snap->recipe = std::move(recipe);

  for (const auto& h : comp.heads) {
    snap->head_of_task[h.task] = h.name;
    snap->modality_of_task[h.task] = comp.tasks.at(h.task).modality;
  }
  torch::NoGradGuard no_grad;
  for (const auto& t : snap->system->teachers()) {
    snap->teacher_names.push_back(t.name);
    const std::string m = to_string(t.teacher->modality());
    if (m == "text") continue;
    const auto example = t.teacher->example_input(1).tensor;
    snap->sample_shape[m] = std::vector<int64_t>(example.sizes().begin() + 1, example.sizes().end());
  }
  smoke_check(*snap);
  return snap;
}

}  // namespace nexus::serving
