// The engine behind add-teacher, remove-teacher and `train FILE --from RUN`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "nexus/config/composition.hpp"

namespace nexus::cli {

struct IncrementRequest {
  std::string kind;                 // "add-teacher", "remove-teacher", "train --from"
  std::string base_run, out;
  // add/remove: the new composition, validated (locations point into the files it came from) and
  // as the text that is written into the new run. --from: the user's file and overrides.
  std::optional<config::Composition> composition;
  std::string composition_text;
  std::string composition_file;
  std::vector<std::string> overrides;
  std::string cache_root;
  double kl_weight = 0.5, kl_temperature = 2.0;
  int64_t steps = 0;                // 0 = a quarter of each task's share of trainer.steps, per task trained
  int64_t solo_steps = -1;          // of those, new towers alone first (-1 = half)
  bool train_router = true, resume = false, force = false, compare_full = false, json = false, fp16 = false;
};

// Trains the change from the base run into <out>.partial, writes proof.json, and renames the
// folder to <out> when every retention contract holds (or --force), else to <out>.rejected.
int run_increment(const Globals& g, const registry::Registry& registry, const IncrementRequest& request);

}  // namespace nexus::cli
