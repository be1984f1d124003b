// Dynamic micro-batching for the server: requests for the same snapshot and task run through one
// routed forward.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nexus/teacher.hpp>

#include "nexus/serving/snapshot.hpp"

namespace nexus::serving {

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
