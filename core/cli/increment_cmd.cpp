// nexus add-teacher / remove-teacher / train FILE --from RUN: change a trained run's teachers and
// train only what the change needs, with the evidence that everything else stayed as it was.
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.hpp"
#include "increment.hpp"
#include "nexus/config/emit.hpp"
#include "nexus/config/loader.hpp"
#include "nexus/core/caching.hpp"
#include "nexus/core/evaluation.hpp"
#include "nexus/core/incremental.hpp"
#include "nexus/core/system.hpp"
#include "nexus/core/trainer.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace nexus::cli {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

bool contains(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

std::string join(const std::vector<std::string>& v, const std::string& sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out.empty() ? "-" : out;
}

std::string modality_of(const ComposedSystem& sys, const std::string& teacher) {
  for (const auto& t : sys.teachers())
    if (t.name == teacher) return to_string(t.teacher->modality());
  return "";
}

// The composite's accuracy on a task's test split, from cached features.
double test_accuracy(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                     const config::HeadSpec& head) {
  const auto test = load_split_features(comp, sys, store, head.task, "test");
  const auto out = head_outputs(sys, test.features, head.task, head.name);
  return (out.argmax(1) == test.labels).to(torch::kDouble).mean().item<double>();
}

void copy_probes(const fs::path& from, const fs::path& to) {
  if (!fs::is_directory(from)) return;
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from))
    if (e.path().extension() == ".json" && !fs::exists(to / e.path().filename()))
      fs::copy_file(e.path(), to / e.path().filename());
}

struct Phases {
  double cache = 0, train = 0, eval = 0;
  int64_t steps = 0;
  double total() const { return cache + train + eval; }
  nlohmann::json json() const {
    return {{"cache_seconds", cache}, {"train_seconds", train}, {"eval_seconds", eval},
            {"train_and_eval_seconds", train + eval}, {"total_seconds", total()}, {"steps", steps}};
  }
};

// The same final composition trained from scratch, for the wall-time comparison.
nlohmann::json full_retrain(const config::Composition& comp, const registry::Registry& reg, cache::FeatureCache& store,
                            const fs::path& dir, const std::string& composition_recorded, const std::string& composition_file,
                            const std::vector<std::string>& overrides, bool resume, bool json) {
  Phases ph;
  auto t = Clock::now();
  torch::manual_seed(uint64_t(comp.trainer.seed));
  auto sys = ComposedSystem::build(comp, reg);
  CachingOptions co;
  co.progress = !json;
  cache_features(comp, sys, store, co);
  const auto data = load_task_data(comp, sys, store);
  ph.cache = since(t);
  write_run_info(dir.string(), composition_file, overrides, nullptr, composition_recorded);
  t = Clock::now();
  TrainOptions to;
  to.run_dir = dir.string();
  to.resume = resume;
  to.progress = !json;
  const auto result = train(comp, sys, data, to);
  ph.train = since(t);
  ph.steps += result.steps;
  t = Clock::now();
  nlohmann::json ev;
  evaluate_and_report(comp, sys, store, dir.string(), true, &ev);
  ph.eval = since(t);
  nlohmann::json tasks = nlohmann::json::object();
  for (const auto& task : ev.at("tasks")) tasks[task.at("task").get<std::string>()] = task.at("accuracy");
  return {{"run", dir.string()}, {"timing", ph.json()}, {"accuracy", tasks}};
}

