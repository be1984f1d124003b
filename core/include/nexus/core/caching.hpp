// Filling the feature cache for a composition: every (task dataset, split) with every teacher
// that takes the dataset's modality. Entries already complete are reused, partial ones resumed.
#pragma once

#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
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
  int64_t batch_size = 64;  // rows per teacher call
  bool progress = true;
};

// Where a composition's data lives: data.root relative to the composition file, else ./data.
std::string data_root(const config::Composition& composition);

std::vector<CachedFeatures> cache_features(const config::Composition& composition, ComposedSystem& system,
                                           cache::FeatureCache& store, const CachingOptions& options);

}  // namespace nexus
