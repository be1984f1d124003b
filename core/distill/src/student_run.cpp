#include "student_run.hpp"

#include <nexus/support/arrays.hpp>
#include <nexus/support/bert_config.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "nexus/base/errors.hpp"
#include "nexus/base/files.hpp"
#include "nexus/config/diagnostic.hpp"
#include "nexus/config/emit.hpp"
#include "nexus/config/loader.hpp"
#include "nexus/data/dataset.hpp"
#include "nexus/increments/edit.hpp"
#include "nexus/plugin_api.hpp"
#include "nexus/sha256.hpp"
#include "text_student.hpp"

namespace nexus::distill {
namespace fs = std::filesystem;

namespace {

std::string scalar(const config::Node& n, const std::string& key) {
  const auto* v = n.find(key);
  return v && v->is_scalar() ? v->scalar : std::string();
}

// The base run's composition tree with the student as its only teacher and only text tasks left.
config::Node student_tree(const run::RunInfo& info, const config::Composition& base, const config::PluginCatalog& catalog,
                          const config::TeacherSpec& teacher, const fs::path& model_dir, int64_t max_length) {
  auto tree = run_composition_tree(info, catalog);
  auto* teachers = tree.find("teachers");
  config::Node tower;
  for (const auto& t : teachers->items)
    if (scalar(t, "name") == teacher.name && t.find("tower")) tower = *t.find("tower");
  auto entry = config::load_string(std::string("name: ") + kStudentName +
                                       "\nplugin: hf_encoder\nmodality: text\n"
                                       "options: {path: model, max_length: 64, pooling: mean, normalize: 'false'}\n",
                                   "<nexus distill>");
  auto* options = entry.find("options");
  options->find("path")->scalar = model_dir.string();
  options->find("path")->quoted = true;
  options->find("max_length")->scalar = std::to_string(max_length);
  if (!tower.is_null()) {
    entry.map.emplace_back("tower", tower);
    entry.key_locs.push_back(tower.loc);
  }
  teachers->items = {entry};
  if (auto* router = tree.find("router")) *router = config::load_string("plugin: softmax\n", "<nexus distill>");
  // Every teacher but the student is already gone; what only they served goes the way
  // remove-teacher takes it (heads, their losses, tasks, retention entries).
  Removal non_text;
  for (const auto& h : base.heads)
    if (!base.tasks.count(h.task) || base.tasks.at(h.task).modality != "text") non_text.lost_heads.push_back(h.name);
  for (const auto& [name, task] : base.tasks)
    if (task.modality != "text") non_text.lost_tasks.push_back(name);
  remove_teacher(tree, non_text);
  // Head-less losses act on the router, which a single teacher does not have to learn.
  if (auto* losses = tree.find("losses"); losses && losses->is_seq())
    losses->items.erase(std::remove_if(losses->items.begin(), losses->items.end(),
                                       [](const config::Node& n) { return scalar(n, "head").empty(); }),
                        losses->items.end());
  if (auto* name = tree.find("name")) name->scalar += "-student";
  return tree;
}

// Copies every parameter and buffer of `from` into `to` (same module type and shapes).
void copy_module(torch::nn::Module& to, const torch::nn::Module& from, const std::string& what) {
  const auto src = run::module_tensors(from);
  torch::NoGradGuard no_grad;
  for (auto& [key, t] : run::module_tensors(to)) {
    const auto it = src.find(key);
    if (it == src.end() || it->second.sizes() != t.sizes())
      throw RuntimeFailure("cannot start the student from " + what + ": its '" + key + "' does not fit");
    t.copy_(it->second);
  }
}

// The base run's text side: its hf_encoder encoders, their towers, the router and the text heads.
int64_t text_side_parameters(const config::Composition& base, const ComposedSystem& sys) {
  int64_t n = parameter_count(*sys.router());
  for (std::size_t i = 0; i < base.teachers.size(); ++i) {
    const auto& t = base.teachers[i];
    if (t.modality != "text") continue;
    if (t.teacher.plugin == "hf_encoder" && t.teacher.options.count("path"))
      n += nexus_hf::BertConfig::from_json_file((fs::path(t.teacher.options.at("path")) / "config.json").string()).parameter_count();
    n += parameter_count(*sys.teachers()[i].tower);
  }
  for (const auto& h : sys.heads())
    if (base.tasks.count(h.task) && base.tasks.at(h.task).modality == "text") n += parameter_count(*h.tower);
  return n;
}

}  // namespace

config::TeacherSpec student_teacher(const config::Composition& comp, const StudentSpec& spec) {
  std::vector<std::string> text_teachers;
  for (const auto& t : comp.teachers) {
    if (t.modality == "text" && t.teacher.plugin == "hf_encoder") text_teachers.push_back(t.name);
    if (t.name != spec.text.from_teacher) continue;
    if (t.modality != "text" || t.teacher.plugin != "hf_encoder")
      throw InputError(spec.source + ": text.from_teacher '" + t.name + "' is a " + t.teacher.plugin + " " + t.modality +
                       " teacher; a text student starts from an hf_encoder (BERT-family) teacher");
    return t;
  }
  std::string all;
  for (const auto& n : text_teachers) all += (all.empty() ? "" : ", ") + n;
  throw InputError(spec.source + ": text.from_teacher '" + spec.text.from_teacher + "' is not a teacher of the run" +
                   (all.empty() ? " (it has no hf_encoder text teacher)" : " (hf_encoder text teachers: " + all + ")"));
}

int64_t teacher_max_length(const config::TeacherSpec& t) {
  const auto it = t.teacher.options.find("max_length");
  return it == t.teacher.options.end() ? 256 : std::stoll(it->second);
}

run::NamedModules StudentRun::modules() const {
  run::NamedModules m{{std::string("encoder.") + kStudentName, encoder_}};
  for (const auto& entry : system_->trainable_modules()) m.push_back(entry);
  return m;
}

StudentRun StudentRun::create(const DistillRequest& req, const run::RunInfo& info, const config::Composition& base,
                              ComposedSystem& base_sys, const StudentSpec& spec, const config::TeacherSpec& teacher,
                              TextStudent& student, const registry::Registry& reg) {
  const fs::path out = fs::absolute(req.out_dir).lexically_normal(), model = out / "model";
  if (!req.resume || !fs::exists(model / "model.safetensors")) student.export_folder(model);
  const auto catalog = plugin_catalog(reg);
  const auto tree = student_tree(info, base, catalog, teacher, model, student.max_length());
  auto edited = finish_edit(tree, catalog, "distill", req.run_dir);
  const auto file = out / "composition.yaml";
  write_file_atomically(file, edited.text);
  StudentRun r;
  r.composition_ = config::load_composition(file.string(), {}, catalog);
  r.system_ = std::make_unique<ComposedSystem>(ComposedSystem::build(r.composition_, reg));
  r.encoder_ = student.encoder().ptr();
  r.composition_parameters_ = text_side_parameters(base, base_sys);
  for (auto& [name, module] : r.system_->trainable_modules()) {
    std::string from = name;
    if (name == std::string("norm.") + kStudentName) from = "norm." + teacher.name;
    else if (name == std::string("tower.") + kStudentName) from = "tower." + teacher.name;
    else if (name == "router") continue;  // one teacher: its weight is 1 whatever the router holds
    const auto source = find_module(base_sys, from);
    if (!source) throw RuntimeFailure("the base run has no module '" + from + "' to start the student's '" + name + "' from");
    copy_module(*module, *source, "the base run's " + from);
  }
  run::RunRecord record;
  record.composition_file = file.string();
  record.base_run = fs::absolute(req.run_dir).lexically_normal().string();
  record.kind = "distill";
  for (const auto& t : r.system_->teachers()) record.teachers.emplace_back(t.name, t.teacher->fingerprint().str());
  run::write_run_info(out.string(), record, catalog);
  (void)spec;
  return r;
}

namespace {

// The norm, the tower and the heads for Python users, beside the encoder: tensors in
// nexus_heads.safetensors, how to apply them in nexus_heads.json.
void export_heads(const fs::path& model, const StudentRun& run, const TextStudent& student) {
  const auto& comp = run.composition();
  std::map<std::string, torch::Tensor> tensors;
  nlohmann::json j{{"format", "nexus-student-heads"}, {"version", 1}, {"pooling", "mean"}, {"normalize", false},
                   {"max_length", student.max_length()}, {"shared_dim", comp.shared_dim},
                   {"computation", "x = mean of the last hidden state over real tokens; x = (x - norm.mean) * norm.inv_std; "
                                   "z = tower(x) (the shared-space embedding); logits[task] = head(z)"}};
  const auto add = [&](const std::string& prefix, const torch::nn::Module& m) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [key, t] : run::module_tensors(m)) {
      tensors.emplace(prefix + key, t.detach().contiguous());
      names.push_back(prefix + key);
    }
    return names;
  };
  const auto& slot = const_cast<StudentRun&>(run).system().teachers().front();
  j["norm"] = {{"mean", "norm.mean"}, {"inv_std", "norm.inv_std"}};
  add("norm.", *slot.norm);
  const auto& tower_spec = comp.teachers.front().tower;
  j["tower"] = {{"plugin", tower_spec.plugin}, {"options", tower_spec.options}, {"tensors", add("tower.", *slot.tower)}};
  nlohmann::json heads = nlohmann::json::array();
  for (const auto& h : const_cast<StudentRun&>(run).system().heads()) {
    const auto& spec = *std::find_if(comp.heads.begin(), comp.heads.end(), [&](const auto& s) { return s.name == h.name; });
    const auto classes = load_task_split(comp, comp.tasks.at(h.task), "val").classes;
    heads.push_back({{"name", h.name}, {"task", h.task}, {"plugin", spec.tower.plugin}, {"options", spec.tower.options},
                     {"classes", classes}, {"tensors", add("head." + h.name + ".", *h.tower)}});
  }
  j["heads"] = heads;
  write_file_atomically(model / "nexus_heads.safetensors", support::safetensors_bytes(tensors, {{"format", "pt"}}));
  write_file_atomically(model / "nexus_heads.json", j.dump(1) + "\n");
}

