// Serving a composed system: immutable snapshots that a swap replaces whole, and the micro-batcher
// that runs requests for the same snapshot and task through one forward.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/core/system.hpp"
#include <nexus/teacher.hpp>

namespace nexus::serving {

// A run folder and the composition it was trained with (as recorded in its run.json).
struct RunSource {
  std::string dir;
  config::Composition composition;
};

// What a snapshot is made of: a run, then components taken from other runs, later ones winning.
// A component is a trainable module name ("tower.X", "norm.X", "router", "head.H") or "teacher.X":
// that teacher's entry from the other run's composition together with its norm and tower, which
// are bound to its features.
struct Recipe {
  RunSource base;
  struct Overlay {
    RunSource run;
    std::vector<std::string> components;
  };
  std::vector<Overlay> overlays;
  // auto, cpu, cuda or cuda:N; empty = the base composition's `device`.
  std::string device;
};

// One loaded system. Immutable once built: a request holds the snapshot it started with until it
// has answered, so every response comes entirely from one snapshot.
struct Snapshot {
  Recipe recipe;
  std::string version;  // folder@checkpoint[+components=folder@checkpoint...]#weights digest
  // The registry that created the plugin objects below; declared first so it is destroyed last.
  std::shared_ptr<const registry::Registry> registry;
  config::Composition composition;
  std::unique_ptr<ComposedSystem> system;
  std::vector<std::string> teacher_names;
  std::map<std::string, std::string> head_of_task, modality_of_task;
  std::map<std::string, std::vector<int64_t>> sample_shape;  // per tensor modality: one input's shape
  std::string device;  // where it runs, e.g. "cpu" or "cuda:0 (NVIDIA H200)"
};

// Builds the recipe's system, loads its weights and smoke-checks it (each teacher's example input
// through every head of its modality, all outputs finite). Throws with the reason on any failure.
std::shared_ptr<const Snapshot> load_snapshot(Recipe recipe, std::shared_ptr<const registry::Registry> registry);

struct BatcherOptions {
  int64_t max_rows = 64;                        // inputs per forward; a larger request runs alone
  std::chrono::microseconds max_delay{2000};    // how long the first request of a batch waits for company
  bool dense = false;                           // run every teacher of the modality (for comparison)
};

// What one batch did, for metrics.
struct BatchStats {
  std::shared_ptr<const Snapshot> snapshot;
  std::string modality;
  int64_t requests = 0, rows = 0;
  std::vector<int64_t> teacher_rows;  // rows each teacher encoded (snapshot->teacher_names order)
  at::Tensor selected;                // [rows, teachers] towers the router selected
  bool failed = false;
};

// Dynamic micro-batching: requests for the same snapshot and task are concatenated, up to max_rows,
// waiting at most max_delay after the first arrived, and go through one routed forward on the
// batcher's thread (modules are not re-entrant, so forwards are serial anyway). If a batch fails,
// its requests are retried one by one, so an input that makes a teacher throw fails its own
// request only.
class MicroBatcher {
 public:
  explicit MicroBatcher(BatcherOptions options, std::function<void(const BatchStats&)> on_batch = {});
  ~MicroBatcher();
  MicroBatcher(const MicroBatcher&) = delete;
  MicroBatcher& operator=(const MicroBatcher&) = delete;

  // Blocks until the inputs have been through the snapshot's system; returns this request's rows.
  // Rethrows what the forward threw when this request, run alone, fails.
  ForwardResult run(std::shared_ptr<const Snapshot> snapshot, const std::string& task, TeacherInput inputs);

 private:
  struct Job {
    std::shared_ptr<const Snapshot> snapshot;
    std::string task;
    TeacherInput inputs;
    std::chrono::steady_clock::time_point arrived;
    std::promise<ForwardResult> answer;
  };
  void loop();
  void process(std::vector<Job>& jobs);
  ForwardResult forward(const Snapshot& s, const std::string& task, const TeacherInput& in, BatchStats& stats);

  BatcherOptions options_;
  std::function<void(const BatchStats&)> on_batch_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace nexus::serving