void print_proof(const nlohmann::json& p, std::ostream& out) {
  char line[512];
  out << "\n" << p.at("kind").get<std::string>() << ": " << p.at("base_run").get<std::string>() << " -> "
      << p.at("run").get<std::string>() << "\n";
  out << "  added teachers: " << join(p.at("added_teachers")) << "   removed: " << join(p.at("removed_teachers"))
      << "   trained: " << join(p.at("trained")) << "\n";
  if (!p.at("lost_tasks").empty()) {
    out << "  capabilities lost:\n";
    for (const auto& l : p.at("lost_tasks"))
      out << "    " << l.at("task").get<std::string>() << " (head " << l.at("head").get<std::string>() << "): "
          << l.at("why").get<std::string>() << "\n";
  }
  out << "\n  frozen components (sha256 of parameters and buffers, base run -> new run):\n";
  for (const auto& c : p.at("components")) {
    if (c.at("role") != "frozen") continue;
    std::snprintf(line, sizeof line, "    %-28s %.16s -> %.16s  %s\n", c.at("name").get<std::string>().c_str(),
                  c.at("before").get<std::string>().c_str(), c.at("after").get<std::string>().c_str(),
                  c.at("identical").get<bool>() ? "identical" : "CHANGED");
    out << line;
  }
  out << "\n";
  std::snprintf(line, sizeof line, "  %-20s %9s %9s %9s  %s\n", "task", "before", "after", "change", "probes of the new teachers");
  out << line;
  for (const auto& t : p.at("tasks")) {
    std::string probes;
    for (const auto& [name, acc] : t.at("new_teacher_probes").items()) {
      char b[96];
      std::snprintf(b, sizeof b, "%s%s %.4f", probes.empty() ? "" : ", ", name.c_str(), acc.get<double>());
      probes += b;
    }
    char before[32] = "-", change[32] = "new";
    if (!t.at("before").is_null()) {
      const double b = t.at("before").get<double>(), a = t.at("after").get<double>();
      std::snprintf(before, sizeof before, "%.4f", b);
      std::snprintf(change, sizeof change, "%+.4f", a - b);
    }
    std::snprintf(line, sizeof line, "  %-20s %9s %9.4f %9s  %s\n", t.at("task").get<std::string>().c_str(), before,
                  t.at("after").get<double>(), change, probes.empty() ? "-" : probes.c_str());
    out << line;
  }
  const auto& tm = p.at("timing");
  std::snprintf(line, sizeof line,
                "\n  wall time: features %.1f s, training %.1f s (%lld steps on %s), evaluation %.1f s; total %.1f s\n",
                tm.at("cache_seconds").get<double>(), tm.at("train_seconds").get<double>(),
                (long long)tm.at("steps").get<int64_t>(), join(p.at("trained_tasks")).c_str(),
                tm.at("eval_seconds").get<double>(), tm.at("total_seconds").get<double>());
  out << line;
  if (p.contains("full_retrain")) {
    const auto& f = p.at("full_retrain").at("timing");
    std::snprintf(line, sizeof line,
                  "  full retrain of the same composition: features %.1f s, training %.1f s (%lld steps), "
                  "evaluation %.1f s; total %.1f s\n  incremental / full: %.3f (training + evaluation), %.3f (total)\n",
                  f.at("cache_seconds").get<double>(), f.at("train_seconds").get<double>(),
                  (long long)f.at("steps").get<int64_t>(), f.at("eval_seconds").get<double>(), f.at("total_seconds").get<double>(),
                  p.at("ratio_train_and_eval").get<double>(), p.at("ratio_total").get<double>());
    out << line;
  }
  out << "  status: " << p.at("status").get<std::string>() << "\n";
}

}  // namespace

