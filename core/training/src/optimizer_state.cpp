#include "nexus/training/optimizer_state.hpp"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include "nexus/base/files.hpp"
#include "nexus/model/system.hpp"
#include "nexus/run/checkpoints.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

using run::CheckpointError;

// AdamW keys its state by the parameter's TensorImpl: its address as text in libtorch 1.13, the
// pointer itself in later versions (the CUDA build's). Key is the map's own key type.
using StateKey = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;
template <typename Key>
Key key_of(c10::TensorImpl* impl) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;  // what c10::guts::to_string wrote
    text << impl;
    return text.str();
  } else {
    return impl;
  }
}
StateKey state_key(const at::Tensor& p) { return key_of<StateKey>(p.unsafeGetTensorImpl()); }

std::vector<at::Tensor> all_parameters(const torch::optim::Optimizer& optimizer) {
  std::vector<at::Tensor> out;
  for (const auto& g : optimizer.param_groups())
    for (const auto& p : g.params()) out.push_back(p);
  return out;
}

nlohmann::json read_optimizer_json(const fs::path& file) {
  if (!fs::exists(file)) {
    (void)run::read_checkpoint_tensors(file.parent_path() / "optimizer.safetensors");  // refuses an old optimizer.pt by name
    throw CheckpointError("checkpoint " + file.parent_path().string() + " has no optimizer.json");
  }
  try {
    return nlohmann::json::parse(read_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError("corrupt checkpoint file " + file.string() + ": " + e.what());
  }
}

// The file's groups and parameters against the optimizer's; throws naming the first difference.
void check_optimizer_fits(const nlohmann::json& j, const torch::optim::AdamW& optimizer,
                          const std::vector<std::optional<std::string>>& names, const std::map<std::string, at::Tensor>& stored,
                          const fs::path& dir) {
  const auto misfit = [&](const std::string& what) {
    return CheckpointError("optimizer state in " + dir.string() + " does not fit this run: " + what);
  };
  if (j.at("optimizer") != "AdamW") throw misfit("it is for " + j.at("optimizer").dump() + ", the trainer uses AdamW");
  const auto& groups = j.at("groups");
  if (groups.size() != optimizer.param_groups().size())
    throw misfit(std::to_string(groups.size()) + " parameter groups, the trainer has " + std::to_string(optimizer.param_groups().size()));
  for (size_t g = 0; g < groups.size(); ++g)
    if (groups[g].at("params").get<size_t>() != optimizer.param_groups()[g].params().size())
      throw misfit("group " + std::to_string(g) + " has " + groups[g].at("params").dump() + " parameters, the trainer's has " +
                   std::to_string(optimizer.param_groups()[g].params().size()));
  const auto params = all_parameters(optimizer);
  const auto& recorded = j.at("params");
  if (recorded.size() != params.size())
    throw misfit(std::to_string(recorded.size()) + " parameters, the trainer has " + std::to_string(params.size()));
  size_t expected_tensors = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& r = recorded[i];
    const std::string name = names[i] ? *names[i] : "#" + std::to_string(i);
    if (!r.at("name").is_null() && names[i] && r.at("name").get<std::string>() != *names[i])
      throw misfit("parameter " + std::to_string(i) + " is '" + r.at("name").get<std::string>() + "', the trainer's is '" + *names[i] + "'");
    if (r.at("step").is_null()) continue;
    for (const char* kind : {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}) {
      const auto t = stored.find(std::to_string(i) + "." + kind);
      if (t == stored.end()) {
        if (std::string(kind) == "max_exp_avg_sq" && !groups[0].value("amsgrad", false)) continue;
        throw misfit("it has no " + std::string(kind) + " for parameter '" + name + "'");
      }
      ++expected_tensors;
      if (t->second.sizes() != params[i].sizes() || t->second.scalar_type() != params[i].scalar_type())
        throw misfit("the " + std::string(kind) + " of parameter '" + name + "' is " + c10::str(t->second.sizes()) + " " +
                     c10::toString(t->second.scalar_type()) + ", the parameter is " + c10::str(params[i].sizes()) + " " +
                     c10::toString(params[i].scalar_type()));
    }
  }
  if (stored.size() != expected_tensors)
    throw misfit("optimizer.safetensors holds " + std::to_string(stored.size()) + " tensors, the parameters' state " +
                 std::to_string(expected_tensors));
}

}  // namespace

std::vector<std::optional<std::string>> optimizer_parameter_names(const run::NamedModules& modules,
                                                                  const torch::optim::Optimizer& optimizer) {
  std::map<const void*, std::string> by_impl;
  for (const auto& [module_name, module] : modules)
    for (const auto& p : module->named_parameters()) by_impl.emplace(p.value().unsafeGetTensorImpl(), module_name + "/" + p.key());
  std::vector<std::optional<std::string>> out;
  for (const auto& p : all_parameters(optimizer)) {
    const auto it = by_impl.find(p.unsafeGetTensorImpl());
    out.push_back(it == by_impl.end() ? std::nullopt : std::optional<std::string>(it->second));
  }
  return out;
}

