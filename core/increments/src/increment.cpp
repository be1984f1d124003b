#include "nexus/increments/increment.hpp"

#include <nexus/plugin_api.hpp>
#include <nexus/text.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <tuple>

#include "nexus/base/files.hpp"
#include "nexus/data/caching.hpp"
#include "nexus/evaluation/report.hpp"
#include "nexus/increments/carry_over.hpp"
#include "nexus/increments/edit.hpp"
#include "nexus/increments/plan.hpp"
#include "nexus/increments/repair.hpp"
#include "nexus/model/inference.hpp"
#include "nexus/model/system.hpp"
#include "nexus/pipeline/train.hpp"
#include "nexus/profile/profile.hpp"
#include "nexus/registry/registry.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/run/run_folder.hpp"
#include "nexus/training/trainer.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
std::string absolute(const std::string& path) { return fs::absolute(path).lexically_normal().string(); }

// What the new run is made of: a composition edited and validated in memory, whose text the run
// records (add-teacher, remove-teacher), or a file with overrides (train --from).
struct NextComposition {
  std::string kind;
  std::optional<config::Composition> composition;
  std::string text;
  std::string file;
  std::vector<std::string> overrides;
};

void copy_probes(const fs::path& from, const fs::path& to) {
  if (!fs::is_directory(from)) return;
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from))
    if (e.path().extension() == ".json" && !fs::exists(to / e.path().filename()))
      fs::copy_file(e.path(), to / e.path().filename());
}

// The composite's accuracy on a task's test split, from cached features.
double test_accuracy(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                     const config::HeadSpec& head) {
  return head_accuracy(sys, load_split_features(comp, sys, store, head.task, "test"), head);
}

class Increment {
 public:
  Increment(const IncrementRequest& request, NextComposition next, const registry::Registry& reg);
  Proof run();

 private:
  void plan();
  void stage();
  void write_record();
  CachingOptions open_cache();
  void cache();
  void size_towers();
  void select_tasks();
  TrainResult train();
  int64_t stage_steps() const;
  void train_plan(TrainResult& result);
  std::vector<ContractCheck> contract_checks();
  bool resume_repaired(TrainResult& result);
  void repair(TrainResult& result);
  void widen_stage(const Widening& widening, const std::vector<std::string>& failing, int n, TrainResult& result);
  TrainOptions train_options(const std::string& run_dir) const;
  void make_trainable(const std::vector<std::string>& components);
  void write_final_checkpoint();
  Proof proof_header() const;
  Proof preview();
  std::vector<LostTask> lost_tasks() const;
  Proof prove(const TrainResult& result);
  std::vector<ComponentProof> components(bool& frozen_ok);
  std::vector<TaskProof> task_rows(const Evaluation& ev);
  void compare_full(Proof& proof);
  void settle(Proof& proof);

  const IncrementRequest& r_;
  NextComposition next_;
  const registry::Registry& reg_;
  const config::PluginCatalog catalog_;
  const fs::path out_, staging_, rejected_;
  std::string next_file_, final_composition_;
  config::Composition base_comp_, next_comp_;
  std::unique_ptr<ComposedSystem> base_sys_, next_sys_;
  IncrementPlan plan_;
  std::map<std::string, std::string> before_;  // module -> digest in the base run
  std::unique_ptr<cache::FeatureCache> store_;
  std::vector<TaskData> all_, data_;
  std::vector<std::string> trained_tasks_;
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> references_;  // task -> the base composite's train, val outputs
  std::map<std::string, std::vector<ProbeScore>> probes_;                // task -> its teachers' probes
  std::map<std::string, SplitFeatures> tests_;                           // task -> its test split, for the checks
  std::vector<RepairStage> stages_;
  std::vector<std::string> data_sized_;  // `auto` tower options as measured (run.json's data_sized)
  bool any_reference_ = false;
  PhaseTimes ph_;
};