// The served student's accuracy on each text task's test split, through its own composition (the
// hf_encoder plugin reading OUT/model): what `nexus serve OUT` answers.
std::map<std::string, std::pair<int64_t, double>> student_accuracy(const config::Composition& comp, ComposedSystem& sys) {
  std::map<std::string, std::pair<int64_t, double>> out;
  torch::NoGradGuard no_grad;
  for (const auto& h : sys.heads()) {
    const auto split = load_task_split(comp, comp.tasks.at(h.task), "test");
    int64_t correct = 0;
    for (int64_t start = 0; start < split.size(); start += 256) {
      const int64_t n = std::min<int64_t>(256, split.size() - start);
      TeacherInput in;
      in.texts.assign(split.texts.begin() + start, split.texts.begin() + start + n);
      const auto r = sys.forward(in, "text", h.task);
      correct += r.heads.at(h.name).argmax(1).eq(split.labels.narrow(0, start, n)).sum().item<int64_t>();
    }
    out[h.task] = {split.size(), split.size() ? double(correct) / double(split.size()) : 0.0};
  }
  return out;
}

}  // namespace

void finish_student_run(const DistillRequest& req, const config::Composition& base, TextStudent& student, StudentRun& run,
                        const registry::Registry& reg, DistillOutcome& outcome) {
  const fs::path out = fs::absolute(req.out_dir).lexically_normal(), model = out / "model";
  student.export_folder(model);
  export_heads(model, run, student);
  const auto catalog = plugin_catalog(reg);
  auto served = ComposedSystem::build(run.composition(), reg);
  run::RunRecord record;
  record.composition_file = (out / "composition.yaml").string();
  record.base_run = fs::absolute(req.run_dir).lexically_normal().string();
  record.kind = "distill";
  for (const auto& t : served.teachers()) record.teachers.emplace_back(t.name, t.teacher->fingerprint().str());
  run::write_run_info(out.string(), record, catalog);
  run::load_run_weights(served, out.string());
  outcome.out_dir = out.string();
  outcome.model_dir = model.string();
  outcome.weights_sha256 = sha256_hex(sha256_file((model / "model.safetensors").string()) + weights_digest(served));
  outcome.student_parameters = student.parameters();
  for (const auto& [name, module] : served.trainable_modules())
    if (name != "router") outcome.student_parameters += parameter_count(*module);
  outcome.composition_parameters = run.composition_parameters();
  const auto base_eval_file = fs::path(req.run_dir) / "eval.json";
  if (!fs::exists(base_eval_file))
    throw InputError(req.run_dir + " has no eval.json: run `nexus eval " + req.run_dir + "` first, so the student can be compared");
  const auto base_eval = nlohmann::json::parse(read_file(base_eval_file));
  for (const auto& [task, result] : student_accuracy(run.composition(), served)) {
    StudentTaskResult t;
    t.task = task;
    t.rows = result.first;
    t.student = result.second;
    for (const auto& e : base_eval.at("tasks"))
      if (e.at("task") == task) {
        t.composition = e.at("accuracy");
        t.best_probe = e.at("best_probe");
        t.best_teacher = e.at("best_teacher");
        t.split = e.at("split");
      }
    t.retention = t.best_probe > 0 ? t.student / t.best_probe : 0;
    t.contract = base.retention.per_task.count(task) ? base.retention.per_task.at(task) : base.retention.default_min;
    t.violated = t.contract > 0 && t.retention < t.contract;
    if (t.violated)
      outcome.violations.push_back(task + ": retention " + std::to_string(t.retention) + " < " + std::to_string(t.contract));
    outcome.tasks.push_back(t);
  }
  write_file_atomically(out / "distill.json", to_json_text(outcome) + "\n");
}

}  // namespace nexus::distill
