#include "nexus/model/inference.hpp"

#include <nexus/teacher.hpp>
#include <torch/torch.h>

#include <set>

#include "nexus/model/system.hpp"

namespace nexus {

at::Tensor head_outputs(ComposedSystem& sys, const std::vector<at::Tensor>& features, const std::string& task,
                        const std::string& head) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, module] : sys.trainable_modules()) module->eval();
  int64_t rows = 0;
  for (const auto& f : features)
    if (f.defined()) rows = f.size(0);
  std::vector<at::Tensor> parts;
  for (int64_t b = 0; b < rows; b += 4096) {
    const int64_t m = std::min<int64_t>(4096, rows - b);
    std::vector<at::Tensor> batch(features.size());
    for (size_t i = 0; i < batch.size(); ++i)
      if (features[i].defined()) batch[i] = features[i].narrow(0, b, m);
    parts.push_back(sys.fuse(batch, task).heads.at(head).cpu());
  }
  return torch::cat(parts);
}

std::vector<ExampleForward> forward_examples(const config::Composition& comp, ComposedSystem& sys, int64_t batch) {
  torch::NoGradGuard no_grad;
  std::vector<ExampleForward> out;
  std::set<std::string> done;
  for (const auto& slot : sys.teachers()) {
    const std::string modality = to_string(slot.teacher->modality());
    if (!done.insert(modality).second) continue;
    std::string task;
    for (const auto& h : comp.heads)
      if (task.empty() && comp.tasks.count(h.task) && comp.tasks.at(h.task).modality == modality) task = h.task;
    if (task.empty() && !sys.router_contexts().empty() && comp.router.condition == "task") task = sys.router_contexts().front();
    const auto result = sys.forward(slot.teacher->example_input(batch), modality, task);
    ExampleForward e;
    e.modality = modality;
    e.batch = batch;
    e.teachers_run = result.ran;
    e.shared_shape = {result.shared.size(0), result.shared.size(1)};
    e.shared_finite = result.shared.isfinite().all().item<bool>();
    const auto mean_w = result.weights.mean(0).contiguous();
    for (int64_t i = 0; i < mean_w.numel(); ++i) e.mean_routing_weights.push_back(mean_w[i].item<double>());
    for (const auto& [name, t] : result.heads) e.heads[name] = {t.size(0), t.size(1)};
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace nexus
