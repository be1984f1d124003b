// `nexus train`'s engine: a composition into a run folder. Caches every teacher's features on the
// composition's data (computing only what is missing), trains the towers, router and heads on the
// cache, and evaluates the result against each teacher's own probe. Data-parallel workers (the
// torchrun variables) join one c10d process group: they cache their parts of every entry, train
// on their slices of each batch, and rank 0 writes and evaluates.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "nexus/distributed/process_group.hpp"
#include "nexus/evaluation/report.hpp"
#include "nexus/training/trainer.hpp"

namespace nexus {
namespace registry {
class Registry;
}

struct TrainOutcome;

struct TrainRequest {
  std::string composition_file;
  std::vector<std::string> overrides;
  std::string run_dir;                  // "" = runs/<composition name>
  std::string composition_recorded;     // what run.json names, when not composition_file (see run::RunRecord)
  std::string cache_root;               // "" = feature_cache_root()
  std::string device;                   // auto, cpu, cuda, cuda:N; "" = the composition's
  bool resume = false;
  bool fp16_cache = false;              // cache new features as fp16
  bool evaluate = true;                 // probes and retention after training (and the test split cached)
  bool bf16_autocast = true;            // on a GPU
  bool progress = true;
  // A data-parallel worker's place in its job (dist::options_from_environment()), or none.
  std::optional<dist::DistOptions> dist;
  enum class Backend { Auto, Gloo, Nccl };
  Backend backend = Backend::Auto;      // Auto: NCCL on CUDA devices when libtorch has it, else Gloo
  double dist_timeout_seconds = 30;
  // Called on the reporting process once training is done, before the evaluation starts (with
  // everything but the evaluation filled in).
  std::function<void(const TrainOutcome&)> on_trained;
};

struct TrainOutcome {
  std::string name, run_dir;
  bool reporter = true;                 // rank 0, or the only process: the one that reports
  TrainResult result;
  std::optional<EvaluationReport> evaluation;
  std::string weights_sha256;
  int processes = 1;
  std::string device;                   // as describe_device() names it
  std::string dist_backend = "none";    // none, gloo or nccl
  double cache_seconds = 0, train_seconds = 0, eval_seconds = 0;
};

// InputError for a head without task data, a device the machine lacks, an impossible backend.
TrainOutcome train_composition(const TrainRequest& request, const registry::Registry& registry);

}  // namespace nexus
