#include "nexus/core/incremental.hpp"

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "nexus/core/system.hpp"

namespace nexus {

namespace {

bool same_plugin(const config::PluginSpec& a, const config::PluginSpec& b) {
  return a.plugin == b.plugin && a.version == b.version && a.options == b.options;
}

std::shared_ptr<torch::nn::Module> find_module(const ComposedSystem& sys, const std::string& name) {
  for (const auto& [n, m] : sys.trainable_modules())
    if (n == name) return m;
  return nullptr;
}

void copy_state(const torch::nn::Module& from, torch::nn::Module& to, const std::string& what) {
  torch::NoGradGuard no_grad;
  auto src = from.named_parameters(true);
  for (auto& item : to.named_parameters(true)) {
    const auto* s = src.find(item.key());
    if (!s || s->sizes() != item.value().sizes())
      throw std::runtime_error(what + ": parameter '" + item.key() + "' does not match the base run's");
    item.value().copy_(*s);
  }
  auto bsrc = from.named_buffers(true);
  for (auto& item : to.named_buffers(true)) {
    const auto* s = bsrc.find(item.key());
    if (!s || s->sizes() != item.value().sizes())
      throw std::runtime_error(what + ": buffer '" + item.key() + "' does not match the base run's");
    item.value().copy_(*s);
  }
}

// Maps `from` into `to` along every dimension that counts the teachers (n_from in `from`, n_to in
// `to`); index[j] is the old teacher of new teacher j, or -1 (keep `to`'s values).
bool map_tensor(const at::Tensor& from, at::Tensor& to, int64_t n_from, int64_t n_to, const std::vector<int64_t>& index) {
  if (from.dim() != to.dim()) return false;
  bool identity = n_from == n_to;
  for (int64_t j = 0; j < n_to && identity; ++j) identity = index[size_t(j)] == j;
  if (from.sizes() == to.sizes() && identity) {
    to.copy_(from);
    return true;
  }
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < from.dim(); ++d) {
    if (from.size(d) == to.size(d)) {
      // Unchanged size: a teacher dimension only when the teachers were reordered at equal count.
      if (n_from == n_to && !identity && from.size(d) == n_from) dims.push_back(d);
      continue;
    }
    if (from.size(d) != n_from || to.size(d) != n_to) return false;
    dims.push_back(d);
  }
  std::vector<int64_t> clamped(index.size());
  std::transform(index.begin(), index.end(), clamped.begin(), [](int64_t i) { return std::max<int64_t>(i, 0); });
  const auto gather = torch::tensor(clamped, torch::kLong);
  const auto valid_1d = torch::tensor(index, torch::kLong) >= 0;
  auto mapped = from;
  auto valid = torch::ones(to.sizes(), torch::kBool);
  for (const auto d : dims) {
    mapped = mapped.index_select(d, gather);
    std::vector<int64_t> shape(size_t(to.dim()), 1);
    shape[size_t(d)] = n_to;
    valid = valid & valid_1d.view(shape);
  }
  to.copy_(torch::where(valid, mapped.to(to.dtype()), to));
  return true;
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
  if (!train_router) plan.frozen.insert("router");
  for (const auto& [name, module] : next_sys.trainable_modules())
    if (!plan.frozen.count(name)) plan.trained.push_back(name);
  return plan;
}

std::string carry_over(const IncrementPlan& plan, const ComposedSystem& base, ComposedSystem& next) {
  for (const auto& name : plan.frozen) {
    if (name == "router") continue;
    auto from = find_module(base, name);
    auto to = find_module(next, name);
    if (!from || !to) throw std::runtime_error("cannot carry over '" + name + "': not in both systems");
    copy_state(*from, *to, name);
  }
  // The router: its per-teacher outputs follow the teachers by name.
  std::vector<int64_t> index;
  for (const auto& t : next.teachers()) {
    int64_t old = -1;
    for (size_t i = 0; i < base.teachers().size(); ++i)
      if (base.teachers()[i].name == t.name &&
          std::find(plan.kept_teachers.begin(), plan.kept_teachers.end(), t.name) != plan.kept_teachers.end())
        old = int64_t(i);
    index.push_back(old);
  }
  const int64_t n_from = int64_t(base.teachers().size()), n_to = int64_t(next.teachers().size());
  torch::NoGradGuard no_grad;
  auto src = base.router()->named_parameters(true);
  auto bsrc = base.router()->named_buffers(true);
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // checked first, copied only if all map
  for (auto& item : next.router()->named_parameters(true)) {
    const auto* s = src.find(item.key());
    if (!s) return "the base run's router has no parameter '" + item.key() + "'";
    copies.emplace_back(*s, item.value());
  }
  for (auto& item : next.router()->named_buffers(true)) {
    const auto* s = bsrc.find(item.key());
    if (!s) return "the base run's router has no buffer '" + item.key() + "'";
    copies.emplace_back(*s, item.value());
  }
  std::vector<at::Tensor> mapped;
  for (auto& [from, to] : copies) {
    auto candidate = to.detach().clone();
    if (!map_tensor(from, candidate, n_from, n_to, index)) {
      return "router tensor of shape " + c10::str(from.sizes()) + " cannot be mapped onto " + c10::str(to.sizes());
    }
    mapped.push_back(candidate);
  }
  for (size_t i = 0; i < copies.size(); ++i) copies[i].second.copy_(mapped[i]);
  return "";
}

std::string module_digest(const ComposedSystem& sys, const std::string& module_name) {
  auto module = find_module(sys, module_name);
  if (!module) throw std::runtime_error("no module '" + module_name + "'");
  Sha256 h;
  for (const auto& item : module->named_parameters(true)) {
    auto c = item.value().detach().contiguous().to(torch::kCPU);
    h.update("p:" + item.key());
    h.update(c.data_ptr(), size_t(c.nbytes()));
  }
  for (const auto& item : module->named_buffers(true)) {
    auto c = item.value().detach().contiguous().to(torch::kCPU);
    h.update("b:" + item.key());
    h.update(c.data_ptr(), size_t(c.nbytes()));
  }
  return h.hex();
}

std::string weights_digest(const ComposedSystem& sys) {
  Sha256 h;
  for (const auto& [name, module] : sys.trainable_modules()) h.update(name + ":" + module_digest(sys, name));
  return h.hex();
}

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
