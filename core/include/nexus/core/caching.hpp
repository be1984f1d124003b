// Filling the feature cache for a composition: every (task dataset, split) with every teacher
// that takes the dataset's modality. Entries already complete are reused, partial ones resumed.
#pragma once

#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/core/dataset.hpp"
#include "nexus/core/feature_cache.hpp"

namespace nexus {
class ComposedSystem;

struct CachedFeatures {
  std::string teacher, task, dataset, split;
  cache::Manifest manifest;
  int64_t computed_rows = 0;  // rows encoded in this run (0 = reused)
  double seconds = 0;
};

struct CachingOptions {
  std::vector<std::string> splits{"train", "val", "test"};
  cache::DType dtype = cache::DType::F32;
  // Rows per teacher call. Large, so that a teacher can order a call's inputs by length and pad
  // little (hf_encoder does); the teacher splits a call into its own batch size.
  int64_t batch_size = 512;
  bool progress = true;
};

// Where a composition's data lives: data.root relative to the composition file, else ./data.
std::string data_root(const config::Composition& composition);

// One split of a task's dataset as the task sees it: the first `<split>_rows` rows when the task
// sets that parameter (e.g. `train_rows: 6000`), else all of it. A shortened split is named
// "train[:6000]", which is also its feature-cache key, so it never mixes with the full split.
DatasetSplit load_task_split(const config::Composition& composition, const config::TaskSpec& task,
                             const std::string& split);

std::vector<CachedFeatures> cache_features(const config::Composition& composition, ComposedSystem& system,
                                           cache::FeatureCache& store, const CachingOptions& options);

}  // namespace nexus