Increment::Increment(const IncrementRequest& r, NextComposition next, const registry::Registry& reg)
    : r_(r), next_(std::move(next)), reg_(reg), catalog_(plugin_catalog(reg)), out_(absolute(r.out)),
      staging_(out_.string() + ".partial"), rejected_(out_.string() + ".rejected") {
  if (fs::exists(out_)) throw InputError(out_.string() + " already exists: pick another --out, or remove it");
  if (fs::exists(staging_) && !r.resume)
    throw InputError(staging_.string() + " holds an interrupted run: add --resume to continue it, or remove it");
  // A composition validated in memory is written into the staging folder once everything checks out.
  next_file_ = next_.text.empty() ? next_.file : (staging_ / "composition.yaml").string();
  final_composition_ = next_.text.empty() ? next_.file : (out_ / "composition.yaml").string();
}

// Everything that can be wrong with the request is found before anything is written.
void Increment::plan() {
  const auto info = run::read_run_info(r_.base_run);
  if (const auto note = run::composition_note(info, r_.base_run); !note.empty()) spdlog::warn("{}", note);
  base_comp_ = run::load_run_composition(info, catalog_);
  base_sys_ = std::make_unique<ComposedSystem>(ComposedSystem::build(base_comp_, reg_));
  run::load_run_weights(*base_sys_, r_.base_run);
  next_comp_ = next_.composition ? *next_.composition : config::load_composition(next_file_, next_.overrides, catalog_);
  next_comp_.source = next_file_;
  require_task_data(next_comp_);
  torch::manual_seed(uint64_t(next_comp_.trainer.seed));  // fresh towers and router rows draw from it
  next_sys_ = std::make_unique<ComposedSystem>(ComposedSystem::build(next_comp_, reg_));
  plan_ = plan_increment(base_comp_, *base_sys_, next_comp_, *next_sys_, r_.repair.scope != RepairScope::None);
  check_plan(plan_, next_comp_, *next_sys_, r_.base_run);
  for (const auto& n : plan_.notes) spdlog::warn("{}", n);
  if (const auto why = carry_over(plan_, *base_sys_, *next_sys_); !why.empty())
    spdlog::warn("the router starts from a fresh initialisation: {}", why);
  for (const auto& [name, module] : base_sys_->trainable_modules()) before_[name] = module_digest(*base_sys_, name);
}

// The run folder: built in <out>.partial, renamed when it passes its contracts.
void Increment::stage() {
  fs::create_directories(staging_);
  if (!next_.text.empty()) {
    const auto file = staging_ / "composition.yaml";
    if (!fs::exists(file)) write_file_atomically(file, next_.text);
    else if (read_file(file) != next_.text)
      throw InputError(staging_.string() + " was started for a different change: remove it, or repeat the same command");
  }
  write_record();
}

void Increment::write_record() {
  run::RunRecord record;
  record.composition_file = next_file_;
  record.composition_recorded = final_composition_;
  if (next_.text.empty()) record.overrides = next_.overrides;
  record.base_run = absolute(r_.base_run);
  record.kind = next_.kind;
  record.data_sized = data_sized_;
  for (const auto& t : next_sys_->teachers()) record.teachers.emplace_back(t.name, t.teacher->fingerprint().str());
  run::write_run_info(staging_.string(), record, catalog_);
}

// A new teacher's tower with `rank: auto` is measured on its training features, like `nexus
// train` does, and built again at that size (kept towers come from the base run, with numbers).
void Increment::size_towers() {
  for (const auto& s : profile::size_towers(next_comp_, *next_sys_, all_, reg_)) data_sized_.push_back(s.assignment());
  if (!data_sized_.empty()) write_record();
}

// The feature cache, and how the features it lacks are computed.
CachingOptions Increment::open_cache() {
  store_ = std::make_unique<cache::FeatureCache>(feature_cache_root(r_.cache_root));
  CachingOptions co;
  co.progress = r_.progress;
  co.dtype = r_.fp16_cache ? cache::DType::F16 : cache::DType::F32;
  return co;
}