int run_increment(const Globals&, const registry::Registry& reg, const IncrementRequest& a) {
  const fs::path out = fs::absolute(a.out).lexically_normal();
  const fs::path staging = out.string() + ".partial";
  const fs::path rejected = out.string() + ".rejected";
  if (fs::exists(out)) throw UsageError(out.string() + " already exists: pick another --out, or remove it");
  if (fs::exists(staging) && !a.resume)
    throw UsageError(staging.string() + " holds an interrupted run: add --resume to continue it, or remove it");
  const auto catalog = plugin_catalog(reg);

  // Everything that can be wrong with the request is found before anything is written.
  const auto base_info = read_run_info(a.base_run);
  const auto base_comp = config::load_composition(base_info.composition, base_info.overrides, catalog);
  auto base_sys = ComposedSystem::build(base_comp, reg);
  load_run_weights(base_sys, a.base_run);

  std::string next_file = a.composition_file;
  const std::string final_composition = a.composition_text.empty() ? a.composition_file : (out / "composition.yaml").string();
  if (!a.composition_text.empty()) {
    // Validated from memory; written into the staging folder only once everything checks out.
    next_file = (staging / "composition.yaml").string();
  }
  auto next_comp = a.composition ? *a.composition : config::load_composition(next_file, a.overrides, catalog);
  next_comp.source = next_file;
  for (const auto& h : next_comp.heads)
    if (!next_comp.tasks.count(h.task))
      throw UsageError("head '" + h.name + "' trains on task '" + h.task + "', which data.tasks does not define");
  torch::manual_seed(uint64_t(next_comp.trainer.seed));  // fresh towers and router rows draw from it
  auto next_sys = ComposedSystem::build(next_comp, reg);
  auto plan = plan_increment(base_comp, base_sys, next_comp, next_sys, a.train_router);
  if (!plan.changes_anything())
    throw UsageError("the composition adds and removes no teacher or head of run " + a.base_run +
                     ": nothing to train incrementally (train it from scratch without --from)");
  for (const auto& name : plan.added_teachers) {
    const auto m = modality_of(next_sys, name);
    const bool used = std::any_of(next_comp.heads.begin(), next_comp.heads.end(),
                                  [&](const auto& h) { return next_comp.tasks.at(h.task).modality == m; });
    if (used) continue;
    std::vector<std::string> have;
    for (const auto& h : next_comp.heads) {
      const auto& mm = next_comp.tasks.at(h.task).modality;
      if (!contains(have, mm)) have.push_back(mm);
    }
    const auto& spec = *std::find_if(next_comp.teachers.begin(), next_comp.teachers.end(), [&](const auto& t) { return t.name == name; });
    const std::string a_task = (std::string("aeiou").find(m.front()) != std::string::npos ? "an " : "a ") + m + " task";
    throw config::ConfigError({config::Diagnostic{
        spec.loc, "teacher '" + name + "' takes " + m + " inputs, and no head trains on " + a_task,
        "the run's heads take " + join(have) + " inputs; to add a capability, give the teacher file heads:, losses: "
        "and data: {tasks: ...} entries for " + a_task + " (a new head is trained only when asked for)"}});
  }
  for (const auto& n : plan.notes) spdlog::warn("{}", n);
  if (const auto why = carry_over(plan, base_sys, next_sys); !why.empty())
    spdlog::warn("the router starts from a fresh initialisation: {}", why);
  std::map<std::string, std::string> before;
  for (const auto& [name, module] : base_sys.trainable_modules()) before[name] = module_digest(base_sys, name);

  // The run folder: built in <out>.partial, renamed when it passes its contracts.
  fs::create_directories(staging);
  if (!a.composition_text.empty()) {
    const auto file = staging / "composition.yaml";
    if (fs::exists(file)) {
      std::ifstream in(file);
      std::stringstream ss;
      ss << in.rdbuf();
      if (ss.str() != a.composition_text)
        throw UsageError(staging.string() + " was started for a different change: remove it, or repeat the same command");
    } else {
      std::ofstream(file.string() + ".tmp") << a.composition_text;
      fs::rename(file.string() + ".tmp", file);
    }
  }
  const nlohmann::json extra{{"base_run", fs::absolute(a.base_run).lexically_normal().string()}, {"kind", a.kind}};
  write_run_info(staging.string(), next_file, a.composition_text.empty() ? a.overrides : std::vector<std::string>{}, &extra,
                 final_composition);

  Phases ph;
  cache::FeatureCache store(feature_cache_root(a.cache_root));
  auto t = Clock::now();
  CachingOptions co;
  co.progress = !a.json;
  co.dtype = a.fp16 ? cache::DType::F16 : cache::DType::F32;
  for (const auto& r : cache_features(next_comp, next_sys, store, co))
    if (r.computed_rows) spdlog::info("features {} {}/{}: computed", r.teacher, r.dataset, r.split);
  cache_features(base_comp, base_sys, store, co);  // normally all there already: the base run cached them
  const auto all = load_task_data(next_comp, next_sys, store);
  ph.cache = since(t);

  // What the increment can change, and what the old composite said there (anti-forgetting).
  std::vector<TaskData> data;
  std::vector<std::string> trained_tasks;
  bool any_reference = false;
  for (const auto& td : all) {
    bool affected = contains(plan.added_heads, td.head);
    for (size_t i = 0; i < next_sys.teachers().size(); ++i)
      affected = affected || (td.train[i].defined() && contains(plan.added_teachers, next_sys.teachers()[i].name));
    affected = affected || (plan.router_trained && router_matters(next_sys, td.val, td.task));
    if (!affected) continue;
    TaskData d = td;
    if (contains(plan.kept_heads, td.head) && a.kl_weight > 0) {
      const auto btrain = load_split_features(base_comp, base_sys, store, td.task, "train");
      const auto bval = load_split_features(base_comp, base_sys, store, td.task, "val");
      if (btrain.labels.size(0) == td.train_labels.size(0) && btrain.labels.equal(td.train_labels) &&
          bval.labels.equal(td.val_labels)) {
        d.train_reference = head_outputs(base_sys, btrain.features, td.task, td.head);
        d.val_reference = head_outputs(base_sys, bval.features, td.task, td.head);
        any_reference = true;
      } else {
        spdlog::warn("task '{}' uses other rows than in the base run: no anti-forgetting term for it", td.task);
      }
    }
    trained_tasks.push_back(td.task);
    data.push_back(std::move(d));
  }
  auto tcomp = next_comp;
  // Default budget: a quarter of what each task gets in a full run, per task trained. One tower
  // per new teacher learns, against fixed heads, and the solo phase gets it there fast (the demo:
  // 400 steps reach the new teacher's own probe score; a full run of the same composition takes 2400).
  const int64_t per_task = std::max<int64_t>(1, (probe_budget(next_comp) + 3) / 4);
  const int64_t steps = plan.trained.empty() || data.empty() ? 0 : a.steps > 0 ? a.steps : per_task * int64_t(data.size());
  tcomp.trainer.steps = steps;
  tcomp.trainer.warmup_steps = std::min(tcomp.trainer.warmup_steps, steps / 4);
  TrainOptions to;
  to.run_dir = staging.string();
  to.resume = a.resume;
  to.progress = !a.json;
  to.frozen = plan.frozen;
  if (any_reference) {
    Options ko;
    ko.set("temperature", std::to_string(a.kl_temperature));
    to.anti_forgetting = reg.create_loss("kl", ko);
    to.anti_forgetting_weight = a.kl_weight;
  }
  spdlog::info("training {} on {} for {} steps; frozen: {}", join(plan.trained), join(trained_tasks), steps,
               plan.frozen.size());
  t = Clock::now();
  // Phase 1, solo: each new tower alone drives the (frozen) heads of the tasks its teacher serves;
  // the router, with one teacher to weigh there, has no say. Next to trained towers a fresh one
  // would be gated away before it learnt anything (to the router it is noise), and gated away it
  // gets almost no gradient: the composite then creeps up over thousands of steps instead of
  // hundreds. Phase 2 trains the towers and the router together on the real mixture.
  const int64_t solo_steps = steps == 0 || plan.added_teachers.empty() ? 0 : a.solo_steps >= 0 ? std::min(a.solo_steps, steps) : steps / 2;
  if (solo_steps > 0 && !fs::exists(staging / "checkpoints" / "latest")) {
    std::vector<TaskData> solo;
    for (const auto& d : data) {
      TaskData sd = d;
      sd.train_reference = sd.val_reference = at::Tensor();
      bool served = false;
      for (size_t i = 0; i < next_sys.teachers().size(); ++i) {
        if (contains(plan.added_teachers, next_sys.teachers()[i].name)) {
          served = served || sd.train[i].defined();
        } else {
          sd.train[i] = sd.val[i] = at::Tensor();
        }
      }
      if (served) solo.push_back(std::move(sd));
    }
    if (!solo.empty()) {
      auto scomp = tcomp;
      scomp.trainer.steps = solo_steps;
      scomp.trainer.warmup_steps = std::min(next_comp.trainer.warmup_steps, solo_steps / 4);
      TrainOptions so = to;
      so.run_dir = (staging / "solo").string();
      so.frozen.insert("router");
      so.anti_forgetting = nullptr;
      spdlog::info("solo phase: {} steps", solo_steps);
      ph.steps += train(scomp, next_sys, solo, so).steps;
    }
  }
  tcomp.trainer.steps = steps - solo_steps;
  tcomp.trainer.warmup_steps = std::min(next_comp.trainer.warmup_steps, tcomp.trainer.steps / 4);
  // Training on no task still writes the carried-over weights as the run's checkpoint.
  const auto result = train(tcomp, next_sys, data.empty() ? all : data, to);
  ph.train = since(t);
  ph.steps += result.steps;

  // The proof is taken from what is on disk, as every later command will read it.
  load_run_weights(next_sys, staging.string());
  nlohmann::json components = nlohmann::json::array();
  bool frozen_ok = true;
  for (const auto& [name, module] : next_sys.trainable_modules()) {
    const auto after = module_digest(next_sys, name);
    nlohmann::json c{{"name", name}, {"after", after}};
    if (name == "router" && !plan.router_trained) {
      // Not trained, but not bit-identical either when teachers come or go: its per-teacher
      // outputs were mapped by name (the remaining gates renormalise).
      c["role"] = "mapped";
      c["before"] = before.at(name);
    } else if (plan.frozen.count(name)) {
      c["role"] = "frozen";
      c["before"] = before.at(name);
      c["identical"] = before.at(name) == after;
      frozen_ok = frozen_ok && before.at(name) == after;
    } else {
      c["role"] = before.count(name) ? "trained" : "new";
      if (before.count(name)) c["before"] = before.at(name);
    }
    components.push_back(c);
  }

  t = Clock::now();
  copy_probes(fs::path(a.base_run) / "probes", staging / "probes");  // the kept teachers' probes are reused
  nlohmann::json eval_json;
  evaluate_and_report(next_comp, next_sys, store, staging.string(), a.json, &eval_json);
  ph.eval = since(t);

  nlohmann::json tasks = nlohmann::json::array();
  for (const auto& task : eval_json.at("tasks")) {
    const std::string name = task.at("task");
    nlohmann::json row{{"task", name}, {"after", task.at("accuracy")}, {"before", nullptr},
                       {"retention", task.at("retention")}, {"contract", task.at("contract")},
                       {"violated", task.at("violated")}, {"probes", task.at("probes")}};
    for (const auto& h : base_comp.heads)
      if (h.task == name && contains(plan.kept_heads, h.name)) row["before"] = test_accuracy(base_comp, base_sys, store, h);
    nlohmann::json new_probes = nlohmann::json::object();
    for (const auto& [teacher, probe] : task.at("probes").items())
      if (contains(plan.added_teachers, teacher)) new_probes[teacher] = probe.at("test_accuracy");
    row["new_teacher_probes"] = new_probes;
    tasks.push_back(row);
  }
  nlohmann::json lost = nlohmann::json::array();
  for (const auto& h : base_comp.heads) {
    if (!contains(plan.removed_heads, h.name)) continue;
    const auto& m = base_comp.tasks.at(h.task).modality;
    lost.push_back({{"task", h.task}, {"head", h.name},
                    {"why", "no remaining teacher takes " + m + " inputs (removed: " + join(plan.removed_teachers) + ")"}});
  }
  const auto violations = eval_json.at("violations").get<std::vector<std::string>>();
  nlohmann::json proof{{"format", 1},
                       {"kind", a.kind},
                       {"base_run", fs::absolute(a.base_run).lexically_normal().string()},
                       {"run", out.string()},
                       {"added_teachers", plan.added_teachers},
                       {"removed_teachers", plan.removed_teachers},
                       {"added_heads", plan.added_heads},
                       {"lost_tasks", lost},
                       {"trained", plan.trained},
                       {"trained_tasks", trained_tasks},
                       {"anti_forgetting", {{"loss", "kl"}, {"weight", any_reference ? a.kl_weight : 0.0},
                                            {"temperature", a.kl_temperature}}},
                       {"components", components},
                       {"frozen_identical", frozen_ok},
                       {"tasks", tasks},
                       {"violations", violations},
                       {"timing", ph.json()},
                       {"stopped_early", result.stopped_early},
                       {"notes", plan.notes}};
  if (a.compare_full) {
    spdlog::info("training the same composition from scratch for the comparison");
    const auto full = full_retrain(next_comp, reg, store, staging / "full-retrain", final_composition, next_file,
                                   a.composition_text.empty() ? a.overrides : std::vector<std::string>{}, a.resume, a.json);
    const auto& ft = full.at("timing");
    proof["full_retrain"] = full;
    proof["full_retrain"]["run"] = (out / "full-retrain").string();
    proof["ratio_train_and_eval"] = (ph.train + ph.eval) / std::max(1e-9, ft.at("train_and_eval_seconds").get<double>());
    proof["ratio_total"] = ph.total() / std::max(1e-9, ft.at("total_seconds").get<double>());
  }
  const bool ok = violations.empty() && frozen_ok;
  proof["status"] = ok ? "ok" : "failing";
  {
    const auto tmp = staging / "proof.json.tmp";
    std::ofstream(tmp) << proof.dump(1) << "\n";
    fs::rename(tmp, staging / "proof.json");
  }
  if (!a.json) print_proof(proof, std::cout);
  if (ok || a.force) {
    fs::rename(staging, out);
  } else {
    fs::remove_all(rejected);
    fs::rename(staging, rejected);
  }
  if (a.json) std::cout << proof.dump(2) << "\n";
  if (!frozen_ok) spdlog::error("a frozen component changed: the proof failed (see {}/proof.json)", (ok || a.force ? out : rejected).string());
  for (const auto& v : violations) spdlog::error("retention contract violated: {}", v);
  if (!violations.empty())
    std::cerr << (a.force ? "nexus: the run is kept at " + out.string() + ", marked failing (--force)\n"
                          : "nexus: the run is not written; it is kept for inspection at " + rejected.string() +
                                " (--force writes it anyway, marked failing)\n");
  return ok ? kOk : kRuntimeFailure;
}

