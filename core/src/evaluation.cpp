#include "nexus/core/evaluation.hpp"

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "nexus/core/feature_cache.hpp"
#include "nexus/core/system.hpp"
#include "nexus/core/trainer.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

// Bump when the probe recipe changes, so stored probe scores are not reused across recipes.
constexpr int kProbeRecipe = 1;

double accuracy(const at::Tensor& logits, const at::Tensor& labels) {
  return (logits.argmax(1) == labels).to(torch::kDouble).mean().item<double>();
}

// A teacher's own linear probe: logistic regression on its standardised cached features,
// trained with the composite's optimiser, batch size and per-task step budget, and kept at its
// best validation accuracy. Zero-initialised and sampled from its own generator, so it is
// deterministic and leaves the global RNG alone.
ProbeScore train_probe(const std::string& teacher, const SplitFeatures& train, const SplitFeatures& val,
                       const SplitFeatures& test, size_t slot, int64_t classes, const config::TrainerSpec& cfg,
                       int64_t steps, uint64_t seed) {
  torch::NoGradGuard outer;  // re-enabled below for the optimisation itself
  const auto& xtr = train.features[slot];
  const auto mean = xtr.mean(0, true);
  const auto std = xtr.std(0, true, true).clamp_min(1e-6);
  auto standard = [&](const at::Tensor& x) { return (x - mean) / std; };
  const auto tr = standard(xtr), va = standard(val.features[slot]), te = standard(test.features[slot]);

  torch::nn::Linear probe(torch::nn::LinearOptions(xtr.size(1), classes));
  probe->weight.zero_();
  probe->bias.zero_();
  torch::optim::AdamW opt(probe->parameters(), torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.weight_decay));
  auto gen = at::detail::createCPUGenerator(seed);
  const int64_t check_every = std::max<int64_t>(1, steps / 20);
  double best_val = -1;
  at::Tensor best_w, best_b;
  auto check = [&] {
    const double v = accuracy(probe->forward(va), val.labels);
    if (v > best_val) {
      best_val = v;
      best_w = probe->weight.clone();
      best_b = probe->bias.clone();
    }
  };
  for (int64_t step = 0; step < steps; ++step) {
    const double warm = cfg.warmup_steps > 0 && step < cfg.warmup_steps ? double(step + 1) / double(cfg.warmup_steps) : 1.0;
    const double progress = std::clamp(double(step - cfg.warmup_steps) / double(std::max<int64_t>(1, steps - cfg.warmup_steps)), 0.0, 1.0);
    const double lr = cfg.lr * warm * (step < cfg.warmup_steps ? 1.0 : 0.5 * (1.0 + std::cos(M_PI * progress)));
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    auto index = torch::randint(tr.size(0), {cfg.batch_size}, gen, torch::kLong);
    {
      torch::AutoGradMode grad(true);
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(probe->forward(tr.index_select(0, index)),
                                                       train.labels.index_select(0, index));
      loss.backward();
      opt.step();
    }
    if ((step + 1) % check_every == 0 || step + 1 == steps) check();
  }
  if (best_w.defined()) {
    probe->weight.copy_(best_w);
    probe->bias.copy_(best_b);
  }
  ProbeScore p;
  p.teacher = teacher;
  p.steps = steps;
  p.val_accuracy = best_val;
  p.test_accuracy = accuracy(probe->forward(te), test.labels);
  return p;
}

// What a stored probe score depends on: if any of it changes, the probe is trained again.
std::string probe_key(const std::string& fingerprint, const SplitFeatures& train, const SplitFeatures& val,
                      const SplitFeatures& test, const config::TrainerSpec& cfg, int64_t steps) {
  Sha256 h;
  const auto text = nlohmann::json{{"recipe", kProbeRecipe},
                                   {"fingerprint", fingerprint},
                                   {"dataset", train.dataset_id},
                                   {"splits", {train.split, val.split, test.split}},
                                   {"steps", steps},
                                   {"batch_size", cfg.batch_size},
                                   {"lr", cfg.lr},
                                   {"weight_decay", cfg.weight_decay},
                                   {"warmup_steps", cfg.warmup_steps},
                                   {"seed", cfg.seed}}
                        .dump();
  h.update(text.data(), text.size());
  return h.hex();
}

std::string read_word(const fs::path& p) {
  std::ifstream in(p);
  std::string w;
  in >> w;
  return w;
}

}  // namespace

int64_t probe_budget(const config::Composition& comp) {
  const int64_t tasks = std::max<int64_t>(1, int64_t(comp.heads.size()));
  return (comp.trainer.steps + tasks - 1) / tasks;
}

std::string run_checkpoint(const std::string& run_dir) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  std::string name;
  if (fs::exists(dir / "best")) name = read_word(dir / "best");
  else if (fs::exists(dir / "latest")) name = read_word(dir / "latest");
  if (name.empty()) throw TrainingError(run_dir + " has no checkpoints: is it a run folder written by `nexus train`?");
  return (dir / name).string();
}

