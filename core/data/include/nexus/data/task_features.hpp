// A composition's tasks as training and evaluation read them: per teacher (composition order) the
// cached features of a task's split, undefined where the teacher does not take the task's
// modality, with the split's labels.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "nexus/config/composition.hpp"

namespace nexus {
class ComposedSystem;
namespace cache {
class FeatureCache;
}

// One split of one task. Throws TrainingError when an entry is missing (run `nexus cache build`).
struct SplitFeatures {
  std::vector<at::Tensor> features;
  at::Tensor labels;
  std::string dataset_id, split;  // split as the cache names it, e.g. "train[:6000]"
  std::vector<std::string> classes;  // label names, by label index
};
SplitFeatures load_split_features(const config::Composition& composition, ComposedSystem& system,
                                  cache::FeatureCache& store, const std::string& task, const std::string& split);

// One task's training material: its train and val splits.
struct TaskData {
  std::string task, head;
  std::vector<at::Tensor> train, val;
  at::Tensor train_labels, val_labels;
  // The previous composite's head outputs on the same rows, for the anti-forgetting term of an
  // incremental run (TrainOptions::anti_forgetting); undefined otherwise.
  at::Tensor train_reference, val_reference;
};

// Reads the complete (checksum-verified) cache entries of every head's task, train and val.
std::vector<TaskData> load_task_data(const config::Composition& composition, ComposedSystem& system,
                                     cache::FeatureCache& store);

}  // namespace nexus