void Increment::cache() {
  const auto t = Clock::now();
  const auto co = open_cache();
  for (const auto& f : cache_features(next_comp_, *next_sys_, *store_, co))
    if (f.computed_rows) spdlog::info("features {} {}/{}: computed", f.teacher, f.dataset, f.split);
  cache_features(base_comp_, *base_sys_, *store_, co);  // normally all there already: the base run cached them
  all_ = load_task_data(next_comp_, *next_sys_, *store_);
  ph_.cache = since(t);
  size_towers();
}

// What the increment can change with what it trains now, and what the old composite said there
// (anti-forgetting). Called again when a repair widens what trains.
void Increment::select_tasks() {
  data_.clear();
  trained_tasks_.clear();
  for (const auto& td : all_) {
    if (!can_change(*next_sys_, td, plan_.frozen)) continue;
    TaskData d = td;
    if (contains(plan_.kept_heads, td.head) && r_.kl_weight > 0 && !references_.count(td.task)) {
      const auto btrain = load_split_features(base_comp_, *base_sys_, *store_, td.task, "train");
      const auto bval = load_split_features(base_comp_, *base_sys_, *store_, td.task, "val");
      if (btrain.labels.size(0) == td.train_labels.size(0) && btrain.labels.equal(td.train_labels) &&
          bval.labels.equal(td.val_labels)) {
        references_[td.task] = {head_outputs(*base_sys_, btrain.features, td.task, td.head),
                                head_outputs(*base_sys_, bval.features, td.task, td.head)};
      } else {
        spdlog::warn("task '{}' uses other rows than in the base run: no anti-forgetting term for it", td.task);
        references_[td.task] = {};
      }
    }
    if (const auto it = references_.find(td.task); it != references_.end() && it->second.first.defined()) {
      std::tie(d.train_reference, d.val_reference) = it->second;
      any_reference_ = true;
    }
    trained_tasks_.push_back(td.task);
    data_.push_back(std::move(d));
  }
}

TrainOptions Increment::train_options(const std::string& run_dir) const {
  TrainOptions to;
  to.run_dir = run_dir;
  to.resume = r_.resume;
  to.progress = r_.progress;
  to.frozen = plan_.frozen;
  if (any_reference_) {
    Options ko;
    ko.set("temperature", std::to_string(r_.kl_temperature));
    to.anti_forgetting = reg_.create_loss("kl", ko);
    to.anti_forgetting_weight = r_.kl_weight;
  }
  return to;
}

// Default budget of a stage: a quarter of what each task gets in a full run, per task trained.
// One tower per new teacher learns, against fixed heads, and the solo phase gets it there fast
// (the demo: 400 steps reach the new teacher's own probe score; a full run of the same
// composition takes 2400).
int64_t Increment::stage_steps() const {
  const int64_t per_task = std::max<int64_t>(1, (probe_budget(next_comp_) + 3) / 4);
  return plan_.trained.empty() || data_.empty() ? 0 : r_.steps > 0 ? r_.steps : per_task * int64_t(data_.size());
}

