#include "nexus/training/trainer.hpp"

#include <nexus/plugin_api.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "nexus/base/progress.hpp"
#include "nexus/distributed/process_group.hpp"
#include "nexus/model/system.hpp"
#include "nexus/profile/profile.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/training/keeper.hpp"
#include "nexus/training/optimizer_state.hpp"
#include "nexus/training/schedule.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

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

namespace {

at::Tensor on(const at::Tensor& t, const c10::Device& device) { return t.defined() ? t.to(device) : t; }

// The cached features on the system's device, moved once (they are small next to a GPU's memory),
// so that a step only gathers rows where they already are.
std::vector<TaskData> moved_to(const std::vector<TaskData>& cached, const c10::Device& device) {
  std::vector<TaskData> moved;
  for (const auto& task : cached) {
    TaskData m = task;
    for (auto& f : m.train) f = on(f, device);
    for (auto& f : m.val) f = on(f, device);
    for (auto* t : {&m.train_labels, &m.val_labels, &m.train_reference, &m.val_reference}) *t = on(*t, device);
    moved.push_back(std::move(m));
  }
  return moved;
}

// Every parameter of the modules that are not frozen, marked as needing gradients (frozen ones
// are marked as not).
std::vector<torch::Tensor> trainable_parameters(ComposedSystem& sys, const std::set<std::string>& frozen, int64_t steps) {
  std::vector<torch::Tensor> params;
  for (const auto& [name, module] : sys.trainable_modules())
    for (auto& p : module->parameters()) {
      p.set_requires_grad(!frozen.count(name));
      if (!frozen.count(name)) params.push_back(p);
    }
  if (params.empty()) {
    if (steps > 0) throw TrainingError("nothing to train: every module is frozen");
    params.push_back(torch::zeros({1}, torch::requires_grad()));  // the optimizer needs a parameter; never stepped
  }
  return params;
}

// One training run: the loop and everything it carries between steps.
class Run {
 public:
  Run(const config::Composition& comp, ComposedSystem& sys, const std::vector<TaskData>& data, const TrainOptions& options)
      : cfg_(comp.trainer), sys_(sys), data_(data), options_(options),
        group_(options.group && options.group->world_size() > 1 ? options.group : nullptr),
        writer_(!group_ || group_->rank() == 0),
        // The global generator (initialisation, dropout) is seeded by whoever built the system,
        // before building it; batches come from a generator of their own so they do not depend on it.
        sampler_(at::detail::createCPUGenerator(uint64_t(cfg_.seed) + 1)),
        params_(trainable_parameters(sys, options.frozen, cfg_.steps)),
        optimizer_(params_, torch::optim::AdamWOptions(cfg_.lr).weight_decay(cfg_.weight_decay)),
        schedule_(cfg_.lr, cfg_.warmup_steps, cfg_.steps),
        keeper_(options.run_dir, {sys.trainable_modules(), optimizer_, sampler_},
                {options.max_rollbacks, options.rollback_tolerance, options.collapse_ratio, cfg_.patience},
                [this](const nlohmann::json& j) { log(j); }, writer_) {}

  TrainResult run();

 private:
  void start(TrainResult& result);
  void step(int64_t& steps_timed, double& step_seconds);
  void validate_and_judge();
  std::vector<Projections> compute_projections();
  void initialise_towers_from_data();
  void log(const nlohmann::json& j) {
    if (writer_) metrics_ << j.dump() << "\n" << std::flush;
  }

