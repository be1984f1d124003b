#include "nexus/data/task_features.hpp"

#include <nexus/teacher.hpp>

#include "nexus/data/dataset.hpp"
#include "nexus/data/feature_cache.hpp"
#include "nexus/model/system.hpp"

namespace nexus {

SplitFeatures load_split_features(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                                  const std::string& task_name, const std::string& split) {
  const auto& task = comp.tasks.at(task_name);
  const auto data = load_task_split(comp, task, split);
  SplitFeatures out;
  out.labels = data.labels;
  out.dataset_id = data.dataset_id;
  out.split = data.split;
  out.classes = data.classes;
  for (const auto& slot : sys.teachers()) {
    if (to_string(slot.teacher->modality()) != data.modality) {
      out.features.emplace_back();
      continue;
    }
    const cache::EntryKey key{slot.name, slot.teacher->fingerprint().str(), data.dataset_id, data.split};
    auto m = store.find(key);
    if (!m || !m->complete)
      throw cache::CacheError("no cached features of teacher '" + slot.name + "' for " + task.dataset + "/" + data.split +
                              ": run `nexus cache build` first");
    out.features.push_back(store.load(*m));
  }
  return out;
}

std::vector<TaskData> load_task_data(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store) {
  std::vector<TaskData> out;
  for (const auto& head : comp.heads) {
    TaskData td;
    td.task = head.task;
    td.head = head.name;
    auto train = load_split_features(comp, sys, store, head.task, "train");
    auto val = load_split_features(comp, sys, store, head.task, "val");
    td.train = std::move(train.features);
    td.train_labels = train.labels;
    td.val = std::move(val.features);
    td.val_labels = val.labels;
    out.push_back(std::move(td));
  }
  return out;
}

}  // namespace nexus