// The plan's own stage, in two phases. Solo: each new tower alone drives the (frozen) heads of
// the tasks its teacher serves; the router, with one teacher to weigh there, has no say. Next to
// trained towers a fresh one would be gated away before it learnt anything (to the router it is
// noise), and gated away it gets almost no gradient: the composite then creeps up over thousands
// of steps instead of hundreds. Then the towers and the router together on the real mixture.
void Increment::train_plan(TrainResult& result) {
  auto tcomp = next_comp_;
  const int64_t steps = stage_steps();
  const auto to = train_options(staging_.string());
  spdlog::info("training {} on {} for {} steps; frozen: {}", join_or(plan_.trained, "-"), join_or(trained_tasks_, "-"), steps,
               plan_.frozen.size());
  const int64_t solo_steps =
      steps == 0 || plan_.added_teachers.empty() ? 0 : r_.solo_steps >= 0 ? std::min(r_.solo_steps, steps) : steps / 2;
  if (solo_steps > 0 && !fs::exists(staging_ / "checkpoints" / "latest")) {
    std::vector<TaskData> solo;
    for (const auto& d : data_) {
      TaskData sd = d;
      sd.train_reference = sd.val_reference = at::Tensor();
      bool served = false;
      for (size_t i = 0; i < next_sys_->teachers().size(); ++i) {
        if (contains(plan_.added_teachers, next_sys_->teachers()[i].name)) served = served || sd.train[i].defined();
        else sd.train[i] = sd.val[i] = at::Tensor();
      }
      if (served) solo.push_back(std::move(sd));
    }
    if (!solo.empty()) {
      auto scomp = tcomp;
      scomp.trainer.steps = solo_steps;
      scomp.trainer.warmup_steps = std::min(next_comp_.trainer.warmup_steps, solo_steps / 4);
      TrainOptions so = to;
      so.run_dir = (staging_ / "solo").string();
      so.frozen.insert("router");
      so.anti_forgetting = nullptr;
      spdlog::info("solo phase: {} steps", solo_steps);
      ph_.steps += nexus::train(scomp, *next_sys_, solo, so).steps;
    }
  }
  tcomp.trainer.steps = steps - solo_steps;
  tcomp.trainer.warmup_steps = std::min(next_comp_.trainer.warmup_steps, tcomp.trainer.steps / 4);
  // Training on no task still writes the carried-over weights as the run's checkpoint.
  result = nexus::train(tcomp, *next_sys_, data_.empty() ? all_ : data_, to);
  ph_.steps += result.steps;
  if (steps > 0) stages_.push_back({RepairScope::Router, plan_.trained, trained_tasks_, ph_.steps, result.best_step, ".", {}, {}});
}

// Each changed task's contract as the gate judges it: the composite on the test split against its
// teachers' probes (reused from the base run where their key matches, else trained and kept in
// the run's probes/). A task without a contract is not judged.
std::vector<ContractCheck> Increment::contract_checks() {
  EvalOptions eo;
  if (!r_.dry_run) eo.probe_dir = (staging_ / "probes").string();  // a dry run writes nothing
  eo.reuse_dir = (fs::path(r_.base_run) / "probes").string();
  eo.progress = r_.progress;
  std::vector<ContractCheck> checks;
  for (const auto& d : data_) {
    if (retention_contract(next_comp_, d.task) <= 0) continue;  // nothing to keep, nothing to judge
    const auto& head = *std::find_if(next_comp_.heads.begin(), next_comp_.heads.end(), [&](const auto& h) { return h.name == d.head; });
    if (!probes_.count(d.task)) probes_[d.task] = teacher_probes(next_comp_, *next_sys_, *store_, head, eo);
    if (!tests_.count(d.task)) tests_.emplace(d.task, load_split_features(next_comp_, *next_sys_, *store_, d.task, "test"));
    checks.push_back(check_contract(next_comp_, *next_sys_, tests_.at(d.task), head, probes_.at(d.task)));
  }
  return checks;
}

// A resumed repair whose stages all finished (repair/stages.json): the last stage's weights and
// the stages as recorded.
bool Increment::resume_repaired(TrainResult& result) {
  const auto file = staging_ / "repair" / "stages.json";
  if (!r_.resume || !fs::exists(file)) return false;
  for (const auto& j : nlohmann::json::parse(read_file(file))) stages_.push_back(repair_stage_from_json(j));
  for (const auto& st : stages_)
    if (st.folder != ".") make_trainable(st.widened);  // the plan's own stage: plan_ has it already
  for (const auto& st : stages_) ph_.steps += st.steps;
  select_tasks();
  run::load_run_weights(*next_sys_, (staging_ / stages_.back().folder).string());
  result.steps = ph_.steps;
  return true;
}

void Increment::make_trainable(const std::vector<std::string>& components) {
  for (const auto& name : components) {
    plan_.frozen.erase(name);
    plan_.trained.push_back(name);
  }
}

// The weights as they are, as the run's checkpoint (best and latest) after all its steps.
void Increment::write_final_checkpoint() {
  const auto name = run::checkpoint_name(ph_.steps);
  run::write_checkpoint(staging_.string(), name, next_sys_->trainable_modules(), nullptr, "");
  run::set_best_checkpoint(staging_.string(), name);
}

