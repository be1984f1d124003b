#include "nexus/core/serving.hpp"

#include "nexus/core/device.hpp"

#include <torch/torch.h>

#include <nexus/options.hpp>

#include <filesystem>
#include <set>
#include <stdexcept>

#include "nexus/core/evaluation.hpp"
#include "nexus/core/incremental.hpp"
#include "nexus/registry/registry.hpp"

namespace fs = std::filesystem;

namespace nexus::serving {

namespace {

std::string checkpoint_name(const std::string& run_dir) {
  return fs::path(run_dir).filename().string() + "@" + fs::path(run_checkpoint(run_dir)).filename().string();
}

// A teacher entry moved into another composition: its relative `path` options resolve against the
// composition it came from, so make them absolute first.
void absolutize(config::PluginSpec& spec, const std::string& kind, const registry::Registry& reg, const fs::path& base) {
  const auto* rec = reg.find(kind, spec.plugin, spec.version);
  if (!rec) return;
  for (const auto& s : parse_option_schema(rec->options_schema)) {
    auto it = spec.options.find(s.name);
    if (s.type == "path" && it != spec.options.end() && !it->second.empty() && fs::path(it->second).is_relative())
      it->second = (base / it->second).lexically_normal().string();
  }
}

}  // namespace

std::shared_ptr<const Snapshot> load_snapshot(Recipe recipe, std::shared_ptr<const registry::Registry> registry) {
  auto snap = std::make_shared<Snapshot>();
  snap->registry = registry;
  snap->composition = recipe.base.composition;
  auto& comp = snap->composition;
  std::string version = checkpoint_name(recipe.base.dir);

  // Where each module's weights come from; unnamed ones from the base run's checkpoint.
  std::map<std::string, std::string> sources;
  std::set<std::string> named;
  for (const auto& overlay : recipe.overlays) {
    const auto ckpt = run_checkpoint(overlay.run.dir);
    std::string list;
    for (const auto& c : overlay.components) {
      list += (list.empty() ? "" : ",") + c;
      if (c.rfind("teacher.", 0) == 0) {
        const auto name = c.substr(8);
        const auto& theirs = overlay.run.composition.teachers;
        const auto src = std::find_if(theirs.begin(), theirs.end(), [&](const auto& t) { return t.name == name; });
        if (src == theirs.end()) throw std::runtime_error("run " + overlay.run.dir + " has no teacher '" + name + "'");
        const auto dst = std::find_if(comp.teachers.begin(), comp.teachers.end(), [&](const auto& t) { return t.name == name; });
        if (dst == comp.teachers.end())
          throw std::runtime_error("the served composition has no teacher '" + name +
                                   "' to replace (a new teacher comes with its run: swap in add-teacher's output)");
        *dst = *src;
        const auto base = fs::path(overlay.run.composition.source).parent_path();
        absolutize(dst->teacher, "teacher", *registry, base);
        absolutize(dst->tower, "tower", *registry, base);
        for (const auto& m : {"norm." + name, "tower." + name}) {
          sources[m] = ckpt;
          named.insert(m);
        }
      } else {
        sources[c] = ckpt;
        named.insert(c);
      }
    }
    version += "+" + list + "=" + checkpoint_name(overlay.run.dir);
  }

  snap->system = std::make_unique<ComposedSystem>(ComposedSystem::build(comp, *registry));
  const auto device = resolve_device(recipe.device.empty() ? comp.trainer.device : recipe.device);
  snap->system->to(device);
  snap->device = describe_device(device);
  std::set<std::string> modules;
  for (const auto& [name, m] : snap->system->trainable_modules()) modules.insert(name);
  for (const auto& c : named)
    if (!modules.count(c)) {
      std::string known;
      for (const auto& m : modules) known += (known.empty() ? "" : ", ") + m;
      throw std::runtime_error("unknown component '" + c + "' (this system has " + known + ", and teacher.NAME)");
    }
  load_run_weights(*snap->system, recipe.base.dir, sources);
  // The digest tells apart runs in folders of the same name, and mixes of components.
  snap->version = version + "#" + weights_digest(*snap->system).substr(0, 12);
  snap->recipe = std::move(recipe);

  for (const auto& h : comp.heads) {
    snap->head_of_task[h.task] = h.name;
    snap->modality_of_task[h.task] = comp.tasks.at(h.task).modality;
  }
  torch::NoGradGuard no_grad;
  for (const auto& t : snap->system->teachers()) {
    snap->teacher_names.push_back(t.name);
    const std::string m = to_string(t.teacher->modality());
    if (m == "text") continue;
    const auto example = t.teacher->example_input(1).tensor;
    snap->sample_shape[m] = std::vector<int64_t>(example.sizes().begin() + 1, example.sizes().end());
  }
  for (const auto& t : snap->system->teachers()) {
    const std::string m = to_string(t.teacher->modality());
    for (const auto& [task, modality] : snap->modality_of_task) {
      if (modality != m) continue;
      const auto r = snap->system->forward_routed(t.teacher->example_input(2), m, task);
      for (const auto& [head, out] : r.heads)
        if (!out.isfinite().all().item<bool>())
          throw std::runtime_error("smoke check failed: head '" + head + "' gives non-finite outputs on teacher '" +
                                   t.name + "''s example input");
    }
  }
  return snap;
}

MicroBatcher::MicroBatcher(BatcherOptions options, std::function<void(const BatchStats&)> on_batch)
    : options_(options), on_batch_(std::move(on_batch)), worker_([this] { loop(); }) {}

MicroBatcher::~MicroBatcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

ForwardResult MicroBatcher::run(std::shared_ptr<const Snapshot> snapshot, const std::string& task, TeacherInput inputs) {
  std::future<ForwardResult> answer;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw std::runtime_error("the server is shutting down");
    queue_.push_back(Job{std::move(snapshot), task, std::move(inputs), std::chrono::steady_clock::now(), {}});
    answer = queue_.back().answer.get_future();
  }
  wake_.notify_all();
  return answer.get();
}

