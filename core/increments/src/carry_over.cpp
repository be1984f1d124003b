#include "nexus/increments/carry_over.hpp"

#include <nexus/plugin_api.hpp>
#include <torch/torch.h>

#include <algorithm>

#include "nexus/model/system.hpp"

namespace nexus {

namespace {

void copy_state(const torch::nn::Module& from, torch::nn::Module& to, const std::string& what) {
  torch::NoGradGuard no_grad;
  auto copy = [&](const auto& source, auto target, const std::string& kind) {
    for (auto& item : target) {
      const auto* s = source.find(item.key());
      if (!s || s->sizes() != item.value().sizes())
        throw std::runtime_error(what + ": " + kind + " '" + item.key() + "' does not match the base run's");
      item.value().copy_(*s);
    }
  };
  copy(from.named_parameters(true), to.named_parameters(true), "parameter");
  copy(from.named_buffers(true), to.named_buffers(true), "buffer");
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
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // checked first, copied only if all map
  std::string missing;
  auto pair_up = [&](const auto& source, const auto& target, const std::string& kind) {
    for (const auto& item : target) {
      const auto* s = source.find(item.key());
      if (!s && missing.empty()) missing = "the base run's router has no " + kind + " '" + item.key() + "'";
      if (s) copies.emplace_back(*s, item.value());
    }
  };
  pair_up(base.router()->named_parameters(true), next.router()->named_parameters(true), "parameter");
  pair_up(base.router()->named_buffers(true), next.router()->named_buffers(true), "buffer");
  if (!missing.empty()) return missing;
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

}  // namespace nexus