// One widening stage: the components made trainable, then training from the weights as they are.
// The tasks that miss their contract train without the anti-forgetting term: they are what the
// stage must change (held to the base run's outputs, an added teacher's gain would be undone);
// every other task it trains keeps the term.
void Increment::widen_stage(const Widening& w, const std::vector<std::string>& failing, int n, TrainResult& result) {
  make_trainable(w.components);
  select_tasks();
  for (auto& d : data_)
    if (contains(failing, d.task)) d.train_reference = d.val_reference = at::Tensor();
  RepairStage st{w.scope, w.components, trained_tasks_, stage_steps(), 0, "repair/" + std::to_string(n) + "-" + to_string(w.scope), {}, w.why};
  spdlog::info("repair stage {} ({}): also training {} on {} for {} steps", n, to_string(w.scope), join(w.components),
               join_or(trained_tasks_, "-"), st.steps);
  auto tcomp = next_comp_;
  tcomp.trainer.steps = st.steps;
  tcomp.trainer.warmup_steps = std::min(next_comp_.trainer.warmup_steps, st.steps / 4);
  auto to = train_options((staging_ / st.folder).string());
  to.start = StartFrom::CurrentWeights;
  result = nexus::train(tcomp, *next_sys_, data_, to);
  ph_.steps += result.steps;
  st.steps = result.steps;
  st.best_step = result.best_step;
  st.checks = contract_checks();
  stages_.push_back(std::move(st));
}

// Widens what trains while a changed task would miss its contract (or, for an explicit scope,
// through every stage up to it), then makes the last stage's weights the run's checkpoint.
void Increment::repair(TrainResult& result) {
  if (stages_.empty()) return;
  stages_.front().checks = contract_checks();
  int n = 1;
  for (const auto scope : {RepairScope::Towers, RepairScope::Heads}) {
    if (scope > r_.repair.scope) break;
    std::vector<std::string> failing;
    for (const auto& c : stages_.back().checks)
      if (!c.holds()) failing.push_back(c.task);
    // An explicit scope widens for every changed task, judged or not.
    const auto tasks = r_.repair.when == RepairPolicy::When::Always ? trained_tasks_ : failing;
    if (tasks.empty()) break;
    const auto w = widen(scope, tasks, next_comp_, *next_sys_, plan_.frozen, stages_.back().checks);
    if (!w.components.empty()) widen_stage(w, failing, ++n, result);
  }
  if (stages_.size() == 1) return;
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& st : stages_) stages.push_back(to_json(st));
  run::write_json_file((staging_ / "repair" / "stages.json").string(), stages.dump(1));
  write_final_checkpoint();
}

TrainResult Increment::train() {
  const auto t = Clock::now();
  TrainResult result;
  if (!resume_repaired(result)) {
    train_plan(result);
    repair(result);
  } else {
    write_final_checkpoint();  // again: the resume may have come before it was written
  }
  ph_.train = since(t);
  return result;
}

// Every module's checksum as written to disk, against the base run's.
std::vector<ComponentProof> Increment::components(bool& frozen_ok) {
  std::vector<ComponentProof> out;
  frozen_ok = true;
  for (const auto& [name, module] : next_sys_->trainable_modules()) {
    ComponentProof c;
    c.name = name;
    c.after = module_digest(*next_sys_, name);
    if (name == "router" && !plan_.router_trained) {
      // Not trained, but not bit-identical either when teachers come or go: its per-teacher
      // outputs were mapped by name (the remaining gates renormalise).
      c.role = "mapped";
      c.before = before_.at(name);
    } else if (plan_.frozen.count(name)) {
      c.role = "frozen";
      c.before = before_.at(name);
      c.identical = *c.before == c.after;
      frozen_ok = frozen_ok && *c.identical;
    } else {
      c.role = before_.count(name) ? "trained" : "new";
      if (before_.count(name)) c.before = before_.at(name);
      for (const auto& st : stages_)
        if (const auto it = st.why.find(name); it != st.why.end()) {
          c.role = "widened";
          c.why = it->second;
          if (st.best_step == 0) c.why += "; its stage kept the weights it started from (validation loss did not improve)";
        }
    }
    out.push_back(c);
  }
  return out;
}