namespace {

// The base run's composition as one tree: overrides applied, relative paths made absolute.
config::Node base_tree(const RunInfo& info, const config::PluginCatalog& catalog) {
  auto root = config::load_file(info.composition);
  for (const auto& o : info.overrides) config::apply_override(root, o);
  config::absolutize_paths(root, catalog, fs::absolute(info.composition).parent_path().string());
  return root;
}

// The value under `key`, created empty (of `kind`) when the map does not have it.
config::Node& child(config::Node& map, const std::string& key, config::Node::Kind kind) {
  if (!map.find(key)) {
    config::Node n;
    n.kind = kind;
    map.map.emplace_back(key, n);
    map.key_locs.push_back(map.loc);
  }
  return *map.find(key);
}

// Validates the edited tree (its nodes keep the locations of the files they came from) and sets
// the request's composition and the text the new run records.
void set_composition(IncrementRequest& a, const config::Node& root, const config::PluginCatalog& catalog) {
  config::Composition c;
  auto diags = config::validate(root, catalog, c);
  if (!diags.empty()) throw config::ConfigError(std::move(diags));
  a.composition = c;
  a.composition_text = "# Written by `nexus " + a.kind + "` from the run " +
                       fs::absolute(a.base_run).lexically_normal().string() + ".\n" + config::to_yaml(root);
}

void add_common_options(po::options_description& opts, IncrementRequest& a) {
  opts.add_options()("kl-weight", po::value(&a.kl_weight)->default_value(a.kl_weight),
                     "weight of the anti-forgetting KL term between the old and the new composite on the old tasks")
      ("kl-temperature", po::value(&a.kl_temperature)->default_value(a.kl_temperature), "its softmax temperature")
      ("steps", po::value(&a.steps), "training steps (default: a quarter of a task's share of the composition's steps, per task trained)")
      ("solo-steps", po::value(&a.solo_steps), "of those, steps in which each new tower trains alone first (default: half)")
      ("force", po::bool_switch(&a.force), "write the run even when a task misses its retention contract (marked failing)")
      ("compare-full", po::bool_switch(&a.compare_full), "also train the final composition from scratch and compare wall times")
      ("resume", po::bool_switch(&a.resume), "continue an interrupted run (<out>.partial)")
      ("cache", po::value(&a.cache_root), "feature cache folder (default $NEXUS_CACHE_DIR/features)")
      ("fp16", po::bool_switch(&a.fp16), "cache new features as fp16")
      ("json", po::bool_switch(&a.json), "print the proof as JSON");
}

}  // namespace

