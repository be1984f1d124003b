#include "nexus/increments/repair.hpp"

#include <nexus/plugin_api.hpp>
#include <nexus/text.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>

#include "nexus/base/errors.hpp"
#include "nexus/data/task_features.hpp"
#include "nexus/increments/plan.hpp"
#include "nexus/model/inference.hpp"
#include "nexus/model/system.hpp"

namespace nexus {

RepairPolicy parse_repair_policy(const std::string& text) {
  using W = RepairPolicy::When;
  if (text == "auto") return {RepairScope::Heads, W::AsNeeded};
  if (text == "none") return {RepairScope::None, W::Always};
  if (text == "router") return {RepairScope::Router, W::Always};
  if (text == "towers") return {RepairScope::Towers, W::Always};
  if (text == "heads") return {RepairScope::Heads, W::Always};
  throw InputError("--repair takes auto, router, towers, heads or none, not '" + text + "'");
}

std::string to_string(const RepairPolicy& p) {
  return p.when == RepairPolicy::When::AsNeeded ? "auto" : to_string(p.scope);
}

double head_accuracy(ComposedSystem& sys, const SplitFeatures& split, const config::HeadSpec& head) {
  const auto out = head_outputs(sys, split.features, head.task, head.name);
  return (out.argmax(1) == split.labels).to(torch::kDouble).mean().item<double>();
}

ContractCheck check_contract(const config::Composition& comp, ComposedSystem& sys, const SplitFeatures& test,
                             const config::HeadSpec& head, const std::vector<ProbeScore>& probes) {
  ContractCheck c;
  c.task = head.task;
  c.composite = head_accuracy(sys, test, head);
  for (const auto& p : probes)
    if (c.best_teacher.empty() || p.test_accuracy > c.best_probe) {
      c.best_probe = p.test_accuracy;
      c.best_teacher = p.teacher;
    }
  c.retention = c.best_probe > 0 ? c.composite / c.best_probe : 0.0;
  c.contract = retention_contract(comp, head.task);
  return c;
}

namespace {

// Why the tasks asked for a component: their retention where it misses the contract, else the
// explicit scope.
std::string reason(const std::vector<std::string>& tasks, const std::vector<ContractCheck>& checks, RepairScope scope) {
  std::vector<std::string> failing, asked;
  for (const auto& task : tasks) {
    const auto c = std::find_if(checks.begin(), checks.end(), [&](const auto& c) { return c.task == task && !c.holds(); });
    if (c == checks.end()) {
      asked.push_back(task);
      continue;
    }
    char b[160];
    std::snprintf(b, sizeof b, "%s %.4f < %.2f", task.c_str(), c->retention, c->contract);
    failing.push_back(b);
  }
  std::string why = failing.empty() ? "" : "retention " + join(failing);
  if (!asked.empty()) why += (why.empty() ? "" : "; ") + std::string("--repair ") + to_string(scope) + " (" + join(asked) + ")";
  return why;
}

}  // namespace

Widening widen(RepairScope scope, const std::vector<std::string>& tasks, const config::Composition& comp,
               const ComposedSystem& sys, const std::set<std::string>& frozen, const std::vector<ContractCheck>& checks) {
  Widening w;
  w.scope = scope;
  std::map<std::string, std::vector<std::string>> asked;  // component -> the tasks that ask for it
  for (const auto& task : tasks) {
    if (scope == RepairScope::Towers) {
      const auto& modality = comp.tasks.at(task).modality;
      for (const auto& t : sys.teachers())
        if (to_string(t.teacher->modality()) == modality) asked["tower." + t.name].push_back(task);
    } else if (scope == RepairScope::Heads) {
      for (const auto& h : comp.heads)
        if (h.task == task) asked["head." + h.name].push_back(task);
    }
  }
  for (const auto& [name, module] : sys.trainable_modules()) {
    const auto it = asked.find(name);
    if (it == asked.end() || !frozen.count(name)) continue;
    w.components.push_back(name);
    w.why[name] = reason(it->second, checks, scope);
  }
  return w;
}

bool can_change(ComposedSystem& sys, const TaskData& data, const std::set<std::string>& frozen) {
  if (!frozen.count("head." + data.head)) return true;
  for (size_t i = 0; i < sys.teachers().size(); ++i)
    if (data.train[i].defined() && !frozen.count("tower." + sys.teachers()[i].name)) return true;
  return !frozen.count("router") && router_matters(sys, data.val, data.task);
}

}  // namespace nexus
