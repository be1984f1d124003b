#include "nexus/core/trainer.hpp"
#include "nexus/core/distributed.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <nexus/plugin_api.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "nexus/core/caching.hpp"
#include "nexus/core/dataset.hpp"
#include "nexus/core/feature_cache.hpp"
#include "nexus/core/progress.hpp"
#include "nexus/core/system.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

struct State {
  int64_t step = 0, best_step = 0;
  double best_val = INFINITY, lr_factor = 1.0, initial_variance = 0;
  int rollbacks = 0;
  int64_t stale_validations = 0;  // validations since the best one, for early stopping
  bool stopped_early = false;
  std::string best_dir;
};

nlohmann::json to_json(const State& s) {
  return {{"step", s.step},           {"best_step", s.best_step}, {"best_val", s.best_val},
          {"lr_factor", s.lr_factor}, {"rollbacks", s.rollbacks}, {"initial_variance", s.initial_variance},
          {"best_dir", s.best_dir}, {"stale_validations", s.stale_validations},
          {"stopped_early", s.stopped_early}};
}

void fsync_path(const fs::path& p, bool dir = false) {
  const int fd = ::open(p.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void write_text_atomically(const fs::path& p, const std::string& text) {
  const auto tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp);
    out << text;
    if (!out) throw TrainingError("cannot write " + tmp);
  }
  fsync_path(tmp);
  fs::rename(tmp, p);
  fsync_path(p.parent_path(), true);
}

// Everything a checkpoint restores, besides the trainer state.
struct Trainables {
  ComposedSystem& system;
  torch::optim::AdamW& optimizer;
  at::Generator& sampler;
};

std::string save_checkpoint(const fs::path& run_dir, Trainables& t, const State& s) {
  const auto dir = run_dir / "checkpoints";
  fs::create_directories(dir);
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", (long long)s.step);
  const auto final_dir = dir / name;
  const auto tmp = dir / (std::string(name) + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  // One file per component, so a later run can take or replace a single tower.
  for (const auto& [mod_name, module] : t.system.trainable_modules()) torch::save(module, (tmp / (mod_name + ".pt")).string());
  torch::save(t.optimizer, (tmp / "optimizer.pt").string());
  torch::save(t.sampler.get_state(), (tmp / "rng_sampler.pt").string());
  torch::save(at::detail::getDefaultCPUGenerator().get_state(), (tmp / "rng_global.pt").string());
  std::ofstream(tmp / "state.json") << to_json(s).dump(1);
  for (const auto& e : fs::directory_iterator(tmp)) fsync_path(e.path());
  fs::remove_all(final_dir);  // a step saved before a rollback is superseded
  fs::rename(tmp, final_dir);
  fsync_path(dir, true);
  write_text_atomically(dir / "latest", name);
  // Keep the latest and the best; older checkpoints only cost disk.
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto n = e.path().filename().string();
    if (e.is_directory() && n != name && n != s.best_dir && n.rfind("step-", 0) == 0) fs::remove_all(e.path());
  }
  return name;
}

State load_checkpoint(const fs::path& dir, Trainables& t) {
  if (!fs::exists(dir / "state.json")) throw TrainingError("checkpoint " + dir.string() + " is incomplete (no state.json)");
  try {
    for (const auto& [mod_name, module] : t.system.trainable_modules()) {
      auto m = module;
      torch::load(m, (dir / (mod_name + ".pt")).string(), t.system.device());
    }
    torch::load(t.optimizer, (dir / "optimizer.pt").string(), t.system.device());
    at::Tensor rng;
    torch::load(rng, (dir / "rng_sampler.pt").string());
    t.sampler.set_state(rng);
    torch::load(rng, (dir / "rng_global.pt").string());
    auto global = at::detail::getDefaultCPUGenerator();  // a handle to the process-wide generator
    global.set_state(rng);
  } catch (const c10::Error& e) {
    throw TrainingError("corrupt checkpoint " + dir.string() + ": " + e.what_without_backtrace());
  }
  std::ifstream in(dir / "state.json");
  const auto j = nlohmann::json::parse(in);
  State s;
  s.step = j.at("step");
  s.best_step = j.at("best_step");
  s.best_val = j.at("best_val").is_null() ? INFINITY : j.at("best_val").get<double>();
  s.lr_factor = j.at("lr_factor");
  s.rollbacks = j.at("rollbacks");
  s.initial_variance = j.at("initial_variance");
  s.best_dir = j.at("best_dir");
  s.stale_validations = j.value("stale_validations", int64_t(0));
  s.stopped_early = j.value("stopped_early", false);
  return s;
}

