#include "nexus/evaluation/evaluation.hpp"

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

#include "nexus/base/files.hpp"
#include "nexus/data/feature_cache.hpp"
#include "nexus/data/task_features.hpp"
#include "nexus/model/system.hpp"
#include "nexus/run/run_folder.hpp"
#include "nexus/training/schedule.hpp"

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
                       const SplitFeatures& test, const std::vector<SplitFeatures>& reports, size_t slot, int64_t classes,
                       const config::TrainerSpec& cfg, int64_t steps, uint64_t seed) {
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
  const WarmupCosineSchedule schedule(cfg.lr, cfg.warmup_steps, steps);
  for (int64_t step = 0; step < steps; ++step) {
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(schedule.lr(step));
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
  for (const auto& r : reports) p.report_accuracy[r.split] = accuracy(probe->forward(standard(r.features[slot])), r.labels);
  return p;
}

// What a stored probe score depends on: if any of it changes, the probe is trained again.
std::string probe_key(const std::string& fingerprint, const SplitFeatures& train, const SplitFeatures& val,
                      const SplitFeatures& test, const std::vector<SplitFeatures>& reports, const config::TrainerSpec& cfg,
                      int64_t steps) {
  Sha256 h;
  auto splits = nlohmann::json::array({train.split, val.split, test.split});
  for (const auto& r : reports) splits.push_back(r.split);
  const auto text = nlohmann::json{{"recipe", kProbeRecipe},
                                   {"fingerprint", fingerprint},
                                   {"dataset", train.dataset_id},
                                   {"splits", splits},
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

}  // namespace

int64_t probe_budget(const config::Composition& comp) {
  const int64_t tasks = std::max<int64_t>(1, int64_t(comp.heads.size()));
  return (comp.trainer.steps + tasks - 1) / tasks;
}

namespace {

// The composite on a task's test split, with routing statistics over the same inputs.
ClassRouting class_routing(const at::Tensor& weight_sums, const at::Tensor& rows, const std::vector<std::string>& names) {
  ClassRouting c;
  const auto mean = (weight_sums / rows.clamp_min(1).to(torch::kDouble).unsqueeze(1)).contiguous();
  for (int64_t k = 0; k < mean.size(0); ++k) {
    c.classes.push_back(k < int64_t(names.size()) ? names[size_t(k)] : std::to_string(k));
    c.rows.push_back(rows[k].item<int64_t>());
    c.weights.emplace_back(mean[k].data_ptr<double>(), mean[k].data_ptr<double>() + mean.size(1));
  }
  return c;
}

void score_composite(ComposedSystem& sys, const config::HeadSpec& head, const SplitFeatures& test, TaskEvaluation& te) {
  sys.router()->reset_stats();
  std::vector<at::Tensor> shared;
  double correct = 0;
  const auto teachers = int64_t(sys.teachers().size());
  auto class_weights = torch::zeros({head.outputs, teachers}, torch::kDouble);
  auto class_rows = torch::zeros({head.outputs}, torch::kLong);
  for (int64_t b = 0; b < te.rows; b += 2048) {
    const int64_t m = std::min<int64_t>(2048, te.rows - b);
    std::vector<at::Tensor> batch(test.features.size());
    for (size_t i = 0; i < batch.size(); ++i)
      if (test.features[i].defined()) batch[i] = test.features[i].narrow(0, b, m);
    auto r = sys.fuse(batch, head.task);
    const auto labels = test.labels.narrow(0, b, m);
    correct += (r.heads.at(head.name).argmax(1).cpu() == labels).sum().item<double>();
    shared.push_back(r.shared.cpu());
    if (r.weights.defined() && r.weights.size(1) == teachers) {
      class_weights.index_add_(0, labels, r.weights.cpu().to(torch::kDouble));
      class_rows.index_add_(0, labels, torch::ones_like(labels));
    }
  }
  te.accuracy = correct / double(std::max<int64_t>(1, te.rows));
  te.shared_variance = torch::cat(shared).var(0).mean().item<double>();
  te.class_routing = class_routing(class_weights, class_rows, test.classes);
  const auto stats = sys.router()->stats();
  te.mean_weight = stats.mean_weight;
  te.load = stats.load;
  te.routing_entropy = stats.entropy;
  sys.router()->reset_stats();
}

// The composite's accuracy on a report split (no routing statistics: those describe the test split).
double composite_accuracy(ComposedSystem& sys, const config::HeadSpec& head, const SplitFeatures& split) {
  const int64_t rows = split.labels.size(0);
  double correct = 0;
  for (int64_t b = 0; b < rows; b += 2048) {
    const int64_t m = std::min<int64_t>(2048, rows - b);
    std::vector<at::Tensor> batch(split.features.size());
    for (size_t i = 0; i < batch.size(); ++i)
      if (split.features[i].defined()) batch[i] = split.features[i].narrow(0, b, m);
    correct += (sys.fuse(batch, head.task).heads.at(head.name).argmax(1).cpu() == split.labels.narrow(0, b, m)).sum().item<double>();
  }
  sys.router()->reset_stats();
  return correct / double(std::max<int64_t>(1, rows));
}

void score_reports(ComposedSystem& sys, const config::HeadSpec& head, const std::vector<SplitFeatures>& reports, TaskEvaluation& te) {
  for (const auto& r : reports) {
    ReportSplit rs;
    rs.split = r.split;
    rs.rows = r.labels.size(0);
    rs.accuracy = composite_accuracy(sys, head, r);
    for (const auto& p : te.probes) {
      const double a = p.report_accuracy.count(r.split) ? p.report_accuracy.at(r.split) : 0.0;
      if (a > rs.best_probe || rs.best_teacher.empty()) {
        rs.best_probe = a;
        rs.best_teacher = p.teacher;
      }
    }
    rs.retention = rs.best_probe > 0 ? rs.accuracy / rs.best_probe : 0.0;
    te.reports.push_back(rs);
  }
}

// A probe score kept in `file` under the same key, if there is one.
std::optional<ProbeScore> stored_probe(const fs::path& file, const std::string& key, const std::string& teacher) {
  if (!fs::exists(file)) return std::nullopt;
  try {
    const auto j = nlohmann::json::parse(read_file(file));
    if (j.at("key") != key) return std::nullopt;
    ProbeScore p;
    p.teacher = teacher;
    p.val_accuracy = j.at("val_accuracy");
    p.test_accuracy = j.at("test_accuracy");
    p.steps = j.at("steps");
    p.report_accuracy = j.value("report_accuracy", std::map<std::string, double>{});
    p.reused = true;
    return p;
  } catch (const std::exception& e) {
    spdlog::warn("ignoring unreadable probe score {}: {}", file.string(), e.what());
    return std::nullopt;
  }
}

// What a probe is trained on: a name for its file and the table, what its features depend on,
// and which of the splits' feature columns it reads.
struct ProbeSubject {
  std::string name, fingerprint;
  size_t slot = 0;
  uint64_t seed = 0;
};

// A probe on the task: reused from the probe folder when its key matches, else trained now (and
// stored there).
ProbeScore probe_score(const config::Composition& comp, const ProbeSubject& subject, const config::HeadSpec& head,
                       const SplitFeatures& train, const SplitFeatures& val, const SplitFeatures& test,
                       const std::vector<SplitFeatures>& reports, const EvalOptions& options) {
  const int64_t budget = probe_budget(comp);
  const auto key = probe_key(subject.fingerprint, train, val, test, reports, comp.trainer, budget);
  const auto name = head.task + "." + subject.name + ".json";
  const auto file = fs::path(options.probe_dir) / name;
  if (!options.probe_dir.empty())
    if (auto stored = stored_probe(file, key, subject.name)) return *stored;
  if (!options.reuse_dir.empty())
    if (auto stored = stored_probe(fs::path(options.reuse_dir) / name, key, subject.name)) return *stored;
  const auto started = std::chrono::steady_clock::now();
  auto p = train_probe(subject.name, train, val, test, reports, subject.slot, head.outputs, comp.trainer, budget, subject.seed);
  spdlog::info("probe {} on {}: {} steps in {:.1f} s, test accuracy {:.4f}", subject.name, head.task, budget,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), p.test_accuracy);
  if (!options.probe_dir.empty())
    run::write_json_file(file.string(), nlohmann::json{{"key", key},
                                                       {"teacher", subject.name},
                                                       {"task", head.task},
                                                       {"steps", p.steps},
                                                       {"val_accuracy", p.val_accuracy},
                                                       {"test_accuracy", p.test_accuracy},
                                                       {"report_accuracy", p.report_accuracy}}
                                            .dump(1));
  return p;
}

// The split with every reading teacher's features side by side in one column.
SplitFeatures concatenated(const SplitFeatures& split) {
  SplitFeatures out = split;
  std::vector<at::Tensor> parts;
  for (const auto& f : split.features)
    if (f.defined()) parts.push_back(f.to(torch::kFloat));
  out.features = {torch::cat(parts, 1)};
  return out;
}

// The probe on all the task's teachers' features concatenated, when there are several.
void score_concat_probe(const config::Composition& comp, const ComposedSystem& sys, const config::HeadSpec& head,
                        const SplitFeatures& train, const SplitFeatures& val, const SplitFeatures& test,
                        const std::vector<SplitFeatures>& reports, const EvalOptions& options, TaskEvaluation& te) {
  ProbeSubject subject{"+concat", "", 0, uint64_t(comp.trainer.seed) * 1000003u + sys.teachers().size()};
  for (size_t i = 0; i < sys.teachers().size(); ++i)
    if (train.features[i].defined()) {
      te.concat_teachers.push_back(sys.teachers()[i].name);
      subject.fingerprint += sys.teachers()[i].teacher->fingerprint().str() + "\n";
    }
  if (te.concat_teachers.size() < 2) {
    te.concat_teachers.clear();
    return;
  }
  std::vector<SplitFeatures> joined_reports;
  for (const auto& r : reports) joined_reports.push_back(concatenated(r));
  te.concat_probe = probe_score(comp, subject, head, concatenated(train), concatenated(val), concatenated(test), joined_reports, options);
}

void judge_retention(const config::Composition& comp, TaskEvaluation& te, Evaluation& ev) {
  te.retention = te.best_probe > 0 ? te.accuracy / te.best_probe : 0.0;
  te.contract = retention_contract(comp, te.task);
  te.violated = te.contract > 0 && te.retention < te.contract;
  if (!te.violated) return;
  char line[256];
  std::snprintf(line, sizeof line, "task '%s': retention %.4f < contract %.4f (composite %.4f, best probe %.4f by %s)",
                te.task.c_str(), te.retention, te.contract, te.accuracy, te.best_probe, te.best_teacher.c_str());
  ev.violations.push_back(line);
}

// Each reading teacher's probe on the task, on splits already loaded.
std::vector<ProbeScore> probes_on(const config::Composition& comp, const ComposedSystem& sys, const config::HeadSpec& head,
                                  const SplitFeatures& train, const SplitFeatures& val, const SplitFeatures& test,
                                  const std::vector<SplitFeatures>& reports, const EvalOptions& options) {
  std::vector<ProbeScore> probes;
  for (size_t i = 0; i < sys.teachers().size(); ++i) {
    if (!train.features[i].defined()) continue;
    const auto& slot = sys.teachers()[i];
    const ProbeSubject subject{slot.name, slot.teacher->fingerprint().str(), i, uint64_t(comp.trainer.seed) * 1000003u + i};
    probes.push_back(probe_score(comp, subject, head, train, val, test, reports, options));
  }
  return probes;
}

std::vector<SplitFeatures> report_splits(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                                         const std::string& task) {
  std::vector<SplitFeatures> reports;
  for (const auto& split : comp.tasks.at(task).report_splits()) reports.push_back(load_split_features(comp, sys, store, task, split));
  return reports;
}

}  // namespace

double retention_contract(const config::Composition& comp, const std::string& task) {
  const auto it = comp.retention.per_task.find(task);
  return it != comp.retention.per_task.end() ? it->second : comp.retention.default_min;
}

std::vector<ProbeScore> teacher_probes(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                                       const config::HeadSpec& head, const EvalOptions& options) {
  torch::NoGradGuard no_grad;
  if (!options.probe_dir.empty()) fs::create_directories(options.probe_dir);
  return probes_on(comp, sys, head, load_split_features(comp, sys, store, head.task, "train"),
                   load_split_features(comp, sys, store, head.task, "val"),
                   load_split_features(comp, sys, store, head.task, "test"), report_splits(comp, sys, store, head.task), options);
}

Evaluation evaluate(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                    const EvalOptions& options) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, module] : sys.trainable_modules()) module->eval();
  Evaluation ev;
  for (const auto& t : sys.teachers()) ev.teachers.push_back(t.name);
  if (!options.probe_dir.empty()) fs::create_directories(options.probe_dir);

  for (const auto& head : comp.heads) {
    TaskEvaluation te;
    te.task = head.task;
    te.head = head.name;
    const auto train = load_split_features(comp, sys, store, head.task, "train");
    const auto val = load_split_features(comp, sys, store, head.task, "val");
    const auto test = load_split_features(comp, sys, store, head.task, "test");
    const auto reports = report_splits(comp, sys, store, head.task);
    te.split = test.split;
    te.rows = test.labels.size(0);
    score_composite(sys, head, test, te);
    te.probes = probes_on(comp, sys, head, train, val, test, reports, options);
    for (const auto& p : te.probes)
      if (p.test_accuracy > te.best_probe || te.best_teacher.empty()) {
        te.best_probe = p.test_accuracy;
        te.best_teacher = p.teacher;
      }
    score_concat_probe(comp, sys, head, train, val, test, reports, options, te);
    judge_retention(comp, te, ev);
    score_reports(sys, head, reports, te);
    ev.tasks.push_back(std::move(te));
  }
  return ev;
}

}  // namespace nexus