std::vector<TaskProof> Increment::task_rows(const Evaluation& ev) {
  std::vector<TaskProof> rows;
  for (const auto& task : ev.tasks) {
    TaskProof row;
    row.task = task.task;
    row.after = task.accuracy;
    row.retention = task.retention;
    row.contract = task.contract;
    row.violated = task.violated;
    row.probes = task.probes;
    for (const auto& h : base_comp_.heads)
      if (h.task == task.task && contains(plan_.kept_heads, h.name))
        row.before = test_accuracy(base_comp_, *base_sys_, *store_, h);
    for (const auto& p : task.probes)
      if (contains(plan_.added_teachers, p.teacher)) row.new_teacher_probes[p.teacher] = p.test_accuracy;
    rows.push_back(row);
  }
  return rows;
}

// The proof is taken from what is on disk, as every later command will read it.
// What a proof and a dry run's preview both say: the change, and how it may be repaired.
Proof Increment::proof_header() const {
  Proof p;
  p.kind = next_.kind;
  p.base_run = absolute(r_.base_run);
  p.run = out_.string();
  p.added_teachers = plan_.added_teachers;
  p.removed_teachers = plan_.removed_teachers;
  p.added_heads = plan_.added_heads;
  p.notes = plan_.notes;
  p.repair_policy = to_string(r_.repair);
  p.lost_tasks = lost_tasks();
  return p;
}

Proof Increment::prove(const TrainResult& result) {
  run::load_run_weights(*next_sys_, staging_.string());
  auto p = proof_header();
  p.trained = plan_.trained;
  p.trained_tasks = trained_tasks_;
  p.stages = stages_;
  p.kl_weight = any_reference_ ? r_.kl_weight : 0.0;
  p.kl_temperature = r_.kl_temperature;
  p.components = components(p.frozen_identical);
  p.stopped_early = result.stopped_early;

  const auto t = Clock::now();
  copy_probes(fs::path(r_.base_run) / "probes", staging_ / "probes");  // the kept teachers' probes are reused
  p.evaluation = evaluate_run(next_comp_, *next_sys_, *store_, staging_.string(), r_.progress).evaluation;
  ph_.eval = since(t);
  p.violations = p.evaluation.violations;
  p.tasks = task_rows(p.evaluation);
  p.timing = ph_;
  return p;
}

std::vector<LostTask> Increment::lost_tasks() const {
  std::vector<LostTask> lost;
  for (const auto& h : base_comp_.heads)
    if (contains(plan_.removed_heads, h.name))
      lost.push_back({h.task, h.name, "no remaining teacher takes " + base_comp_.tasks.at(h.task).modality +
                                          " inputs (removed: " + join_or(plan_.removed_teachers, "-") + ")"});
  return lost;
}

// --dry-run: the plan and the stages a repair may take, and (when no teacher is added) each
// changed task's contract as it stands with nothing trained. Writes nothing but missing features.
Proof Increment::preview() {
  cache_features(next_comp_, *next_sys_, *store_, open_cache());  // the run reuses them
  all_ = load_task_data(next_comp_, *next_sys_, *store_);
  select_tasks();
  IncrementPreview v;
  v.frozen.assign(plan_.frozen.begin(), plan_.frozen.end());
  v.trained = plan_.trained;
  v.changed_tasks = trained_tasks_;
  if (r_.repair.scope != RepairScope::None && !plan_.trained.empty())
    v.stages.push_back({RepairScope::Router, plan_.trained, trained_tasks_, stage_steps(), 0, ".", {}, {}});
  auto frozen = plan_.frozen;
  for (const auto scope : {RepairScope::Towers, RepairScope::Heads}) {
    if (scope > r_.repair.scope || v.stages.empty()) break;
    const auto w = widen(scope, trained_tasks_, next_comp_, *next_sys_, frozen, {});
    for (const auto& name : w.components) frozen.erase(name);
    v.stages.push_back({scope, w.components, {}, 0, 0, "", {}, w.why});
  }
  for (const auto& [name, module] : next_sys_->trainable_modules())
    if (frozen.count(name) && name != "router") v.never_change.push_back(name);
  if (plan_.added_teachers.empty()) v.now = contract_checks();
  else v.no_prediction = "teachers are added (" + join(plan_.added_teachers) + "): their towers are untrained until the run";
  auto p = proof_header();
  p.preview = std::move(v);
  return p;
}