std::vector<at::Tensor> rows(const std::vector<at::Tensor>& features, const at::Tensor& index) {
  std::vector<at::Tensor> out(features.size());
  for (size_t i = 0; i < features.size(); ++i)
    if (features[i].defined()) out[i] = features[i].index_select(0, index);
  return out;
}

// Weighted sum of the composition's losses that apply to `task`'s head, plus the anti-forgetting
// term where the task has reference outputs.
at::Tensor task_loss(ComposedSystem& sys, const TaskData& task, const ForwardResult& r, const at::Tensor& labels,
                     const at::Tensor& reference, int64_t step, const TrainOptions& options) {
  at::Tensor total = torch::zeros({}, torch::TensorOptions().device(sys.device()));
  for (const auto& slot : sys.losses()) {
    if (!slot.spec.head.empty() && slot.spec.head != task.head) continue;
    LossInput in;
    in.prediction = r.heads.at(task.head);
    in.target = labels;
    in.router_logits = r.logits;
    in.router_weights = r.weights;
    in.router_selected = r.selected;
    for (const auto& term : slot.loss->forward(in)) total = total + slot.weight_at(step) * term.value;
  }
  if (reference.defined() && options.anti_forgetting && options.anti_forgetting_weight > 0) {
    LossInput in;
    in.prediction = r.heads.at(task.head);
    in.teacher_prediction = reference;
    for (const auto& term : options.anti_forgetting->forward(in)) total = total + options.anti_forgetting_weight * term.value;
  }
  return total;
}

// Outputs of frozen towers (with their frozen feature statistics) on a task's rows, computed once:
// per teacher, defined only where both the norm and the tower are frozen.
struct Projections {
  std::vector<at::Tensor> train, val;
};

std::vector<at::Tensor> project_frozen(ComposedSystem& sys, const std::vector<at::Tensor>& features,
                                       const std::set<std::string>& frozen) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> out(features.size());
  for (size_t i = 0; i < features.size() && i < sys.teachers().size(); ++i) {
    const auto& slot = sys.teachers()[i];
    if (!features[i].defined() || !frozen.count("norm." + slot.name) || !frozen.count("tower." + slot.name)) continue;
    std::vector<at::Tensor> parts;
    for (int64_t b = 0; b < features[i].size(0); b += 4096)
      parts.push_back(slot.tower->forward(slot.norm->forward(features[i].narrow(0, b, std::min<int64_t>(4096, features[i].size(0) - b)))));
    out[i] = torch::cat(parts);
  }
  return out;
}

at::Tensor rows_of(const at::Tensor& t, const at::Tensor& index) {
  return t.defined() ? t.index_select(0, index) : t;
}

struct Validation {
  double loss = 0, variance = 0;
  std::map<std::string, double> accuracy;
};

void set_training(ComposedSystem& sys, bool on, const std::set<std::string>& frozen) {
  for (const auto& [name, module] : sys.trainable_modules()) module->train(on && !frozen.count(name));
}

