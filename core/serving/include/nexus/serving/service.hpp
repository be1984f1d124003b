// The server's behaviour, without the HTTP: what each endpoint answers, and the hot swap.
//
// Swaps: a swap loads and smoke-checks a whole run, or components of another run over what is
// serving, while requests go on; then the snapshot pointer is replaced atomically. A request keeps
// the snapshot it started with, so every response comes entirely from one snapshot (its version
// says which), and a failed swap leaves the old snapshot serving. Each swap scans the plugin path
// again, so an adapter dropped in after start is found, and every registry is parked for the
// service's lifetime: plugin code is never unmapped while anything it made may be in use. A
// successful swap therefore keeps its registry (plugin libraries mapped, a few MB each) for good,
// while the replaced snapshot's weights are freed once its last request ends; a rejected swap
// keeps nothing.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "nexus/registry/registry.hpp"
#include "nexus/serving/request_json.hpp"
#include "nexus/serving/batcher.hpp"
#include "nexus/serving/metrics.hpp"
#include "nexus/serving/snapshot.hpp"

namespace nexus::serving {

struct ServiceOptions {
  BatcherOptions batching;
  std::string device;       // auto, cpu, cuda, cuda:N; "" = the composition's
  std::string admin_token;  // bearer token of the admin endpoints; "" turns them off
  AudioLimits audio;  // longest clip, and most padded audio per request
  // A freshly scanned registry, for the first load and for every swap.
  std::function<registry::Registry()> scan;
};

// An endpoint's answer: status and JSON body.
struct Reply {
  int status = 200;
  nlohmann::json body;
};

class Service {
 public:
  // Loads the first snapshot from `run_dir`; throws what loading it threw.
  Service(const std::string& run_dir, ServiceOptions options);

  std::shared_ptr<const Snapshot> snapshot() const { return std::atomic_load(&current_); }

  // Swaps in run `dir` (no components), or those components of it over the current snapshot.
  // Returns the previous and the new version; throws RequestError(422) naming what failed.
  std::pair<std::string, std::string> swap_to(const std::string& dir, const std::vector<std::string>& components);

  // The endpoints. `answer` runs one of them as every JSON endpoint runs: timed and counted, a
  // RequestError answered with its status, anything else with 500 (and logged).
  Reply answer(const std::string& endpoint, const std::function<Reply()>& handler);
  Reply healthz() const;
  Reply readyz() const;
  Reply predict(const std::string& body);
  Reply embed(const std::string& body);
  Reply swap(const std::string& body, const std::string& authorization);
  std::string metrics_text() const;
  // Plugin registries kept alive: the first load's and one per successful swap.
  std::size_t registries_held() const { return held_; }

 private:
  // Routed forward of a request's inputs, micro-batched with requests for the same snapshot and task.
  ForwardResult forward(const std::shared_ptr<const Snapshot>& snapshot, const nlohmann::json& body, std::string& task);

  ServiceOptions options_;
  std::vector<std::shared_ptr<const registry::Registry>> parked_;
  std::shared_ptr<const Snapshot> current_;
  std::mutex swap_mutex_;  // one swap at a time
  std::atomic<int64_t> incidents_{0};
  std::atomic<std::size_t> held_{0};  // parked_.size(), readable without the swap lock  // numbers the failures logged for the client to quote
  Metrics metrics_;
  MicroBatcher batcher_;
};

}  // namespace nexus::serving
