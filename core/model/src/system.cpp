#include "nexus/model/system.hpp"

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>

#include <algorithm>
#include <filesystem>

#include "nexus/config/paths.hpp"
#include "nexus/model/device.hpp"
#include "nexus/registry/registry.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

config::ConfigError located(const config::Location& loc, const std::string& message, const std::string& hint = "") {
  return config::ConfigError({config::Diagnostic{loc, message, hint}});
}

// Plugin options from YAML, with `path`-typed options resolved against the composition's folder.
Options plugin_options(config::PluginSpec spec, const std::string& kind, const config::PluginCatalog& catalog,
                       const std::string& base_dir) {
  config::resolve_path_options(spec, kind, catalog, base_dir);
  Options o;
  for (const auto& [k, v] : spec.options) o.set(k, v);
  return o;
}

int64_t declared_or(Options& o, const config::PluginSpec& spec, const std::string& key, int64_t actual,
                    const std::string& what) {
  if (!o.has(key)) {
    o.set(key, std::to_string(actual));
    return actual;
  }
  const auto declared = o.get_int(key);
  if (declared != actual) {
    auto it = spec.option_locs.find(key);
    throw located(it != spec.option_locs.end() ? it->second : spec.loc,
                  what + " takes " + key + "=" + std::to_string(declared) + " but it must be " + std::to_string(actual),
                  "remove the option and nexus fills it in");
  }
  return declared;
}

template <class Fn>
auto creating(const config::PluginSpec& spec, const std::string& what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const registry::PluginError& e) {
    throw located(spec.loc, "cannot create " + what + ": " + e.what());
  }
}

// A teacher's tower. An option left to the data (`auto`, see profile/profile.hpp) that has not
// been sized takes min(d_in, d_out), the largest size any data could ask for, so a system can be
// built, and run, before its data is measured; `nexus train` measures it and rebuilds the tower.
std::shared_ptr<Tower> teacher_tower(const config::TeacherSpec& t, int64_t width, int64_t shared_dim,
                                     const config::PluginCatalog& catalog, const std::string& base,
                                     const registry::Registry& reg) {
  auto wopts = plugin_options(t.tower, "tower", catalog, base);
  const auto what = "the tower of teacher '" + t.name + "'";
  const auto d_in = declared_or(wopts, t.tower, "d_in", width, what);
  const auto d_out = declared_or(wopts, t.tower, "d_out", shared_dim, what);
  for (const auto& [key, value] : t.tower.options)
    if (value == kDataSized) wopts.set(key, std::to_string(std::min(d_in, d_out)));
  return creating(t.tower, what, [&] { return reg.create_tower(t.tower.plugin, wopts, t.tower.version); });
}

}  // namespace

void ComposedSystem::rebuild_towers(const config::Composition& comp, const registry::Registry& reg,
                                    const std::vector<size_t>& which) {
  const auto base = fs::path(comp.source).parent_path().string();
  const auto catalog = plugin_catalog(reg);
  for (size_t i : which) {
    auto& slot = teachers_.at(i);
    slot.tower = teacher_tower(comp.teachers.at(i), slot.teacher->width(), comp.shared_dim, catalog, base, reg);
  }
}

config::PluginCatalog plugin_catalog(const registry::Registry& registry) {
  config::PluginCatalog catalog;
  for (const auto& c : registry.components()) {
    if (c.status == registry::Status::Ok) catalog.push_back({c.kind, c.name, c.plugin_version, c.options_schema, ""});
    else if (c.kind != "-" && !c.name.empty())
      catalog.push_back({c.kind, c.name, c.plugin_version, c.options_schema, c.reason + " (" + c.library + ")"});
  }
  return catalog;
}

