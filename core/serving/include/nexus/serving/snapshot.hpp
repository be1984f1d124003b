// What a server serves: an immutable snapshot of a composed system with its weights, which a swap
// replaces whole. A request holds the snapshot it started with until it has answered.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/model/system.hpp"

namespace nexus::serving {

// A run folder and the composition it was trained with (as recorded in its run.json).
struct RunSource {
  std::string dir;
  config::Composition composition;
};
// The run folder `dir` (a symlink names its target, so that the version says which run really
// served) with its composition validated against the registry's plugins.
RunSource run_source(const std::string& dir, const registry::Registry& registry);

// What a snapshot is made of: a run, then components taken from other runs, later ones winning.
// A component is a trainable module name ("tower.X", "norm.X", "router", "head.H") or "teacher.X":
// that teacher's entry from the other run's composition together with its norm and tower, which
// are bound to its features.
struct Recipe {
  RunSource base;
  struct Overlay {
    RunSource run;
    std::vector<std::string> components;
  };
  std::vector<Overlay> overlays;
  // auto, cpu, cuda or cuda:N; empty = the base composition's `device`.
  std::string device;
};

// One loaded system. Immutable once built: a request holds the snapshot it started with until it
// has answered, so every response comes entirely from one snapshot.
struct Snapshot {
  Recipe recipe;
  std::string version;  // folder@checkpoint[+components=folder@checkpoint...]#weights digest
  // The registry that created the plugin objects below; declared first so it is destroyed last.
  std::shared_ptr<const registry::Registry> registry;
  config::Composition composition;
  std::unique_ptr<ComposedSystem> system;
  std::vector<std::string> teacher_names;
  std::map<std::string, std::string> head_of_task, modality_of_task;
  std::map<std::string, std::vector<int64_t>> sample_shape;  // per tensor modality: one input's shape
  std::string device;  // where it runs, e.g. "cpu" or "cuda:0 (NVIDIA H200)"
};

// Builds the recipe's system, loads its weights and smoke-checks it (each teacher's example input
// through every head of its modality, all outputs finite). Throws with the reason on any failure.
std::shared_ptr<const Snapshot> load_snapshot(Recipe recipe, std::shared_ptr<const registry::Registry> registry);

}  // namespace nexus::serving
