#include "nexus/data/caching.hpp"

#include <nexus/teacher.hpp>
#include <nexus/text.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "nexus/base/progress.hpp"
#include "nexus/data/dataset.hpp"
#include "nexus/distributed/process_group.hpp"
#include "nexus/model/system.hpp"
#include "nexus/registry/probe_cache.hpp"

namespace nexus {
namespace fs = std::filesystem;

std::string feature_cache_root(const std::string& given) {
  if (!given.empty()) return given;
  return (fs::path(registry::default_cache_dir()) / "features").string();
}

namespace {

cache::BuildOptions build_options(const CachingOptions& options) {
  cache::BuildOptions build;
  build.dtype = options.dtype;
  build.shard_rows = std::max<int64_t>(options.batch_size, 4096 / options.batch_size * options.batch_size);
  build.part = options.part;
  return build;
}

// Calls fn(slot, split data, key, result) for every entry the composition needs; returns the
// results, which fn completes.
template <typename Fn>
std::vector<CachedFeatures> for_each_entry(const config::Composition& comp, ComposedSystem& system,
                                           const CachingOptions& options, Fn&& fn) {
  std::vector<CachedFeatures> out;
  for (const auto& [task_name, task] : comp.tasks) {
    auto splits = options.splits;
    if (contains(splits, "test"))  // a task's report splits are scored with its test split
      for (const auto& s : task.report_splits()) splits.push_back(s);
    for (const auto& split : splits) {
      const auto data = load_task_split(comp, task, split);
      for (const auto& slot : system.teachers()) {
        if (to_string(slot.teacher->modality()) != data.modality) continue;
        CachedFeatures r{slot.name, task_name, task.dataset, data.split, {}, 0, 0};
        fn(slot, data, cache::EntryKey{slot.name, slot.teacher->fingerprint().str(), data.dataset_id, data.split}, r);
        out.push_back(std::move(r));
      }
    }
  }
  return out;
}

}  // namespace

std::vector<CachedFeatures> cache_features(const config::Composition& comp, ComposedSystem& system,
                                           cache::FeatureCache& store, const CachingOptions& options) {
  const auto build = build_options(options);
  return for_each_entry(comp, system, options, [&](const TeacherSlot& slot, const DatasetSplit& data,
                                                   const cache::EntryKey& key, CachedFeatures& r) {
    const auto started = std::chrono::steady_clock::now();
    ProgressLine progress("cache " + slot.name + " " + r.dataset + "/" + data.split +
                              (options.part.whole() ? "" : " (" + options.part.str() + ")"),
                          options.part.owned_rows(data.size(), build.shard_rows, key.id()));
    auto with_progress = build;
    if (options.progress) with_progress.progress = [&](int64_t done, int64_t, int64_t fresh) { progress.update(done, fresh); };
    r.manifest = store.build(key, data.size(), slot.teacher->width(), [&](int64_t first, int64_t count) {
      torch::NoGradGuard no_grad;
      std::vector<at::Tensor> parts;
      for (int64_t b = first; b < first + count; b += options.batch_size) {
        const int64_t n = std::min(options.batch_size, first + count - b);
        parts.push_back(slot.teacher->encode(data.batch(b, n)).to(torch::kCPU, torch::kFloat));
      }
      r.computed_rows += count;
      return torch::cat(parts);
    }, with_progress);
    progress.finish();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  });
}

std::vector<CachedFeatures> merge_features(const config::Composition& comp, ComposedSystem& system,
                                           cache::FeatureCache& store, const CachingOptions& options) {
  const auto build = build_options(options);
  return for_each_entry(comp, system, options, [&](const TeacherSlot& slot, const DatasetSplit& data,
                                                   const cache::EntryKey& key, CachedFeatures& r) {
    r.manifest = store.merge(key, data.size(), slot.teacher->width(), build);
  });
}

namespace {

// True on every rank when every rank sees the file that rank 0 writes into the cache folder.
bool folder_is_shared(dist::ProcessGroup& group, const std::string& root) {
  auto token = torch::zeros({1}, torch::kLong);
  if (group.rank() == 0) token[0] = int64_t(std::random_device{}() & 0x7fffffff) << 20 | int64_t(::getpid() & 0xfffff);
  group.broadcast({token});
  const auto marker = fs::path(root) / (".shared-check-" + std::to_string(token[0].item<int64_t>()));
  if (group.rank() == 0) {
    fs::create_directories(root);
    std::ofstream(marker) << "nexus\n";
  }
  group.barrier();
  const bool seen = fs::exists(marker);
  const bool shared = !group.any(!seen);
  group.barrier();  // everyone has looked
  if (group.rank() == 0) {
    std::error_code ec;
    fs::remove(marker, ec);
  }
  return shared;
}

}  // namespace

DistributedCaching cache_features_distributed(const config::Composition& comp, ComposedSystem& system,
                                              cache::FeatureCache& store, CachingOptions options,
                                              dist::ProcessGroup& group, int local_rank) {
  DistributedCaching out;
  out.sharded = folder_is_shared(group, store.root());
  std::string failure;
  auto run = [&] {
    try {
      out.features = cache_features(comp, system, store, options);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  };
  if (out.sharded) {
    options.part = {group.rank(), group.world_size()};
    run();
    // Ranks finish their parts far apart: arrive() waits as long as the others are alive, where a
    // collective would time out. A rank that failed still arrives, so that nobody waits on it.
    const bool built = group.arrive("features cached", failure.empty());
    if (group.rank() == 0 && built) {
      try {
        auto merged = merge_features(comp, system, store, options);
        for (size_t i = 0; i < merged.size() && i < out.features.size(); ++i) merged[i].computed_rows = out.features[i].computed_rows;
        out.features = std::move(merged);
      } catch (const std::exception& e) {
        failure = e.what();
      }
    }
    if (group.any(!failure.empty())) {
      if (!failure.empty()) throw std::runtime_error(failure);
      throw std::runtime_error(built ? "rank 0 could not merge the feature cache (its log says what is missing)"
                                     : "another rank failed while caching features (its log says why)");
    }
    return out;
  }
  spdlog::info("the cache folder {} is not shared by all workers: each machine caches for itself", store.root());
  options.part = {};
  if (local_rank == 0) run();
  const bool first_ok = group.arrive("features cached by each machine's first worker", failure.empty());
  if (local_rank != 0 && first_ok) run();  // finds what its machine's first worker computed
  if (group.any(!failure.empty()) || !first_ok) {
    if (!failure.empty()) throw std::runtime_error(failure);
    throw std::runtime_error("another rank failed while caching features (its log says why)");
  }
  return out;
}

}  // namespace nexus