void save_optimizer_state(const torch::optim::AdamW& optimizer, const std::vector<std::optional<std::string>>& names,
                          const fs::path& dir) {
  nlohmann::json groups = nlohmann::json::array(), params = nlohmann::json::array();
  for (const auto& g : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(g.options());
    groups.push_back({{"lr", o.lr()}, {"betas", {std::get<0>(o.betas()), std::get<1>(o.betas())}}, {"eps", o.eps()},
                      {"weight_decay", o.weight_decay()}, {"amsgrad", o.amsgrad()}, {"params", g.params().size()}});
  }
  std::map<std::string, at::Tensor> tensors;
  const auto all = all_parameters(optimizer);
  for (size_t i = 0; i < all.size(); ++i) {
    nlohmann::json entry = {{"name", names.at(i) ? nlohmann::json(*names[i]) : nlohmann::json()}, {"step", nullptr}};
    const auto it = optimizer.state().find(state_key(all[i]));
    if (it != optimizer.state().end()) {
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      entry["step"] = s.step();
      const auto prefix = std::to_string(i) + ".";
      tensors[prefix + "exp_avg"] = s.exp_avg();
      tensors[prefix + "exp_avg_sq"] = s.exp_avg_sq();
      if (s.max_exp_avg_sq().defined()) tensors[prefix + "max_exp_avg_sq"] = s.max_exp_avg_sq();
    }
    params.push_back(entry);
  }
  run::write_checkpoint_tensors(dir / "optimizer.safetensors", tensors);
  const nlohmann::json j = {{"optimizer", "AdamW"}, {"groups", groups}, {"params", params}};
  write_file_atomically(dir / "optimizer.json", j.dump(1) + "\n");
}

void load_optimizer_state(torch::optim::AdamW& optimizer, const std::vector<std::optional<std::string>>& names,
                          const fs::path& dir) {
  const auto j = read_optimizer_json(dir / "optimizer.json");
  const auto stored = run::read_checkpoint_tensors(dir / "optimizer.safetensors");
  try {
    check_optimizer_fits(j, optimizer, names, stored, dir);
    for (size_t g = 0; g < optimizer.param_groups().size(); ++g) {
      const auto& jg = j.at("groups")[g];
      auto& o = static_cast<torch::optim::AdamWOptions&>(optimizer.param_groups()[g].options());
      o.lr(jg.at("lr").get<double>()).eps(jg.at("eps").get<double>()).weight_decay(jg.at("weight_decay").get<double>());
      o.amsgrad(jg.at("amsgrad").get<bool>());
      o.betas(std::make_tuple(jg.at("betas").at(0).get<double>(), jg.at("betas").at(1).get<double>()));
    }
    optimizer.state().clear();
    const auto params = all_parameters(optimizer);
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& r = j.at("params")[i];
      if (r.at("step").is_null()) continue;
      const auto prefix = std::to_string(i) + ".";
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(r.at("step").get<int64_t>());
      s->exp_avg(stored.at(prefix + "exp_avg").to(params[i].device()));
      s->exp_avg_sq(stored.at(prefix + "exp_avg_sq").to(params[i].device()));
      if (stored.count(prefix + "max_exp_avg_sq")) s->max_exp_avg_sq(stored.at(prefix + "max_exp_avg_sq").to(params[i].device()));
      optimizer.state()[state_key(params[i])] = std::move(s);
    }
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError("corrupt checkpoint file " + (dir / "optimizer.json").string() + ": " + e.what());
  }
}

void define_gradients(torch::optim::Optimizer& optimizer) {
  for (auto& g : optimizer.param_groups())
    for (auto& p : g.params())
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
}

void save_generator_states(const at::Generator& sampler, const at::Generator& global, const fs::path& dir) {
  run::write_checkpoint_tensors(dir / "rng.safetensors", {{"sampler", sampler.get_state()}, {"global", global.get_state()}});
}

void load_generator_states(at::Generator& sampler, at::Generator& global, const fs::path& dir) {
  const auto file = dir / "rng.safetensors";
  const auto stored = run::read_checkpoint_tensors(file);
  for (const char* key : {"sampler", "global"})
    if (!stored.count(key) || stored.at(key).scalar_type() != at::kByte)
      throw CheckpointError("corrupt checkpoint file " + file.string() + ": no uint8 tensor '" + key + "'");
  try {
    sampler.set_state(stored.at("sampler"));
    global.set_state(stored.at("global"));
  } catch (const c10::Error& e) {
    throw CheckpointError("corrupt checkpoint file " + file.string() + ": " + e.what_without_backtrace());
  }
}

}  // namespace nexus
