#include "nexus/core/caching.hpp"

#include <nexus/teacher.hpp>
#include <torch/torch.h>

#include <filesystem>

#include "nexus/core/dataset.hpp"
#include "nexus/core/progress.hpp"
#include "nexus/core/system.hpp"

namespace nexus {
namespace fs = std::filesystem;

std::string data_root(const config::Composition& comp) {
  if (comp.data_root.empty()) return "data";
  if (fs::path(comp.data_root).is_absolute()) return comp.data_root;
  return (fs::path(comp.source).parent_path() / comp.data_root).lexically_normal().string();
}

DatasetSplit load_task_split(const config::Composition& comp, const config::TaskSpec& task, const std::string& split) {
  auto d = load_dataset(data_root(comp), task.dataset, split);
  const auto it = task.params.find(split + "_rows");
  if (it == task.params.end()) return d;
  const int64_t n = std::stoll(it->second);  // validated as a positive integer by the config checker
  if (n >= d.size()) return d;
  d.labels = d.labels.narrow(0, 0, n).clone();
  if (d.images.defined()) d.images = d.images.narrow(0, 0, n).clone();
  if (!d.texts.empty()) d.texts.resize(size_t(n));
  d.split = split + "[:" + std::to_string(n) + "]";
  return d;
}

std::vector<CachedFeatures> cache_features(const config::Composition& comp, ComposedSystem& system,
                                           cache::FeatureCache& store, const CachingOptions& options) {
  std::vector<CachedFeatures> out;
  for (const auto& [task_name, task] : comp.tasks) {
    for (const auto& split : options.splits) {
      const auto data = load_task_split(comp, task, split);
      for (const auto& slot : system.teachers()) {
        if (to_string(slot.teacher->modality()) != data.modality) continue;
        CachedFeatures r{slot.name, task_name, task.dataset, data.split, {}, 0, 0};
        const cache::EntryKey key{slot.name, slot.teacher->fingerprint().str(), data.dataset_id, data.split};
        const auto started = std::chrono::steady_clock::now();
        ProgressLine progress("cache " + slot.name + " " + task.dataset + "/" + data.split, data.size());
        cache::BuildOptions build;
        build.dtype = options.dtype;
        build.shard_rows = std::max<int64_t>(options.batch_size, 4096 / options.batch_size * options.batch_size);
        if (options.progress) build.progress = [&](int64_t done, int64_t, int64_t fresh) { progress.update(done, fresh); };
        r.manifest = store.build(key, data.size(), slot.teacher->width(), [&](int64_t first, int64_t count) {
          torch::NoGradGuard no_grad;
          std::vector<at::Tensor> parts;
          for (int64_t b = first; b < first + count; b += options.batch_size) {
            const int64_t n = std::min(options.batch_size, first + count - b);
            parts.push_back(slot.teacher->encode(data.batch(b, n)).to(torch::kCPU, torch::kFloat));
          }
          r.computed_rows += count;
          return torch::cat(parts);
        }, build);
        progress.finish();
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        out.push_back(r);
      }
    }
  }
  return out;
}

}  // namespace nexus