int cmd_add_teacher(const Globals& g, const std::vector<std::string>& args) {
  IncrementRequest a;
  a.kind = "add-teacher";
  std::string teacher_file;
  po::options_description opts(
      "Usage: nexus add-teacher RUN --teacher FILE.yaml --out NEWRUN [options]\n\n"
      "Adds the teacher(s) in FILE (one teacher entry as in `teachers:`, or a mapping with teachers:\n"
      "and, to add a capability, heads:, losses: and data: {tasks: ...}) to a trained run, caches only\n"
      "the new teachers' features, and trains only their towers and the router (and new heads); every\n"
      "other component is carried over bit for bit. Writes NEWRUN with its composition, checkpoints,\n"
      "evaluation and proof.json (checksums before/after, per-task scores before/after, the new\n"
      "teachers' probes, wall time). Exits 1 when a task misses its retention contract.\n\nOptions");
  opts.add_options()("teacher", po::value(&teacher_file), "YAML file with the teacher(s) to add")
      ("out", po::value(&a.out), "the new run folder");
  add_common_options(opts, a);
  if (!parse_command(args, opts, {{"run", &a.base_run}})) return kOk;
  if (a.base_run.empty() || teacher_file.empty() || a.out.empty())
    throw UsageError("add-teacher needs a RUN, --teacher FILE.yaml and --out NEWRUN");
  const auto reg = scanned_registry(g);
  const auto catalog = plugin_catalog(reg);
  const auto info = read_run_info(a.base_run);
  auto root = base_tree(info, catalog);

  auto add = config::load_file(teacher_file);  // throws with file:line:col on bad YAML
  const auto dir = fs::absolute(teacher_file).parent_path().string();
  std::vector<config::Node> teachers;
  if (add.find("plugin")) {
    teachers.push_back(add);
  } else if (const auto* list = add.find("teachers")) {
    std::vector<config::Diagnostic> diags;
    for (size_t i = 0; i < add.map.size(); ++i)
      if (!contains({"teachers", "heads", "losses", "data"}, add.map[i].first))
        diags.push_back({add.key_locs[i], "unexpected key '" + add.map[i].first + "' in a teacher file",
                         "a teacher file holds teachers:, and optionally heads:, losses: and data: {tasks: ...}"});
    if (!list->is_seq()) diags.push_back({list->loc, "'teachers' must be a list of teacher entries", ""});
    if (!diags.empty()) throw config::ConfigError(diags);
    teachers = list->items;
  } else {
    throw config::ConfigError({config::Diagnostic{
        add.loc, "expected a teacher entry (name, plugin, options, tower) or a mapping with 'teachers:'",
        "e.g.\n    name: minilm\n    plugin: hf_encoder\n    options: {path: models/all-MiniLM-L6-v2}\n    tower: {plugin: mlp}"}});
  }
  for (auto& t : teachers) config::absolutize_teacher_paths(t, catalog, dir);
  auto& seq = child(root, "teachers", config::Node::Kind::Sequence);
  seq.items.insert(seq.items.end(), teachers.begin(), teachers.end());
  if (auto* heads = add.find("heads")) {
    auto& h = child(root, "heads", config::Node::Kind::Sequence);
    for (auto item : heads->items) {
      config::absolutize_paths(item, catalog, dir);
      h.items.push_back(item);
    }
  }
  if (auto* losses = add.find("losses")) {
    auto& l = child(root, "losses", config::Node::Kind::Sequence);
    l.items.insert(l.items.end(), losses->items.begin(), losses->items.end());
  }
  if (auto* data = add.find("data"))
    if (auto* tasks = data->find("tasks"); tasks && tasks->is_map()) {
      auto& into = child(child(root, "data", config::Node::Kind::Map), "tasks", config::Node::Kind::Map);
      for (size_t i = 0; i < tasks->map.size(); ++i) {
        if (into.find(tasks->map[i].first))
          throw config::ConfigError({config::Diagnostic{tasks->key_locs[i], "task '" + tasks->map[i].first +
                                                                                 "' is already defined by the run's composition",
                                                        "give the new task another name"}});
        into.map.push_back(tasks->map[i]);
        into.key_locs.push_back(tasks->key_locs[i]);
      }
    }
  set_composition(a, root, catalog);
  return run_increment(g, reg, a);
}