ComposedSystem ComposedSystem::build(const config::Composition& comp, const registry::Registry& reg) {
  ComposedSystem sys;
  sys.shared_dim_ = comp.shared_dim;
  const auto base = fs::path(comp.source).parent_path().string();
  const auto catalog = plugin_catalog(reg);
  for (const auto& t : comp.teachers) {
    TeacherSlot slot;
    slot.name = t.name;
    auto topts = plugin_options(t.teacher, "teacher", catalog, base);
    slot.teacher = creating(t.teacher, "teacher '" + t.name + "'",
                            [&] { return reg.create_teacher(t.teacher.plugin, topts, t.teacher.version); });
    const int64_t width = slot.teacher->width();
    if (t.width && *t.width != width)
      throw located(t.loc, "teacher '" + t.name + "' declares width " + std::to_string(*t.width) +
                               " but its plugin produces " + std::to_string(width));
    if (!t.modality.empty() && t.modality != to_string(slot.teacher->modality()))
      throw located(t.loc, "teacher '" + t.name + "' declares modality " + t.modality + " but its plugin takes " +
                               to_string(slot.teacher->modality()));
    slot.norm = FeatureNorm(width);
    slot.tower = teacher_tower(t, width, comp.shared_dim, catalog, base, reg);
    sys.teachers_.push_back(std::move(slot));
  }

  sys.router_input_ = comp.router.input;
  int64_t router_in = comp.shared_dim;
  if (sys.router_input_.rfind("teacher:", 0) == 0)
    for (const auto& s : sys.teachers_)
      if ("teacher:" + s.name == sys.router_input_) router_in = s.teacher->width();
  sys.condition_ = comp.router.condition;
  if (sys.condition_ == "task") {
    for (const auto& h : comp.heads)
      if (std::find(sys.contexts_.begin(), sys.contexts_.end(), h.task) == sys.contexts_.end()) sys.contexts_.push_back(h.task);
  } else if (sys.condition_ == "modality") {
    for (const auto& s : sys.teachers_) {
      const auto m = to_string(s.teacher->modality());
      if (std::find(sys.contexts_.begin(), sys.contexts_.end(), m) == sys.contexts_.end()) sys.contexts_.push_back(m);
    }
  }
  router_in += int64_t(sys.contexts_.size());
  auto ropts = plugin_options(comp.router.router, "router", catalog, base);
  if (!sys.contexts_.empty()) {
    // Routers that know about the context columns (e.g. `conditioned`) are told how many there
    // are; any other router simply sees them as more input features.
    const auto* rec = reg.find("router", comp.router.router.plugin, comp.router.router.version);
    bool takes_context = false;
    if (rec)
      for (const auto& o : parse_option_schema(rec->options_schema)) takes_context = takes_context || o.name == "n_context";
    if (takes_context) declared_or(ropts, comp.router.router, "n_context", int64_t(sys.contexts_.size()), "the router");
  }
  declared_or(ropts, comp.router.router, "d_in", router_in, "the router");
  declared_or(ropts, comp.router.router, "n_experts", int64_t(sys.teachers_.size()), "the router");
  sys.router_ = creating(comp.router.router, "the router",
                         [&] { return reg.create_router(comp.router.router.plugin, ropts, comp.router.router.version); });

  for (const auto& h : comp.heads) {
    auto hopts = plugin_options(h.tower, "tower", catalog, base);
    declared_or(hopts, h.tower, "d_in", comp.shared_dim, "head '" + h.name + "'");
    declared_or(hopts, h.tower, "d_out", h.outputs, "head '" + h.name + "'");
    sys.heads_.push_back({h.name, h.task, creating(h.tower, "head '" + h.name + "'", [&] {
                            return reg.create_tower(h.tower.plugin, hopts, h.tower.version);
                          })});
  }
  for (const auto& l : comp.losses) {
    auto lopts = plugin_options(l.loss, "loss", catalog, base);
    sys.losses_.push_back({l, creating(l.loss, "loss '" + l.loss.plugin + "'", [&] {
                             return reg.create_loss(l.loss.plugin, lopts, l.loss.version);
                           })});
  }
  return sys;
}

FeatureNormImpl::FeatureNormImpl(int64_t width) {
  mean = register_buffer("mean", torch::zeros({width}));
  inv_std = register_buffer("inv_std", torch::ones({width}));
}

at::Tensor FeatureNormImpl::forward(const at::Tensor& x) const { return (x - mean) * inv_std; }

void FeatureNormImpl::fit(const at::Tensor& features) {
  torch::NoGradGuard no_grad;
  auto f = features.to(torch::kFloat);
  f = f.index_select(0, f.isfinite().all(1).nonzero().squeeze(1));  // a poisoned row must not poison the statistics
  if (f.size(0) < 2) return;
  const auto std = f.std(0, true);
  mean.copy_(f.mean(0));
  // A constant coordinate carries no information: leave it at scale 1 rather than blow it up.
  inv_std.copy_((1.0 / std.clamp_min(1e-6)).masked_fill(std < 1e-6, 1.0));
}

void ComposedSystem::fit_feature_norms(const std::vector<std::vector<at::Tensor>>& per_teacher) {
  for (size_t i = 0; i < teachers_.size() && i < per_teacher.size(); ++i) {
    std::vector<at::Tensor> parts;
    for (const auto& f : per_teacher[i])
      if (f.defined() && f.size(0) > 1) parts.push_back(f);
    if (!parts.empty()) teachers_[i].norm->fit(torch::cat(parts));
  }
}