  const config::TrainerSpec& cfg_;
  ComposedSystem& sys_;
  const std::vector<TaskData>& data_;
  const TrainOptions& options_;
  dist::ProcessGroup* group_;
  bool writer_;  // checkpoints, metrics, progress
  at::Generator sampler_;
  std::vector<torch::Tensor> params_;
  torch::optim::AdamW optimizer_;
  WarmupCosineSchedule schedule_;
  std::ofstream metrics_;
  CheckpointKeeper keeper_;
  std::vector<Projections> projections_;
  std::map<std::string, std::pair<double, int64_t>> loss_window_;  // task -> loss sum and steps since the last log line
};

std::vector<Projections> Run::compute_projections() {
  set_training(sys_, false, options_.frozen);
  std::vector<Projections> out;
  for (const auto& task : data_)
    out.push_back({project_frozen(sys_, task.train, options_.frozen), project_frozen(sys_, task.val, options_.frozen)});
  return out;
}

// Towers that start from their inputs' principal directions (InitialisedFromData). Every rank
// computes the same directions from the same cache; rank 0's are broadcast all the same, so an
// eigenvector's sign can never differ between workers.
void Run::initialise_towers_from_data() {
  const auto names = profile::initialise_towers(sys_, data_, options_.frozen);
  for (const auto& name : names) {
    if (writer_) spdlog::info("{} starts from the principal directions of its training features", name);
    if (!group_) continue;
    for (const auto& [component, module] : sys_.trainable_modules())
      if (component == name) {
        torch::NoGradGuard no_grad;
        auto params = module->parameters();
        group_->broadcast(params, 0);
      }
  }
}

// Resumes from the latest checkpoint, or fits the feature statistics and writes checkpoint 0.
void Run::start(TrainResult& result) {
  const auto latest = run::latest_checkpoint(options_.run_dir);
  auto& s = keeper_.state();
  if (options_.resume && latest) {
    keeper_.resume(*latest);
    projections_ = compute_projections();
    result.resumed = true;
    spdlog::info("resuming {} at step {}", options_.run_dir, s.step);
  } else {
    if (writer_ && latest)
      throw TrainingError("run folder " + options_.run_dir + " already has checkpoints: use --resume, or another folder");
    if (options_.start == StartFrom::Data) {
      std::vector<std::vector<at::Tensor>> per_teacher(sys_.teachers().size());
      for (const auto& task : data_)
        for (size_t i = 0; i < task.train.size() && i < per_teacher.size(); ++i)
          if (!options_.frozen.count("norm." + sys_.teachers()[i].name)) per_teacher[i].push_back(task.train[i]);
      sys_.fit_feature_norms(per_teacher);
      initialise_towers_from_data();
    }
    projections_ = compute_projections();
    const auto v = validate(sys_, data_, projections_, 0, options_);
    s.initial_variance = v.variance;
    s.best_val = v.loss;
    s.best_dir = run::checkpoint_name(0);
    keeper_.save();
  }
  if (group_) group_->barrier();  // rank 0's first checkpoint exists before anyone may roll back to it
}

// One optimisation step on a batch of the task whose turn it is (round robin).
void Run::step(int64_t& steps_timed, double& step_seconds) {
  auto& s = keeper_.state();
  const auto step_start = std::chrono::steady_clock::now();
  const size_t k = size_t(s.step % int64_t(data_.size()));
  const auto& task = data_[k];
  const int64_t world = group_ ? group_->world_size() : 1, rank = group_ ? group_->rank() : 0;
  auto index = torch::randint(task.train_labels.size(0), {cfg_.batch_size}, sampler_, torch::kLong);
  if (group_) index = index.narrow(0, rank * (cfg_.batch_size / world), cfg_.batch_size / world);  // this rank's slice
  index = index.to(sys_.device());
  for (auto& g : optimizer_.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(schedule_.lr(s.step, s.lr_factor));
  optimizer_.zero_grad();
  auto r = sys_.fuse(rows(task.train, index), task.task, rows(projections_[k].train, index));
  auto loss = task_loss(sys_, task, r, task.train_labels.index_select(0, index), rows_of(task.train_reference, index), s.step,
                        options_);
  double loss_value = loss.item<double>();
  bool finite = std::isfinite(loss_value);
  if (finite) loss.backward();
  if (group_ && !average_gradients(*group_, params_, finite)) finite = false;  // some rank's loss was not
  if (!finite) {
    if (std::isfinite(loss_value)) loss_value = std::numeric_limits<double>::quiet_NaN();
    keeper_.roll_back("loss is " + std::to_string(loss_value) + " on task '" + task.task + "'");
    ++s.step;
    return;
  }
  const double grad_norm = cfg_.grad_clip > 0 ? torch::nn::utils::clip_grad_norm_(params_, cfg_.grad_clip) : 0.0;
  if (!std::isfinite(grad_norm)) {
    keeper_.roll_back("gradient norm is " + std::to_string(grad_norm));
    ++s.step;
    return;
  }
  optimizer_.step();
  step_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
  ++steps_timed;
  ++s.step;
  auto& window = loss_window_[task.task];
  window.first += loss_value;
  ++window.second;
  const int64_t log_every = std::max<int64_t>(1, cfg_.steps / 50);
  if (s.step % log_every == 0) {
    // One line per task: its mean loss since the last line. Tasks take turns, so logging only
    // the step's own task would show one task forever whenever log_every is a multiple of the
    // number of tasks.
    for (const auto& [name, sum] : loss_window_)
      log({{"step", s.step}, {"task", name}, {"loss", sum.first / double(sum.second)}, {"lr", schedule_.lr(s.step - 1, s.lr_factor)}});
    loss_window_.clear();
  }
  if (s.step % cfg_.validate_every == 0 || s.step == cfg_.steps) validate_and_judge();
}

void Run::validate_and_judge() {
  const int64_t step = keeper_.state().step;
  auto v = validate(sys_, data_, projections_, step, options_);
  if (group_) agree_with_rank0(*group_, v);
  log({{"step", step}, {"val_loss", v.loss}, {"val_accuracy", v.accuracy}, {"shared_variance", v.variance}});
  keeper_.judge(v.loss, v.variance);
}

TrainResult Run::run() {
  if (cfg_.batch_size % (group_ ? group_->world_size() : 1) != 0)
    throw TrainingError("trainer.batch_size=" + std::to_string(cfg_.batch_size) + " does not split evenly over " +
                        std::to_string(group_->world_size()) + " processes");
  fs::create_directories(options_.run_dir);
  TrainResult result;
  start(result);
  define_gradients(optimizer_);
  if (writer_) metrics_.open(fs::path(options_.run_dir) / "metrics.jsonl", std::ios::app);
  set_training(sys_, true, options_.frozen);
  ProgressLine progress("train", cfg_.steps, "steps");
  const int64_t first = keeper_.state().step;
  double step_seconds = 0;  // time in the optimisation steps themselves, for throughput figures
  int64_t steps_timed = 0;
  while (keeper_.state().step < cfg_.steps && !keeper_.state().stopped_early) {
    step(steps_timed, step_seconds);
    if (options_.progress && writer_) progress.update(keeper_.state().step, keeper_.state().step - first);
  }
  if (writer_) progress.finish();
  if (group_) group_->barrier();  // the best checkpoint is on disk for every rank
  // The run's result is its best checkpoint.
  const auto at_end = keeper_.finish();
  const auto v = validate(sys_, data_, projections_, cfg_.steps, options_);
  set_training(sys_, false, {});  // the trained system is handed back ready for inference
  result.steps = at_end.step;
  result.stopped_early = at_end.stopped_early;
  result.rollbacks = at_end.rollbacks;
  result.step_seconds = step_seconds;
  result.samples_per_second = step_seconds > 0 ? double(steps_timed * cfg_.batch_size) / step_seconds : 0.0;  // all ranks
  result.best_step = keeper_.state().best_step;
  result.best_val_loss = v.loss;
  result.val_accuracy = v.accuracy;
  result.shared_variance = v.variance;
  return result;
}

}  // namespace

TrainResult train(const config::Composition& comp, ComposedSystem& sys, const std::vector<TaskData>& cached,
                  const TrainOptions& options) {
  if (cached.empty()) throw TrainingError("nothing to train: the composition has no heads with data");
  if (sys.device().is_cpu()) return Run(comp, sys, cached, options).run();
  const auto moved = moved_to(cached, sys.device());
  return Run(comp, sys, moved, options).run();
}

}  // namespace nexus