int cmd_remove_teacher(const Globals& g, const std::vector<std::string>& args) {
  IncrementRequest a;
  a.kind = "remove-teacher";
  std::string teacher;
  bool no_retrain = false;
  po::options_description opts(
      "Usage: nexus remove-teacher RUN --teacher NAME --out NEWRUN [options]\n\n"
      "Drops a teacher, its tower and its router output from a trained run. Retrains only the router\n"
      "(or, with --no-retrain, nothing: the remaining gates are renormalised), re-checks the retention\n"
      "contract on the remaining tasks, and names the tasks no remaining teacher can serve (lost).\n\nOptions");
  opts.add_options()("teacher", po::value(&teacher), "name of the teacher to remove")
      ("out", po::value(&a.out), "the new run folder")
      ("no-retrain", po::bool_switch(&no_retrain), "train nothing: keep the router, renormalised over the remaining teachers");
  add_common_options(opts, a);
  if (!parse_command(args, opts, {{"run", &a.base_run}})) return kOk;
  if (a.base_run.empty() || teacher.empty() || a.out.empty())
    throw UsageError("remove-teacher needs a RUN, --teacher NAME and --out NEWRUN");
  a.train_router = !no_retrain;
  const auto reg = scanned_registry(g);
  const auto catalog = plugin_catalog(reg);
  const auto info = read_run_info(a.base_run);
  const auto base = config::load_composition(info.composition, info.overrides, catalog);
  std::vector<std::string> names;
  for (const auto& t : base.teachers) names.push_back(t.name);
  if (!contains(names, teacher)) throw UsageError("run " + a.base_run + " has no teacher '" + teacher + "' (it has " + join(names) + ")");
  if (names.size() == 1) throw UsageError("'" + teacher + "' is the run's only teacher: nothing would be left");
  if (base.router.input == "teacher:" + teacher)
    throw UsageError("the router reads teacher '" + teacher + "''s features (router.input): change router.input first");

  // Which modalities the remaining teachers take: the tasks of any other modality are lost.
  const auto base_sys = ComposedSystem::build(base, reg);
  std::vector<std::string> remaining;
  for (const auto& t : base_sys.teachers())
    if (t.name != teacher) remaining.push_back(to_string(t.teacher->modality()));
  std::vector<std::string> lost_heads, lost_tasks;
  for (const auto& h : base.heads)
    if (!contains(remaining, base.tasks.at(h.task).modality)) {
      lost_heads.push_back(h.name);
      if (!contains(lost_tasks, h.task)) lost_tasks.push_back(h.task);
    }
  if (lost_heads.size() == base.heads.size())
    throw UsageError("removing '" + teacher + "' would leave no task a teacher can serve");

  auto root = base_tree(info, catalog);
  auto erase_if = [](config::Node* seq, auto pred) {
    if (!seq || !seq->is_seq()) return;
    seq->items.erase(std::remove_if(seq->items.begin(), seq->items.end(), pred), seq->items.end());
  };
  auto scalar = [](const config::Node& n, const std::string& key) {
    const auto* v = n.find(key);
    return v && v->is_scalar() ? v->scalar : std::string();
  };
  erase_if(root.find("teachers"), [&](const config::Node& n) { return scalar(n, "name") == teacher; });
  erase_if(root.find("heads"), [&](const config::Node& n) { return contains(lost_heads, scalar(n, "name")); });
  erase_if(root.find("losses"), [&](const config::Node& n) { return contains(lost_heads, scalar(n, "head")); });
  auto erase_keys = [&](config::Node* map) {
    if (!map || !map->is_map()) return;
    for (size_t i = map->map.size(); i-- > 0;)
      if (contains(lost_tasks, map->map[i].first)) {
        map->map.erase(map->map.begin() + std::ptrdiff_t(i));
        map->key_locs.erase(map->key_locs.begin() + std::ptrdiff_t(i));
      }
  };
  if (auto* data = root.find("data")) erase_keys(data->find("tasks"));
  if (auto* retention = root.find("retention")) erase_keys(retention->find("tasks"));
  set_composition(a, root, catalog);
  return run_increment(g, reg, a);
}

}  // namespace nexus::cli
