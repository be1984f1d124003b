#include "nexus/increments/plan.hpp"

#include <nexus/plugin_api.hpp>
#include <nexus/text.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "nexus/model/system.hpp"

namespace nexus {

namespace {

bool same_plugin(const config::PluginSpec& a, const config::PluginSpec& b) {
  return a.plugin == b.plugin && a.version == b.version && a.options == b.options;
}

std::string modality_of(const ComposedSystem& sys, const std::string& teacher) {
  for (const auto& t : sys.teachers())
    if (t.name == teacher) return to_string(t.teacher->modality());
  return "";
}

}  // namespace

IncrementPlan plan_increment(const config::Composition& base, const ComposedSystem& base_sys,
                             const config::Composition& next, const ComposedSystem& next_sys, bool train_router) {
  IncrementPlan plan;
  plan.router_trained = train_router;
  std::map<std::string, size_t> base_teacher, next_teacher;
  for (size_t i = 0; i < base.teachers.size(); ++i) base_teacher[base.teachers[i].name] = i;
  for (size_t i = 0; i < next.teachers.size(); ++i) next_teacher[next.teachers[i].name] = i;
  for (size_t i = 0; i < next.teachers.size(); ++i) {
    const auto& t = next.teachers[i];
    const auto it = base_teacher.find(t.name);
    if (it == base_teacher.end()) {
      plan.added_teachers.push_back(t.name);
      continue;
    }
    const auto& bt = base.teachers[it->second];
    const auto fp_base = base_sys.teachers()[it->second].teacher->fingerprint().str();
    const auto fp_next = next_sys.teachers()[i].teacher->fingerprint().str();
    if (fp_base != fp_next) {
      plan.added_teachers.push_back(t.name);
      plan.notes.push_back("teacher '" + t.name + "' changed (fingerprint " + fp_base + " -> " + fp_next + "): retrained");
    } else if (!same_plugin(bt.tower, t.tower)) {
      plan.added_teachers.push_back(t.name);
      plan.notes.push_back("the tower of teacher '" + t.name + "' changed: retrained");
    } else {
      plan.kept_teachers.push_back(t.name);
      plan.frozen.insert("norm." + t.name);
      plan.frozen.insert("tower." + t.name);
    }
  }
  for (const auto& t : base.teachers)
    if (!next_teacher.count(t.name)) plan.removed_teachers.push_back(t.name);

  std::map<std::string, const config::HeadSpec*> base_head;
  for (const auto& h : base.heads) base_head[h.name] = &h;
  for (const auto& h : next.heads) {
    const auto it = base_head.find(h.name);
    if (it != base_head.end() && it->second->task == h.task && it->second->outputs == h.outputs &&
        same_plugin(it->second->tower, h.tower)) {
      plan.kept_heads.push_back(h.name);
      plan.frozen.insert("head." + h.name);
    } else {
      plan.added_heads.push_back(h.name);
      if (it != base_head.end()) plan.notes.push_back("head '" + h.name + "' changed: retrained");
    }
  }
  for (const auto& h : base.heads)
    if (std::none_of(next.heads.begin(), next.heads.end(), [&](const auto& n) { return n.name == h.name; }))
      plan.removed_heads.push_back(h.name);
  // The router weighs teachers of one modality against each other. A teacher that is the only one
  // of its modality gives it nothing new to decide: that modality's inputs reach it alone, and no
  // other input can reach it. Adding only such teachers keeps the router frozen, so every old
  // task's outputs stay bit-identical (a speech teacher added to a text + image run).
  bool new_choices = !plan.removed_teachers.empty();
  for (const auto& name : plan.added_teachers) {
    const auto m = modality_of(next_sys, name);
    int64_t same = 0;
    for (const auto& t : next_sys.teachers()) same += to_string(t.teacher->modality()) == m;
    new_choices = new_choices || same > 1;
  }
  if (train_router && !new_choices && !plan.added_teachers.empty()) {
    plan.router_trained = false;
    plan.notes.push_back("the router is kept as it is: each added teacher is the only one of its modality, so it has "
                         "nothing new to weigh");
  }
  if (!plan.router_trained) plan.frozen.insert("router");
  for (const auto& [name, module] : next_sys.trainable_modules())
    if (!plan.frozen.count(name)) plan.trained.push_back(name);
  return plan;
}

void check_plan(const IncrementPlan& plan, const config::Composition& next, const ComposedSystem& next_sys,
                const std::string& base_run) {
  if (!plan.changes_anything())
    throw InputError("the composition adds and removes no teacher or head of run " + base_run +
                     ": nothing to train incrementally (train it from scratch without --from)");
  for (const auto& name : plan.added_teachers) {
    const auto m = modality_of(next_sys, name);
    std::vector<std::string> have;
    for (const auto& h : next.heads) {
      const auto& mm = next.tasks.at(h.task).modality;
      if (std::find(have.begin(), have.end(), mm) == have.end()) have.push_back(mm);
    }
    if (std::find(have.begin(), have.end(), m) != have.end()) continue;
    const auto& spec = *std::find_if(next.teachers.begin(), next.teachers.end(), [&](const auto& t) { return t.name == name; });
    const std::string a_task = (std::string("aeiou").find(m.front()) != std::string::npos ? "an " : "a ") + m + " task";
    throw config::ConfigError({config::Diagnostic{
        spec.loc, "teacher '" + name + "' takes " + m + " inputs, and no head trains on " + a_task,
        "the run's heads take " + join(have) + " inputs; to add a capability, give the teacher file heads:, losses: "
        "and data: {tasks: ...} entries for " + a_task + " (a new head is trained only when asked for)"}});
  }
}

bool router_matters(ComposedSystem& sys, const std::vector<at::Tensor>& features, const std::string& task) {
  int64_t available = 0, slot = -1;
  for (size_t i = 0; i < features.size(); ++i)
    if (features[i].defined()) {
      ++available;
      slot = int64_t(i);
    }
  if (available != 1) return available > 1;
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> batch(features.size());
  batch[size_t(slot)] = features[size_t(slot)].narrow(0, 0, std::min<int64_t>(512, features[size_t(slot)].size(0)));
  const auto r = sys.fuse(batch, task);
  return !(r.weights.select(1, slot) == 1).all().item<bool>();
}

}  // namespace nexus