double LossSlot::weight_at(int64_t step) const {
  if (spec.warmup_steps <= 0 || step >= spec.warmup_steps) return spec.weight;
  const double t = double(step) / double(spec.warmup_steps);
  return spec.weight * (spec.start_factor + (1.0 - spec.start_factor) * t);
}

ForwardResult ComposedSystem::forward(const TeacherInput& batch, const std::string& modality, const std::string& task) {
  std::vector<at::Tensor> features(teachers_.size());
  for (size_t i = 0; i < teachers_.size(); ++i)
    if (to_string(teachers_[i].teacher->modality()) == modality) features[i] = teachers_[i].teacher->encode(batch).to(device_);
  bool any = false;
  for (const auto& f : features) any = any || f.defined();
  if (!any) throw std::invalid_argument("no teacher of this composition takes " + modality + " inputs");
  return fuse(features, task);
}

ForwardResult ComposedSystem::fuse(const std::vector<at::Tensor>& features, const std::string& task,
                                   const std::vector<at::Tensor>& precomputed) {
  const int64_t n = int64_t(teachers_.size());
  int64_t b = -1;
  for (const auto& f : features)
    if (f.defined()) b = f.size(0);
  if (int64_t(features.size()) != n || b < 0) throw std::invalid_argument("fuse() needs one feature slot per teacher, at least one defined");
  ForwardResult r;
  std::vector<at::Tensor> projected(static_cast<size_t>(n));
  const auto on_device = torch::TensorOptions().device(device_);
  auto available = torch::zeros({b, n}, on_device.dtype(torch::kBool));
  at::Tensor router_features, stacked;
  RouterOutput routing;
  {
    // Towers and router in bf16 on a GPU; what leaves this block is fp32.
    AutocastGuard bf16(device_, autocast());
    for (int64_t i = 0; i < n; ++i) {
      auto& slot = teachers_[size_t(i)];
      if (!features[size_t(i)].defined()) {
        projected[size_t(i)] = torch::zeros({b, shared_dim_}, on_device);
        continue;
      }
      projected[size_t(i)] = size_t(i) < precomputed.size() && precomputed[size_t(i)].defined()
                                 ? precomputed[size_t(i)].to(device_, torch::kFloat)
                                 : slot.tower->forward(slot.norm->forward(features[size_t(i)].to(device_))).to(torch::kFloat);
      available.select(1, i).fill_(true);
      r.ran.push_back(slot.name);
      if (router_input_ == "teacher:" + slot.name) router_features = features[size_t(i)].to(device_);
    }
    stacked = torch::stack(projected, 1);  // [B, N, D]
    const bool gate_missing = router_input_.rfind("teacher:", 0) == 0 && !router_features.defined();
    if (!router_features.defined())
      router_features = stacked.sum(1) / available.sum(1, true).clamp_min(1).to(stacked.dtype());
    if (!contexts_.empty()) {
      std::string context = task;
      if (condition_ == "modality")
        for (int64_t i = 0; i < n; ++i)
          if (features[size_t(i)].defined()) context = to_string(teachers_[size_t(i)].teacher->modality());
      router_features = with_context(router_features, context);
    }
    if (gate_missing) {
      // The router reads a teacher of another modality: it cannot decide here. That is fine while
      // each input has a single teacher available (the image teacher of a text-routed system).
      if ((available.sum(1) > 1).any().item<bool>())
        throw std::invalid_argument("the router reads " + router_input_.substr(8) + "'s features, which this " +
                                    "batch does not have, and several teachers could serve it");
      routing.weights = available.to(torch::kFloat);
      routing.selected = available;
    } else {
      routing = router_->route(router_features, available);
    }
  }
  r.weights = routing.weights.to(torch::kFloat);
  r.logits = routing.logits.defined() ? routing.logits.to(torch::kFloat) : routing.logits;
  r.selected = routing.selected.defined() ? routing.selected : routing.weights > 0;
  r.shared = (r.weights.unsqueeze(2) * stacked).sum(1);
  for (auto& h : heads_) r.heads[h.name] = h.tower->forward(r.shared);
  return r;
}

void ComposedSystem::to(const Placement& placement) {
  for (auto& [name, module] : trainable_modules()) module->to(placement.device);
  if (placement.move_teachers)
    for (auto& t : teachers_) t.teacher->to(placement.device);
  device_ = placement.device;
  autocast_ = placement.bf16_autocast;
}

