#include "nexus/distill/distill.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <ostream>

#include "nexus/base/errors.hpp"
#include "nexus/base/files.hpp"
#include "nexus/base/progress.hpp"
#include "nexus/config/loader.hpp"
#include "nexus/data/caching.hpp"
#include "nexus/data/dataset.hpp"
#include "nexus/data/feature_cache.hpp"
#include "nexus/data/task_features.hpp"
#include "nexus/increments/edit.hpp"
#include "nexus/model/system.hpp"
#include "nexus/plugin_api.hpp"
#include "nexus/registry/registry.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/run/run_folder.hpp"
#include "nexus/training/keeper.hpp"
#include "nexus/training/optimizer_state.hpp"
#include "nexus/training/schedule.hpp"
#include "student_run.hpp"
#include "text_student.hpp"

namespace nexus::distill {
namespace fs = std::filesystem;

namespace {

// One text task: the student's inputs (token ids), the labels, and what the composition made of
// the same rows (its shared-space embedding and its head's logits).
struct TaskMaterial {
  std::string task, head;
  std::vector<std::vector<int64_t>> train_ids, val_ids;
  at::Tensor train_labels, val_labels, train_shared, train_logits, val_shared, val_logits;
};

// The composition's outputs on cached features, in eval mode, a chunk at a time.
std::pair<at::Tensor, at::Tensor> composition_outputs(ComposedSystem& sys, const std::vector<at::Tensor>& features,
                                                      const std::string& task, const std::string& head) {
  torch::NoGradGuard no_grad;
  int64_t n = 0;
  for (const auto& f : features)
    if (f.defined()) n = f.size(0);
  std::vector<at::Tensor> shared, logits;
  for (int64_t start = 0; start < n; start += 1024) {
    std::vector<at::Tensor> chunk;
    for (const auto& f : features) chunk.push_back(f.defined() ? f.narrow(0, start, std::min<int64_t>(1024, n - start)) : f);
    auto r = sys.fuse(chunk, task);
    shared.push_back(r.shared);
    logits.push_back(r.heads.at(head));
  }
  return {torch::cat(shared), torch::cat(logits)};
}

std::vector<TaskMaterial> task_materials(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                                         const TextStudent& student) {
  std::vector<TaskMaterial> out;
  for (const auto& data : load_task_data(comp, sys, store)) {
    const auto& spec = comp.tasks.at(data.task);
    if (spec.modality != "text") continue;
    TaskMaterial m;
    m.task = data.task;
    m.head = data.head;
    std::tie(m.train_shared, m.train_logits) = composition_outputs(sys, data.train, data.task, data.head);
    std::tie(m.val_shared, m.val_logits) = composition_outputs(sys, data.val, data.task, data.head);
    for (const auto* split : {"train", "val"}) {
      const auto raw = load_task_split(comp, spec, split);
      const auto& cached_labels = std::string(split) == "train" ? data.train_labels : data.val_labels;
      if (!torch::equal(raw.labels, cached_labels.to(torch::kLong)))
        throw RuntimeFailure("task '" + data.task + "': the " + split + " split's labels differ from the cached ones; " +
                             "rebuild the cache (`nexus cache build`)");
      (std::string(split) == "train" ? m.train_ids : m.val_ids) = student.tokenize(raw.texts);
    }
    m.train_labels = data.train_labels.to(torch::kLong);
    m.val_labels = data.val_labels.to(torch::kLong);
    out.push_back(std::move(m));
  }
  if (out.empty()) throw InputError("the run has no text task with data: there is nothing for a text student to learn");
  return out;
}

// The student file's unlabelled texts: one per line, blank lines skipped. A file is data
// (docs/security.md): its size and line count are bounded before anything is kept.
constexpr std::uintmax_t kMaxUnlabelledBytes = std::uintmax_t(256) << 20;
constexpr std::size_t kMaxUnlabelledTexts = 1000000;

std::vector<std::string> read_unlabelled(const std::vector<std::string>& files) {
  std::vector<std::string> texts;
  for (const auto& file : files) {
    std::error_code ec;
    const auto size = fs::file_size(file, ec);
    if (ec || !fs::is_regular_file(file))
      throw InputError(file + ": cannot read this unlabelled text file (listed in the student file)");
    if (size > kMaxUnlabelledBytes)
      throw InputError(file + ": " + std::to_string(size) + " bytes of unlabelled text, more than the limit of " +
                       std::to_string(kMaxUnlabelledBytes) + " (kMaxUnlabelledBytes)");
    const auto text = read_file(file);
    std::size_t start = 0;
    while (start < text.size()) {
      auto end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      auto line = text.substr(start, end - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") != std::string::npos) texts.push_back(std::move(line));
      if (texts.size() > kMaxUnlabelledTexts)
        throw InputError(file + ": more than " + std::to_string(kMaxUnlabelledTexts) + " unlabelled texts (kMaxUnlabelledTexts)");
      start = end + 1;
    }
  }
  return texts;
}

// Appends the unlabelled texts to every text task's training rows, with label -1 (no
// cross-entropy) and the composition's outputs for them: its teachers run on the raw texts, once,
// or once per task when the router is conditioned on the task.
void add_unlabelled(std::vector<TaskMaterial>& materials, ComposedSystem& sys, const std::vector<std::string>& texts,
                    const TextStudent& student, bool per_task) {
  if (texts.empty()) return;
  spdlog::info("running the composition's text teachers on {} unlabelled texts", texts.size());
  const auto ids = student.tokenize(texts);
  torch::NoGradGuard no_grad;
  std::map<std::string, std::vector<at::Tensor>> logits;  // head -> chunks
  std::vector<at::Tensor> shared;
  const auto run = [&](const std::string& task) {
    logits.clear();
    shared.clear();
    for (std::size_t start = 0; start < texts.size(); start += 256) {
      TeacherInput in;
      in.texts.assign(texts.begin() + std::ptrdiff_t(start), texts.begin() + std::ptrdiff_t(std::min(texts.size(), start + 256)));
      auto r = sys.forward(in, "text", task);
      shared.push_back(r.shared);
      for (auto& [head, out] : r.heads) logits[head].push_back(out);
    }
  };
  for (auto& m : materials) {
    if (per_task || shared.empty()) run(m.task);
    m.train_ids.insert(m.train_ids.end(), ids.begin(), ids.end());
    m.train_shared = torch::cat({m.train_shared, torch::cat(shared)});
    m.train_logits = torch::cat({m.train_logits, torch::cat(logits.at(m.head))});
    m.train_labels = torch::cat({m.train_labels, torch::full({int64_t(texts.size())}, -1, torch::kLong)});
  }
}

struct LossParts {
  at::Tensor total;
  double embedding = 0, head = 0, label = 0;
};

LossParts distill_loss(const StudentLossSpec& l, const ForwardResult& r, const std::string& head, const at::Tensor& shared,
                       const at::Tensor& logits, const at::Tensor& labels) {
  const auto emb = l.embedding == "cosine" ? (1 - torch::cosine_similarity(r.shared, shared, 1)).mean()
                                           : torch::mse_loss(r.shared, shared);
  const auto& s = r.heads.at(head);
  const double t = l.temperature;
  const auto target_log = torch::log_softmax(logits / t, 1);
  const auto kl = (target_log.exp() * (target_log - torch::log_softmax(s / t, 1))).sum(1).mean() * (t * t);
  // Unlabelled rows (label -1) have no cross-entropy term.
  const auto known = labels.ge(0).nonzero().squeeze(1);
  const auto ce = known.numel() > 0 ? torch::cross_entropy_loss(s.index_select(0, known), labels.index_select(0, known))
                                    : torch::zeros({}, s.options());
  LossParts p;
  p.total = l.embedding_weight * emb + l.head_weight * kl + l.label_weight * ce;
  p.embedding = emb.item<double>();
  p.head = kl.item<double>();
  p.label = ce.item<double>();
  return p;
}

struct Validation {
  double loss = 0, variance = 0;
  std::map<std::string, double> accuracy;
};

// The training run: the student, its optimiser and schedule, the keeper of its checkpoints.
class Distiller {
 public:
  Distiller(const StudentSpec& spec, TextStudent& student, StudentRun& run, std::vector<TaskMaterial>& materials,
            const std::string& out_dir)
      : spec_(spec), tr_(spec.trainer), student_(student), run_(run), materials_(materials), out_dir_(out_dir),
        sampler_(at::detail::createCPUGenerator(uint64_t(tr_.seed) + 1)),
        optimizer_(param_groups(), torch::optim::AdamWOptions(tr_.lr).weight_decay(tr_.weight_decay)),
        schedule_(1.0, tr_.warmup_steps, tr_.steps),
        keeper_(out_dir, {run.modules(), optimizer_, sampler_}, {20, 1.05, 1e-3, tr_.patience},
                [this](const nlohmann::json& j) { log(j); }, true) {}

  DistillOutcome train(bool resume);

 private:
  std::vector<torch::optim::OptimizerParamGroup> param_groups() {
    std::vector<at::Tensor> encoder, heads;
    for (const auto& p : student_.encoder()->parameters())
      if (p.requires_grad()) encoder.push_back(p);
    for (const auto& [name, module] : run_.system().trainable_modules())
      if (name.rfind("tower.", 0) == 0 || name.rfind("head.", 0) == 0)
        for (const auto& p : module->parameters()) heads.push_back(p);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(encoder, std::make_unique<torch::optim::AdamWOptions>(tr_.lr));
    groups.emplace_back(heads, std::make_unique<torch::optim::AdamWOptions>(tr_.head_lr));
    for (auto& g : groups) static_cast<torch::optim::AdamWOptions&>(g.options()).weight_decay(tr_.weight_decay);
    return groups;
  }
  void log(const nlohmann::json& j) { metrics_ << j.dump() << "\n" << std::flush; }
  void set_training(bool on) {
    student_.encoder()->train(on);
    for (auto& [name, module] : run_.system().trainable_modules()) module->train(on);
  }
  void start(DistillOutcome& outcome, bool resume);
  void step(int64_t& timed, double& seconds);
  Validation validate();
  std::vector<at::Tensor> all_parameters() const {
    std::vector<at::Tensor> all;
    for (const auto& g : optimizer_.param_groups())
      for (const auto& p : g.params()) all.push_back(p);
    return all;
  }

  const StudentSpec& spec_;
  const StudentTrainerSpec& tr_;
  TextStudent& student_;
  StudentRun& run_;
  std::vector<TaskMaterial>& materials_;
  std::string out_dir_;
  at::Generator sampler_;
  torch::optim::AdamW optimizer_;
  WarmupCosineSchedule schedule_;
  std::ofstream metrics_;
  CheckpointKeeper keeper_;
};

Validation Distiller::validate() {
  torch::NoGradGuard no_grad;
  set_training(false);
  Validation v;
  std::vector<at::Tensor> shared_all;
  for (const auto& m : materials_) {
    // Longest first, so each chunk pads little.
    std::vector<int64_t> order(m.val_ids.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return m.val_ids[a].size() > m.val_ids[b].size(); });
    double loss = 0;
    int64_t correct = 0;
    for (std::size_t start = 0; start < order.size(); start += 128) {
      const std::vector<int64_t> rows(order.begin() + start, order.begin() + std::min(order.size(), start + 128));
      const auto index = torch::tensor(rows, torch::kLong);
      auto r = run_.system().fuse({student_.pooled(m.val_ids, rows)}, m.task);
      const auto labels = m.val_labels.index_select(0, index);
      const auto parts = distill_loss(spec_.loss, r, m.head, m.val_shared.index_select(0, index),
                                      m.val_logits.index_select(0, index), labels);
      loss += parts.total.item<double>() * double(rows.size());
      correct += r.heads.at(m.head).argmax(1).eq(labels).sum().item<int64_t>();
      shared_all.push_back(r.shared);
    }
    v.loss += loss / double(order.size()) / double(materials_.size());
    v.accuracy[m.task] = double(correct) / double(order.size());
  }
  v.variance = torch::cat(shared_all).var(0).mean().item<double>();
  set_training(true);
  return v;
}

void Distiller::start(DistillOutcome& outcome, bool resume) {
  const auto latest = run::latest_checkpoint(out_dir_);
  auto& s = keeper_.state();
  if (resume && latest) {
    keeper_.resume(*latest);
    outcome.resumed = true;
    spdlog::info("resuming {} at step {}", out_dir_, s.step);
    return;
  }
  if (latest) throw InputError(out_dir_ + " already has checkpoints: use --resume, or another folder");
  const auto v = validate();
  s.initial_variance = v.variance;
  s.best_val = v.loss;
  s.best_dir = run::checkpoint_name(0);
  log({{"step", 0}, {"val_loss", v.loss}, {"val_accuracy", v.accuracy}, {"shared_variance", v.variance}});
  keeper_.save();
}

void Distiller::step(int64_t& timed, double& seconds) {
  auto& s = keeper_.state();
  const auto t0 = std::chrono::steady_clock::now();
  const auto& m = materials_[std::size_t(s.step % int64_t(materials_.size()))];
  const auto index = torch::randint(m.train_labels.size(0), {tr_.batch_size}, sampler_, torch::kLong);
  const std::vector<int64_t> rows(index.data_ptr<int64_t>(), index.data_ptr<int64_t>() + index.numel());
  const double factor = schedule_.lr(s.step, s.lr_factor);
  auto& groups = optimizer_.param_groups();
  static_cast<torch::optim::AdamWOptions&>(groups[0].options()).lr(tr_.lr * factor);
  static_cast<torch::optim::AdamWOptions&>(groups[1].options()).lr(tr_.head_lr * factor);
  optimizer_.zero_grad();
  auto r = run_.system().fuse({student_.pooled(m.train_ids, rows)}, m.task);
  auto parts = distill_loss(spec_.loss, r, m.head, m.train_shared.index_select(0, index),
                            m.train_logits.index_select(0, index), m.train_labels.index_select(0, index));
  const double loss = parts.total.item<double>();
  if (!std::isfinite(loss)) {
    keeper_.roll_back("loss is " + std::to_string(loss) + " on task '" + m.task + "'");
    ++s.step;
    return;
  }
  parts.total.backward();
  const double grad_norm = tr_.grad_clip > 0 ? torch::nn::utils::clip_grad_norm_(all_parameters(), tr_.grad_clip) : 0.0;
  if (!std::isfinite(grad_norm)) {
    keeper_.roll_back("gradient norm is " + std::to_string(grad_norm));
    ++s.step;
    return;
  }
  optimizer_.step();
  seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++timed;
  ++s.step;
  if (s.step % std::max<int64_t>(1, tr_.steps / 100) == 0)
    log({{"step", s.step}, {"task", m.task}, {"loss", loss}, {"embedding", parts.embedding}, {"head_kl", parts.head},
         {"label_ce", parts.label}, {"lr_factor", factor}});
  if (s.step % tr_.validate_every == 0 || s.step == tr_.steps) {
    const auto v = validate();
    log({{"step", s.step}, {"val_loss", v.loss}, {"val_accuracy", v.accuracy}, {"shared_variance", v.variance}});
    keeper_.judge(v.loss, v.variance);
  }
}

DistillOutcome Distiller::train(bool resume) {
  metrics_.open(fs::path(out_dir_) / "metrics.jsonl", std::ios::app);
  DistillOutcome outcome;
  start(outcome, resume);
  define_gradients(optimizer_);
  set_training(true);
  ProgressLine progress("distill", tr_.steps, "steps");
  const int64_t first = keeper_.state().step;
  int64_t timed = 0;
  double seconds = 0;
  while (keeper_.state().step < tr_.steps && !keeper_.state().stopped_early) {
    step(timed, seconds);
    progress.update(keeper_.state().step, keeper_.state().step - first);
  }
  progress.finish();
  const auto at_end = keeper_.finish();
  set_training(false);
  outcome.steps = at_end.step;
  outcome.stopped_early = at_end.stopped_early;
  outcome.rollbacks = at_end.rollbacks;
  outcome.best_step = keeper_.state().best_step;
  outcome.train_seconds = seconds;
  outcome.samples_per_second = seconds > 0 ? double(timed * tr_.batch_size) / seconds : 0;
  return outcome;
}

}  // namespace

DistillOutcome distill(const DistillRequest& req, const registry::Registry& reg) {
  const auto spec = load_student_spec(req.student_file, req.overrides);
  const auto info = run::read_run_info(req.run_dir);
  const auto catalog = plugin_catalog(reg);
  const auto comp = run::load_run_composition(info, catalog);
  const auto teacher = student_teacher(comp, spec);  // the user's mistakes first, before anything is loaded
  // Before anything is written there: the student folder of a finished run would be overwritten.
  if (!req.resume && run::latest_checkpoint(req.out_dir))
    throw InputError(req.out_dir + " already has checkpoints: use --resume, or another folder");
  const auto unlabelled = read_unlabelled(spec.unlabelled);
  auto sys = ComposedSystem::build(comp, reg);
  run::load_run_weights(sys, req.run_dir);
  TextStudentOptions so;
  so.teacher_folder = teacher.teacher.options.at("path");
  so.layers = spec.text.layers;
  so.max_length = spec.text.max_length > 0 ? spec.text.max_length : teacher_max_length(teacher);
  so.dropout = spec.text.dropout;
  so.train_embeddings = spec.text.train_embeddings;
  TextStudent student(so);
  cache::FeatureCache store(feature_cache_root(req.cache_root));
  CachingOptions co;
  co.splits = {"train", "val"};
  co.progress = req.progress;
  cache_features(comp, sys, store, co);  // what `nexus train` cached; computes only what is missing
  auto materials = task_materials(comp, sys, store, student);
  add_unlabelled(materials, sys, unlabelled, student, comp.router.condition == "task");
  fs::create_directories(req.out_dir);
  torch::manual_seed(uint64_t(spec.trainer.seed));
  StudentRun run = StudentRun::create(req, info, comp, sys, spec, teacher, student, reg);
  auto outcome = Distiller(spec, student, run, materials, req.out_dir).train(req.resume);
  outcome.unlabelled_texts = int64_t(unlabelled.size());
  finish_student_run(req, comp, student, run, reg, outcome);
  return outcome;
}

void print_table(const DistillOutcome& o, std::ostream& out) {
  char line[512];
  std::snprintf(line, sizeof line, "%-20s %7s %9s %11s %11s  %-16s %9s %8s\n", "task", "rows", "student", "composition",
                "best probe", "(teacher)", "retention", "contract");
  out << line;
  for (const auto& t : o.tasks) {
    std::snprintf(line, sizeof line, "%-20s %7lld %9.4f %11.4f %11.4f  %-16s %9.4f %8s%s\n", t.task.c_str(), (long long)t.rows,
                  t.student, t.composition, t.best_probe, ("(" + t.best_teacher + ")").c_str(), t.retention,
                  t.contract > 0 ? std::to_string(t.contract).substr(0, 4).c_str() : "-", t.violated ? "  VIOLATED" : "");
    out << line;
  }
  std::snprintf(line, sizeof line, "student: %.1fM parameters (text side of the composition: %.1fM); %lld steps, best at %lld, "
                "%d rollbacks, %.0f s training (%.1f inputs/s)\n", double(o.student_parameters) / 1e6,
                double(o.composition_parameters) / 1e6, (long long)o.steps, (long long)o.best_step, o.rollbacks,
                o.train_seconds, o.samples_per_second);
  out << line;
  for (const auto& v : o.violations) out << "retention contract violated: " << v << "\n";
}

std::string to_json_text(const DistillOutcome& o) {
  nlohmann::json tasks = nlohmann::json::array();
  for (const auto& t : o.tasks)
    tasks.push_back({{"task", t.task}, {"split", t.split}, {"rows", t.rows}, {"student", t.student},
                     {"composition", t.composition}, {"best_probe", t.best_probe}, {"best_teacher", t.best_teacher},
                     {"retention", t.retention}, {"contract", t.contract}, {"violated", t.violated}});
  const nlohmann::json j{{"out", o.out_dir}, {"model", o.model_dir}, {"steps", o.steps}, {"best_step", o.best_step},
                         {"rollbacks", o.rollbacks}, {"resumed", o.resumed}, {"stopped_early", o.stopped_early},
                         {"train_seconds", o.train_seconds}, {"unlabelled_texts", o.unlabelled_texts}, {"samples_per_second", o.samples_per_second},
                         {"student_parameters", o.student_parameters}, {"composition_parameters", o.composition_parameters},
                         {"tasks", tasks}, {"violations", o.violations}, {"ok", o.violations.empty()},
                         {"weights_sha256", o.weights_sha256}};
  return j.dump(1);
}

}  // namespace nexus::distill