// Evaluates in eval mode (no dropout) and leaves the modules in training mode.
Validation validate(ComposedSystem& sys, const std::vector<TaskData>& data, const std::vector<Projections>& projections,
                    int64_t step, const TrainOptions& options) {
  torch::NoGradGuard no_grad;
  set_training(sys, false, options.frozen);
  Validation v;
  double var_sum = 0;
  for (size_t k = 0; k < data.size(); ++k) {
    const auto& task = data[k];
    const int64_t n = task.val_labels.size(0);
    double loss = 0, correct = 0;
    std::vector<at::Tensor> shared;
    for (int64_t b = 0; b < n; b += 2048) {
      const int64_t m = std::min<int64_t>(2048, n - b);
      auto index = torch::arange(b, b + m, torch::TensorOptions().dtype(torch::kLong).device(sys.device()));
      auto r = sys.fuse(rows(task.val, index), task.task, rows(projections[k].val, index));
      auto labels = task.val_labels.narrow(0, b, m);
      loss += task_loss(sys, task, r, labels, rows_of(task.val_reference, index), step, options).item<double>() * double(m);
      correct += (r.heads.at(task.head).argmax(1) == labels).sum().item<double>();
      shared.push_back(r.shared);
    }
    v.loss += loss / double(n);
    v.accuracy[task.task] = correct / double(n);
    var_sum += torch::cat(shared).var(0).mean().item<double>();
  }
  v.loss /= double(data.size());
  v.variance = var_sum / double(data.size());
  set_training(sys, true, options.frozen);
  return v;
}

// Averages gradients over the ranks, and agrees on whether this step goes ahead: returns false
// on every rank when any rank's loss was not finite (`finite` is this rank's verdict; such a rank
// skipped backward). Both ride on one small all-reduce. A parameter whose gradient is undefined
// on some ranks (a tower no row of their slice was routed to) gets zeros there; one undefined on
// every rank stays undefined, as it would in one process, so the optimizer skips it the same way.
bool average_gradients(dist::ProcessGroup& group, const std::vector<torch::Tensor>& params, bool finite) {
  std::vector<float> flags(params.size() + 1);
  for (size_t i = 0; i < params.size(); ++i) flags[i] = params[i].grad().defined() ? 1.0f : 0.0f;
  flags.back() = finite ? 0.0f : 1.0f;
  auto summary = torch::tensor(flags);
  group.allreduce_mean({summary});
  const float* any = summary.data_ptr<float>();
  if (any[params.size()] > 0) return false;
  std::vector<at::Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    if (any[i] == 0.0f) continue;
    auto p = params[i];
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  group.allreduce_mean(grads);
  return true;
}

// Every rank validates the same weights on the same data; rank 0's figures decide for all, so a
// last-bit difference can never make one rank roll back and another not.
void agree_with_rank0(dist::ProcessGroup& group, Validation& v) {
  std::vector<double> values{v.loss, v.variance};
  for (const auto& [task, acc] : v.accuracy) values.push_back(acc);
  auto packed = torch::tensor(values, torch::kDouble);
  group.broadcast({packed}, 0);
  const double* x = packed.data_ptr<double>();
  v.loss = x[0];
  v.variance = x[1];
  size_t i = 2;
  for (auto& [task, acc] : v.accuracy) acc = x[i++];
}

}  // namespace

SplitFeatures load_split_features(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                                  const std::string& task_name, const std::string& split) {
  const auto& task = comp.tasks.at(task_name);
  const auto data = load_task_split(comp, task, split);
  SplitFeatures out;
  out.labels = data.labels;
  out.dataset_id = data.dataset_id;
  out.split = data.split;
  for (const auto& slot : sys.teachers()) {
    if (to_string(slot.teacher->modality()) != data.modality) {
      out.features.emplace_back();
      continue;
    }
    const cache::EntryKey key{slot.name, slot.teacher->fingerprint().str(), data.dataset_id, data.split};
    auto m = store.find(key);
    if (!m || !m->complete)
      throw TrainingError("no cached features of teacher '" + slot.name + "' for " + task.dataset + "/" + data.split +
                          ": run `nexus cache build` first");
    out.features.push_back(store.load(*m));
  }
  return out;
}