void Increment::compare_full(Proof& p) {
  spdlog::info("training the same composition from scratch for the comparison");
  TrainRequest full;
  full.composition_file = next_file_;
  if (next_.text.empty()) full.overrides = next_.overrides;
  full.run_dir = (staging_ / "full-retrain").string();
  full.composition_recorded = final_composition_;
  full.cache_root = r_.cache_root;
  full.device = "cpu";
  full.resume = r_.resume;
  full.progress = r_.progress;
  const auto outcome = train_composition(full, reg_);
  FullRetrain f;
  f.run = (out_ / "full-retrain").string();
  f.timing = {outcome.cache_seconds, outcome.train_seconds, outcome.eval_seconds, outcome.result.steps};
  for (const auto& task : outcome.evaluation->evaluation.tasks) f.accuracy[task.task] = task.accuracy;
  p.ratio_train_and_eval = (ph_.train + ph_.eval) / std::max(1e-9, f.timing.train + f.timing.eval);
  p.ratio_total = ph_.total() / std::max(1e-9, f.timing.total());
  p.full_retrain = f;
}

// proof.json, then the folder's name: the run, or <run>.rejected for inspection.
void Increment::settle(Proof& p) {
  run::write_json_file((staging_ / "proof.json").string(), to_json(p).dump(1));
  if (p.ok() || r_.force) {
    fs::rename(staging_, out_);
    p.folder = out_.string();
  } else {
    fs::remove_all(rejected_);
    fs::rename(staging_, rejected_);
    p.folder = rejected_.string();
  }
}

Proof Increment::run() {
  plan();
  if (r_.dry_run) return preview();
  stage();
  cache();
  select_tasks();
  const auto result = train();
  auto proof = prove(result);
  if (r_.compare_full) compare_full(proof);
  settle(proof);
  return proof;
}

}  // namespace

Proof add_teacher(IncrementRequest r, const std::string& teacher_file, const registry::Registry& reg) {
  const auto catalog = plugin_catalog(reg);
  auto tree = run_composition_tree(run::read_run_info(r.base_run), catalog);
  add_teacher_file(tree, teacher_file, catalog);
  auto edited = finish_edit(tree, catalog, "add-teacher", r.base_run);
  return Increment(r, {"add-teacher", std::move(edited.composition), std::move(edited.text), "", {}}, reg).run();
}

Proof remove_teacher(IncrementRequest r, const std::string& teacher, const registry::Registry& reg) {
  const auto catalog = plugin_catalog(reg);
  const auto info = run::read_run_info(r.base_run);
  const auto base = run::load_run_composition(info, catalog);
  const auto removal = plan_removal(base, ComposedSystem::build(base, reg), teacher, r.base_run);
  auto tree = run_composition_tree(info, catalog);
  remove_teacher(tree, removal);
  auto edited = finish_edit(tree, catalog, "remove-teacher", r.base_run);
  return Increment(r, {"remove-teacher", std::move(edited.composition), std::move(edited.text), "", {}}, reg).run();
}

Proof train_from(IncrementRequest r, const std::string& composition_file, const std::vector<std::string>& overrides,
                 const registry::Registry& reg) {
  return Increment(r, {"train --from", std::nullopt, "", absolute(composition_file), overrides}, reg).run();
}

}  // namespace nexus