at::Tensor ComposedSystem::with_context(const at::Tensor& router_features, const std::string& context) const {
  if (contexts_.empty()) return router_features;
  const auto it = std::find(contexts_.begin(), contexts_.end(), context);
  if (it == contexts_.end())
    throw std::invalid_argument("the router is conditioned on the " + condition_ + ", and '" + context +
                                "' is not one it was built for");
  auto one_hot = torch::zeros({router_features.size(0), int64_t(contexts_.size())}, router_features.options());
  one_hot.select(1, it - contexts_.begin()).fill_(1.0);
  return torch::cat({router_features, one_hot}, 1);
}

namespace {
TeacherInput rows_of(const TeacherInput& in, const at::Tensor& rows) {
  TeacherInput out;
  if (!in.texts.empty()) {
    const auto r = rows.contiguous();
    for (int64_t k = 0; k < r.numel(); ++k) out.texts.push_back(in.texts[size_t(r.data_ptr<int64_t>()[k])]);
  } else {
    out.tensor = in.tensor.index_select(0, rows);
  }
  return out;
}
}  // namespace

ForwardResult ComposedSystem::forward_routed(const TeacherInput& batch, const std::string& modality, const std::string& task,
                                             std::vector<int64_t>* teacher_rows) {
  const int64_t n = int64_t(teachers_.size()), b = batch.size();
  std::vector<int64_t> rows(size_t(n), 0);
  int64_t gate = -1;
  for (int64_t i = 0; i < n; ++i)
    if (router_input_ == "teacher:" + teachers_[size_t(i)].name && to_string(teachers_[size_t(i)].teacher->modality()) == modality)
      gate = i;
  if (gate < 0) {
    auto r = forward(batch, modality, task);
    for (int64_t i = 0; i < n; ++i)
      if (to_string(teachers_[size_t(i)].teacher->modality()) == modality) rows[size_t(i)] = b;
    if (teacher_rows) *teacher_rows = rows;
    return r;
  }
  const auto gate_features = teachers_[size_t(gate)].teacher->encode(batch).to(device_);
  rows[size_t(gate)] = b;
  const auto on_device = torch::TensorOptions().device(device_);
  auto available = torch::zeros({b, n}, on_device.dtype(torch::kBool));
  for (int64_t i = 0; i < n; ++i)
    if (to_string(teachers_[size_t(i)].teacher->modality()) == modality) available.select(1, i).fill_(true);
  RouterOutput routing;
  {
    AutocastGuard bf16(device_, autocast());
    routing = router_->route(with_context(gate_features, condition_ == "modality" ? modality : task), available);
  }
  ForwardResult r;
  r.weights = routing.weights.to(torch::kFloat);
  r.logits = routing.logits.defined() ? routing.logits.to(torch::kFloat) : routing.logits;
  r.selected = (routing.selected.defined() ? routing.selected : routing.weights > 0) & available;
  r.shared = torch::zeros({b, shared_dim_}, on_device);
  for (int64_t i = 0; i < n; ++i) {
    const auto mine = r.selected.select(1, i).nonzero().squeeze(1);
    if (mine.numel() == 0) continue;
    auto& slot = teachers_[size_t(i)];
    at::Tensor f;
    if (i == gate) {
      f = gate_features.index_select(0, mine);
    } else {
      f = slot.teacher->encode(rows_of(batch, mine.cpu())).to(device_);
      rows[size_t(i)] = mine.numel();
    }
    at::Tensor projected;
    {
      AutocastGuard bf16(device_, autocast());
      projected = slot.tower->forward(slot.norm->forward(f)).to(torch::kFloat);
    }
    r.shared.index_add_(0, mine, r.weights.index_select(0, mine).select(1, i).unsqueeze(1).to(projected.dtype()) * projected);
    r.ran.push_back(slot.name);
  }
  for (auto& h : heads_) r.heads[h.name] = h.tower->forward(r.shared);
  if (teacher_rows) *teacher_rows = rows;
  return r;
}

std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> ComposedSystem::trainable_modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> out;
  for (const auto& t : teachers_) out.emplace_back("norm." + t.name, t.norm.ptr());
  for (const auto& t : teachers_) out.emplace_back("tower." + t.name, t.tower);
  out.emplace_back("router", router_);
  for (const auto& h : heads_) out.emplace_back("head." + h.name, h.tower);
  return out;
}

std::shared_ptr<torch::nn::Module> find_module(const ComposedSystem& sys, const std::string& name) {
  for (const auto& [n, m] : sys.trainable_modules())
    if (n == name) return m;
  return nullptr;
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

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

std::string weights_digest(const ComposedSystem& sys) {
  Sha256 h;
  for (const auto& [name, module] : sys.trainable_modules()) h.update(name + ":" + module_digest(sys, name));
  return h.hex();
}

}  // namespace nexus
