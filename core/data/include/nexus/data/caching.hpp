// Filling the feature cache for a composition: every (task dataset, split) with every teacher
// that takes the dataset's modality. Entries already complete are reused, partial ones resumed.
#pragma once

#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/data/dataset.hpp"
#include "nexus/data/feature_cache.hpp"

namespace nexus {
class ComposedSystem;
namespace dist {
class ProcessGroup;
}

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
  // This process's share of every entry (data-parallel ranks each compute one part; see
  // feature_cache.hpp). The entries are complete only after merge_features.
  cache::Part part;
};

// The feature cache folder: `given`, else $NEXUS_CACHE_DIR/features (default ~/.cache/nexus/features).
std::string feature_cache_root(const std::string& given = "");

std::vector<CachedFeatures> cache_features(const config::Composition& composition, ComposedSystem& system,
                                           cache::FeatureCache& store, const CachingOptions& options);

// Joins the parts that cache_features wrote with options.part into complete entries. Throws
// cache::CacheError naming every shard that no part holds.
std::vector<CachedFeatures> merge_features(const config::Composition& composition, ComposedSystem& system,
                                           cache::FeatureCache& store, const CachingOptions& options);

// Caching for data-parallel workers; every rank calls it. When all ranks see one cache folder
// (checked with a token file that rank 0 writes), rank r computes part r of WORLD_SIZE of every
// entry and rank 0 merges them; otherwise (machines that do not share the folder) the first
// worker of each machine, local_rank 0, computes everything for its machine. Throws on every rank
// when any rank fails, naming what is missing. Returns this rank's results.
struct DistributedCaching {
  bool sharded = false;
  std::vector<CachedFeatures> features;
};
DistributedCaching cache_features_distributed(const config::Composition& composition, ComposedSystem& system,
                                              cache::FeatureCache& store, CachingOptions options,
                                              dist::ProcessGroup& group, int local_rank);

}  // namespace nexus