std::vector<TaskData> load_task_data(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store) {
  std::vector<TaskData> out;
  for (const auto& head : comp.heads) {
    TaskData td;
    td.task = head.task;
    td.head = head.name;
    auto train = load_split_features(comp, sys, store, head.task, "train");
    auto val = load_split_features(comp, sys, store, head.task, "val");
    td.train = std::move(train.features);
    td.train_labels = train.labels;
    td.val = std::move(val.features);
    td.val_labels = val.labels;
    out.push_back(std::move(td));
  }
  return out;
}

namespace {
at::Tensor on(const at::Tensor& t, const c10::Device& device) { return t.defined() ? t.to(device) : t; }
}  // namespace

TrainResult train(const config::Composition& comp, ComposedSystem& sys, const std::vector<TaskData>& cached,
                  const TrainOptions& options) {
  if (cached.empty()) throw TrainingError("nothing to train: the composition has no heads with data");
  // The cached features move to the system's device once (they are small next to a GPU's memory),
  // so that a step only gathers rows where they already are.
  std::vector<TaskData> moved;
  if (!sys.device().is_cpu()) {
    for (const auto& task : cached) {
      TaskData m = task;
      for (auto& f : m.train) f = on(f, sys.device());
      for (auto& f : m.val) f = on(f, sys.device());
      for (auto* t : {&m.train_labels, &m.val_labels, &m.train_reference, &m.val_reference}) *t = on(*t, sys.device());
      moved.push_back(std::move(m));
    }
  }
  const std::vector<TaskData>& data = sys.device().is_cpu() ? cached : moved;
  const auto& cfg = comp.trainer;
  const fs::path run_dir = options.run_dir;
  dist::ProcessGroup* group = options.group && options.group->world_size() > 1 ? options.group : nullptr;
  const bool writer = !group || group->rank() == 0;  // checkpoints, metrics, progress
  const int64_t world = group ? group->world_size() : 1, rank = group ? group->rank() : 0;
  if (cfg.batch_size % world != 0)
    throw TrainingError("trainer.batch_size=" + std::to_string(cfg.batch_size) + " does not split evenly over " +
                        std::to_string(world) + " processes");
  fs::create_directories(run_dir);
  // The global generator (initialisation, dropout) is seeded by whoever built the system, before
  // building it; batches come from a generator of their own so they do not depend on it.
  auto sampler = at::detail::createCPUGenerator(uint64_t(cfg.seed) + 1);

  std::vector<torch::Tensor> params;
  for (const auto& [name, module] : sys.trainable_modules())
    for (auto& p : module->parameters()) {
      p.set_requires_grad(!options.frozen.count(name));
      if (!options.frozen.count(name)) params.push_back(p);
    }
  if (params.empty()) {
    if (cfg.steps > 0) throw TrainingError("nothing to train: every module is frozen");
    params.push_back(torch::zeros({1}, torch::requires_grad()));  // the optimizer needs a parameter; never stepped
  }
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.weight_decay));
  Trainables t{sys, optimizer, sampler};

  State s;
  TrainResult result;
  std::vector<Projections> projections;
  auto compute_projections = [&] {
    set_training(sys, false, options.frozen);
    std::vector<Projections> out;
    for (const auto& task : data)
      out.push_back({project_frozen(sys, task.train, options.frozen), project_frozen(sys, task.val, options.frozen)});
    return out;
  };
  const auto latest_file = run_dir / "checkpoints" / "latest";
  if (options.resume && fs::exists(latest_file)) {
    std::ifstream in(latest_file);
    std::string name;
    in >> name;
    s = load_checkpoint(run_dir / "checkpoints" / name, t);
    projections = compute_projections();
    result.resumed = true;
    spdlog::info("resuming {} at step {}", run_dir.string(), s.step);
  } else {
    if (writer && fs::exists(latest_file))
      throw TrainingError("run folder " + run_dir.string() + " already has checkpoints: use --resume, or another folder");
    std::vector<std::vector<at::Tensor>> per_teacher(sys.teachers().size());
    for (const auto& task : data)
      for (size_t i = 0; i < task.train.size() && i < per_teacher.size(); ++i)
        if (!options.frozen.count("norm." + sys.teachers()[i].name)) per_teacher[i].push_back(task.train[i]);
    sys.fit_feature_norms(per_teacher);
    projections = compute_projections();
    const auto v = validate(sys, data, projections, 0, options);
    s.initial_variance = v.variance;
    s.best_val = v.loss;
    s.best_dir = "step-00000000";
    if (writer) save_checkpoint(run_dir, t, s);
  }
  if (group) group->barrier();  // rank 0's first checkpoint exists before anyone may roll back to it

  std::ofstream metrics;
  if (writer) metrics.open(run_dir / "metrics.jsonl", std::ios::app);
  auto log = [&](const nlohmann::json& j) {
    if (writer) metrics << j.dump() << "\n" << std::flush;
  };
  auto lr_at = [&](int64_t step) {
    const double warm = cfg.warmup_steps > 0 && step < cfg.warmup_steps ? double(step + 1) / double(cfg.warmup_steps) : 1.0;
    const int64_t decay_steps = std::max<int64_t>(1, cfg.steps - cfg.warmup_steps);
    const double progress = std::clamp(double(step - cfg.warmup_steps) / double(decay_steps), 0.0, 1.0);
    const double cosine = step < cfg.warmup_steps ? 1.0 : 0.5 * (1.0 + std::cos(M_PI * progress));
    return cfg.lr * s.lr_factor * warm * cosine;
  };
  auto roll_back = [&](const std::string& why) {
    if (++s.rollbacks > options.max_rollbacks)
      throw TrainingError("training diverged: " + why + "; gave up after " + std::to_string(options.max_rollbacks) +
                          " rollbacks (lower trainer.lr or check the data)");
    const int rollbacks = s.rollbacks;
    const int64_t step = s.step, stale = s.stale_validations;
    const double factor = s.lr_factor * 0.5;
    s = load_checkpoint(run_dir / "checkpoints" / s.best_dir, t);
    s.rollbacks = rollbacks;
    s.stale_validations = stale;
    s.step = step;  // the schedule goes on; the weights and optimizer go back
    s.lr_factor = factor;
    if (writer) spdlog::warn("step {}: {}; rolled back to {} and halved the learning rate", step, why, s.best_dir);
    log({{"step", step}, {"rollback", why}, {"to", s.best_dir}, {"lr_factor", factor}});
  };

  set_training(sys, true, options.frozen);
  ProgressLine progress("train", cfg.steps, "steps");
  const int64_t start = s.step;
  const int64_t log_every = std::max<int64_t>(1, cfg.steps / 50);
  double step_seconds = 0;  // time in the optimisation steps themselves, for throughput figures
  int64_t steps_timed = 0;
  while (s.step < cfg.steps && !s.stopped_early) {
    const auto step_start = std::chrono::steady_clock::now();
    const size_t k = size_t(s.step % int64_t(data.size()));
    const auto& task = data[k];
    auto index = torch::randint(task.train_labels.size(0), {cfg.batch_size}, sampler, torch::kLong);
    if (group) index = index.narrow(0, rank * (cfg.batch_size / world), cfg.batch_size / world);  // this rank's slice
    index = index.to(sys.device());
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr_at(s.step));
    optimizer.zero_grad();
    auto r = sys.fuse(rows(task.train, index), task.task, rows(projections[k].train, index));
    auto loss = task_loss(sys, task, r, task.train_labels.index_select(0, index), rows_of(task.train_reference, index),
                          s.step, options);
    double loss_value = loss.item<double>();
    bool finite = std::isfinite(loss_value);
    if (finite) loss.backward();
    if (group && !average_gradients(*group, params, finite)) finite = false;  // some rank's loss was not
    if (!finite) {
      if (std::isfinite(loss_value)) loss_value = std::numeric_limits<double>::quiet_NaN();
      roll_back("loss is " + std::to_string(loss_value) + " on task '" + task.task + "'");
      ++s.step;
      continue;
    }
    const double grad_norm = cfg.grad_clip > 0 ? torch::nn::utils::clip_grad_norm_(params, cfg.grad_clip) : 0.0;
    if (!std::isfinite(grad_norm)) {
      roll_back("gradient norm is " + std::to_string(grad_norm));
      ++s.step;
      continue;
    }
    optimizer.step();
    step_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
    ++steps_timed;
    ++s.step;
    if (s.step % log_every == 0) log({{"step", s.step}, {"task", task.task}, {"loss", loss_value}, {"lr", lr_at(s.step - 1)}});
    if (options.progress && writer) progress.update(s.step, s.step - start);

    if (s.step % cfg.validate_every == 0 || s.step == cfg.steps) {
      auto v = validate(sys, data, projections, s.step, options);
      if (group) agree_with_rank0(*group, v);
      log({{"step", s.step}, {"val_loss", v.loss}, {"val_accuracy", v.accuracy}, {"shared_variance", v.variance}});
      if (v.variance < options.collapse_ratio * s.initial_variance)
        throw TrainingError("the shared space collapsed at step " + std::to_string(s.step) + ": its variance is " +
                            std::to_string(v.variance) + ", was " + std::to_string(s.initial_variance) +
                            " at the start (anchor the towers: task labels, a reconstruction term, or a lower lr)");
      if (!std::isfinite(v.loss) || v.loss > options.rollback_tolerance * s.best_val) {
        roll_back("validation loss " + std::to_string(v.loss) + " > " + std::to_string(options.rollback_tolerance) +
                  " x best " + std::to_string(s.best_val));
        // A rollback is also a validation without improvement: overfitting ends in early stopping,
        // not in "diverged" after max_rollbacks.
        if (cfg.patience > 0 && ++s.stale_validations >= cfg.patience) {
          s.stopped_early = true;
          spdlog::info("step {}: no better validation loss for {} validations; stopping early (best at step {})", s.step,
                       s.stale_validations, s.best_step);
          log({{"step", s.step}, {"early_stop", true}, {"best_step", s.best_step}});
        }
        continue;
      }
      if (v.loss < s.best_val) {
        s.best_val = v.loss;
        s.best_step = s.step;
        s.stale_validations = 0;
        char name[32];
        std::snprintf(name, sizeof name, "step-%08lld", (long long)s.step);
        s.best_dir = name;
      } else if (cfg.patience > 0 && ++s.stale_validations >= cfg.patience) {
        s.stopped_early = true;
        spdlog::info("step {}: no better validation loss for {} validations; stopping early (best at step {})", s.step,
                     s.stale_validations, s.best_step);
        log({{"step", s.step}, {"early_stop", true}, {"best_step", s.best_step}});
      }
      if (writer) save_checkpoint(run_dir, t, s);
    }
  }
  if (writer) progress.finish();
  if (group) group->barrier();  // the best checkpoint is on disk for every rank
  // The run's result is its best checkpoint.
  const int rollbacks = s.rollbacks;
  const int64_t steps_done = s.step;
  const bool stopped_early = s.stopped_early;
  s = load_checkpoint(run_dir / "checkpoints" / s.best_dir, t);
  if (writer) write_text_atomically(run_dir / "checkpoints" / "best", s.best_dir);
  const auto v = validate(sys, data, projections, cfg.steps, options);
  set_training(sys, false, {});  // the trained system is handed back ready for inference
  result.steps = steps_done;
  result.stopped_early = stopped_early;
  result.step_seconds = step_seconds;
  result.samples_per_second = step_seconds > 0 ? double(steps_timed * cfg.batch_size) / step_seconds : 0.0;  // all ranks
  result.best_step = s.best_step;
  result.best_val_loss = v.loss;
  result.rollbacks = rollbacks;
  result.val_accuracy = v.accuracy;
  result.shared_variance = v.variance;
  return result;
}

}  // namespace nexus