void MicroBatcher::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    std::vector<Job> batch;
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
    int64_t rows = batch[0].inputs.size();
    const auto deadline = batch[0].arrived + options_.max_delay;
    // Gather company for the first request: same snapshot, same task, until full or its deadline.
    for (;;) {
      for (auto it = queue_.begin(); it != queue_.end() && rows < options_.max_rows;) {
        if (it->snapshot == batch[0].snapshot && it->task == batch[0].task && rows + it->inputs.size() <= options_.max_rows) {
          rows += it->inputs.size();
          batch.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      if (rows >= options_.max_rows || stopping_ || std::chrono::steady_clock::now() >= deadline) break;
      wake_.wait_until(lock, deadline);
    }
    lock.unlock();
    process(batch);
    lock.lock();
  }
}

ForwardResult MicroBatcher::forward(const Snapshot& s, const std::string& task, const TeacherInput& in, BatchStats& stats) {
  torch::NoGradGuard no_grad;
  stats.modality = s.modality_of_task.at(task);
  stats.rows = in.size();
  ForwardResult r;
  if (options_.dense) {
    r = s.system->forward(in, stats.modality, task);
    for (const auto& t : s.system->teachers())
      stats.teacher_rows.push_back(to_string(t.teacher->modality()) == stats.modality ? stats.rows : 0);
  } else {
    r = s.system->forward_routed(in, stats.modality, task, &stats.teacher_rows);
  }
  if (!s.system->device().is_cpu()) {  // requests are answered from host memory
    for (auto* t : {&r.shared, &r.weights, &r.logits, &r.selected})
      if (t->defined()) *t = t->cpu();
    for (auto& [head, out] : r.heads) out = out.cpu();
  }
  stats.selected = r.selected;
  return r;
}

void MicroBatcher::process(std::vector<Job>& jobs) {
  const auto& s = *jobs[0].snapshot;
  const auto& task = jobs[0].task;
  auto report = [&](BatchStats& stats, size_t requests) {
    stats.snapshot = jobs[0].snapshot;
    stats.requests = int64_t(requests);
    if (on_batch_) on_batch_(stats);
  };
  if (jobs.size() > 1) {
    TeacherInput all;
    std::vector<at::Tensor> tensors;
    for (const auto& j : jobs) {
      all.texts.insert(all.texts.end(), j.inputs.texts.begin(), j.inputs.texts.end());
      if (j.inputs.tensor.defined()) tensors.push_back(j.inputs.tensor);
    }
    if (!tensors.empty()) all.tensor = torch::cat(tensors, 0);
    BatchStats stats;
    try {
      const auto r = forward(s, task, all, stats);
      report(stats, jobs.size());
      int64_t offset = 0;
      for (auto& j : jobs) {
        const int64_t n = j.inputs.size();
        auto rows = [&](const at::Tensor& t) { return t.defined() ? t.narrow(0, offset, n) : t; };
        ForwardResult mine;
        mine.shared = rows(r.shared);
        mine.weights = rows(r.weights);
        mine.logits = rows(r.logits);
        mine.selected = rows(r.selected);
        mine.ran = r.ran;
        for (const auto& [head, out] : r.heads) mine.heads[head] = rows(out);
        j.answer.set_value(std::move(mine));
        offset += n;
      }
      return;
    } catch (const std::exception&) {
      stats.failed = true;
      report(stats, jobs.size());
      // Some input in the batch broke it: run each request alone so only its own fails.
    }
  }
  for (auto& j : jobs) {
    BatchStats stats;
    try {
      auto r = forward(*j.snapshot, j.task, j.inputs, stats);
      report(stats, 1);
      j.answer.set_value(std::move(r));
    } catch (...) {
      stats.failed = true;
      report(stats, 1);
      j.answer.set_exception(std::current_exception());
    }
  }
}

}  // namespace nexus::serving