std::string load_run_weights(ComposedSystem& sys, const std::string& run_dir,
                             const std::map<std::string, std::string>& sources) {
  const auto ckpt = run_checkpoint(run_dir);
  for (const auto& [mod_name, module] : sys.trainable_modules()) {
    const auto source = sources.find(mod_name);
    const fs::path file = fs::path(source != sources.end() ? source->second : ckpt) / (mod_name + ".pt");
    if (!fs::exists(file))
      throw TrainingError("checkpoint " + file.parent_path().string() + " has no " + file.filename().string() +
                          ": the run was trained with a different composition");
    // torch::load takes a stored tensor's shape as it is (Tensor::set_), so a file from another
    // composition would load "fine" and fail later, mid-forward: compare shapes here.
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
    for (const auto& p : module->named_parameters()) shapes.emplace_back(p.key(), p.value().sizes().vec());
    try {
      auto m = module;
      torch::load(m, file.string(), sys.device());
    } catch (const c10::Error& e) {
      throw TrainingError("corrupt checkpoint file " + file.string() + ": " + e.what_without_backtrace());
    }
    const auto loaded = module->named_parameters();
    for (const auto& [key, shape] : shapes)
      if (!loaded.contains(key) || loaded[key].sizes().vec() != shape)
        throw TrainingError("checkpoint file " + file.string() + " does not fit: parameter '" + key + "' has shape " +
                            (loaded.contains(key) ? c10::str(loaded[key].sizes()) : std::string("(none)")) +
                            ", the composition needs " + c10::str(c10::IntArrayRef(shape)));
  }
  for (const auto& [mod_name, module] : sys.trainable_modules()) module->eval();
  return ckpt;
}

Evaluation evaluate(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                    const EvalOptions& options) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, module] : sys.trainable_modules()) module->eval();
  Evaluation ev;
  for (const auto& t : sys.teachers()) ev.teachers.push_back(t.name);
  const int64_t budget = probe_budget(comp);
  if (!options.probe_dir.empty()) fs::create_directories(options.probe_dir);

  for (const auto& head : comp.heads) {
    TaskEvaluation te;
    te.task = head.task;
    te.head = head.name;
    const auto train = load_split_features(comp, sys, store, head.task, "train");
    const auto val = load_split_features(comp, sys, store, head.task, "val");
    const auto test = load_split_features(comp, sys, store, head.task, "test");
    te.split = test.split;
    te.rows = test.labels.size(0);

    // The composite, with routing statistics over the same inputs.
    sys.router()->reset_stats();
    std::vector<at::Tensor> shared;
    double correct = 0;
    for (int64_t b = 0; b < te.rows; b += 2048) {
      const int64_t m = std::min<int64_t>(2048, te.rows - b);
      std::vector<at::Tensor> batch(test.features.size());
      for (size_t i = 0; i < batch.size(); ++i)
        if (test.features[i].defined()) batch[i] = test.features[i].narrow(0, b, m);
      auto r = sys.fuse(batch, head.task);
      correct += (r.heads.at(head.name).argmax(1).cpu() == test.labels.narrow(0, b, m)).sum().item<double>();
      shared.push_back(r.shared.cpu());
    }
    te.accuracy = correct / double(std::max<int64_t>(1, te.rows));
    te.shared_variance = torch::cat(shared).var(0).mean().item<double>();
    const auto stats = sys.router()->stats();
    te.mean_weight = stats.mean_weight;
    te.load = stats.load;
    te.routing_entropy = stats.entropy;
    sys.router()->reset_stats();

    // Each applicable teacher's own probe.
    for (size_t i = 0; i < sys.teachers().size(); ++i) {
      if (!train.features[i].defined()) continue;
      const auto& slot = sys.teachers()[i];
      const auto key = probe_key(slot.teacher->fingerprint().str(), train, val, test, comp.trainer, budget);
      const auto file = fs::path(options.probe_dir) / (head.task + "." + slot.name + ".json");
      ProbeScore p;
      bool have = false;
      if (!options.probe_dir.empty() && fs::exists(file)) {
        try {
          std::ifstream in(file);
          const auto j = nlohmann::json::parse(in);
          if (j.at("key") == key) {
            p.teacher = slot.name;
            p.val_accuracy = j.at("val_accuracy");
            p.test_accuracy = j.at("test_accuracy");
            p.steps = j.at("steps");
            p.reused = have = true;
          }
        } catch (const std::exception& e) {
          spdlog::warn("ignoring unreadable probe score {}: {}", file.string(), e.what());
        }
      }
      if (!have) {
        const auto started = std::chrono::steady_clock::now();
        p = train_probe(slot.name, train, val, test, i, head.outputs, comp.trainer, budget,
                        uint64_t(comp.trainer.seed) * 1000003u + i);
        spdlog::info("probe {} on {}: {} steps in {:.1f} s, test accuracy {:.4f}", slot.name, head.task, budget,
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), p.test_accuracy);
        if (!options.probe_dir.empty()) {
          const auto tmp = file.string() + ".tmp";
          std::ofstream(tmp) << nlohmann::json{{"key", key},
                                               {"teacher", slot.name},
                                               {"task", head.task},
                                               {"steps", p.steps},
                                               {"val_accuracy", p.val_accuracy},
                                               {"test_accuracy", p.test_accuracy}}
                                    .dump(1);
          fs::rename(tmp, file);
        }
      }
      if (p.test_accuracy > te.best_probe || te.best_teacher.empty()) {
        te.best_probe = p.test_accuracy;
        te.best_teacher = p.teacher;
      }
      te.probes.push_back(p);
    }
    te.retention = te.best_probe > 0 ? te.accuracy / te.best_probe : 0.0;
    const auto it = comp.retention.per_task.find(head.task);
    te.contract = it != comp.retention.per_task.end() ? it->second : comp.retention.default_min;
    te.violated = te.contract > 0 && te.retention < te.contract;
    if (te.violated) {
      char line[256];
      std::snprintf(line, sizeof line, "task '%s': retention %.4f < contract %.4f (composite %.4f, best probe %.4f by %s)",
                    te.task.c_str(), te.retention, te.contract, te.accuracy, te.best_probe, te.best_teacher.c_str());
      ev.violations.push_back(line);
    }
    ev.tasks.push_back(std::move(te));
  }
  return ev;
}

}  // namespace nexus
