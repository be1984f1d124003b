#include "nexus/serving/batcher.hpp"

#include <torch/torch.h>

#include "nexus/audio/batch.hpp"

namespace nexus::serving {

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
    std::vector<const TeacherInput*> clips;  // audio: padded to the longest of the batch
    for (const auto& j : jobs) {
      all.texts.insert(all.texts.end(), j.inputs.texts.begin(), j.inputs.texts.end());
      if (j.inputs.lengths.defined()) clips.push_back(&j.inputs);
      else if (j.inputs.tensor.defined()) tensors.push_back(j.inputs.tensor);
    }
    if (!clips.empty()) all = audio::concat_batches(clips);
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
