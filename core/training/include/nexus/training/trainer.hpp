// Training the towers, router and heads on cached teacher features.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "nexus/base/errors.hpp"
#include "nexus/config/composition.hpp"
#include "nexus/data/task_features.hpp"

namespace nexus {
class ComposedSystem;
class Loss;

// Training could not go on: it diverged, the shared space collapsed, a checkpoint is unusable.
class TrainingError : public RuntimeFailure {
 public:
  using RuntimeFailure::RuntimeFailure;
};

namespace dist {
class ProcessGroup;
}

// How a run that is not resumed starts: fitting the trainable teachers' feature statistics and
// starting data-aware towers from their training features (a fresh system), or from the weights
// the modules already hold (an incremental run widening components it carried over: refitting or
// re-initialising them would throw away what the base run learnt).
enum class StartFrom { Data, CurrentWeights };

struct TrainOptions {
  std::string run_dir;
  StartFrom start = StartFrom::Data;
  bool resume = false;
  bool progress = true;
  int max_rollbacks = 20;          // then give up: the run is diverging
  double rollback_tolerance = 1.05; // validation loss above this times the best rolls back
  double collapse_ratio = 1e-3;     // shared-space variance below this times the initial one = collapse
  // Modules (trainable_modules() names) kept exactly as they are: not optimised, always in eval
  // mode, feature statistics not refit. Frozen towers on fixed features are evaluated once.
  std::set<std::string> frozen;
  // Added to a task's loss where TaskData has references: weight * loss(prediction, reference).
  std::shared_ptr<Loss> anti_forgetting;
  double anti_forgetting_weight = 0;
  // Data-parallel training: every rank draws the same global batch (trainer.batch_size rows) and
  // trains on its 1/world_size slice; gradients are averaged (bucketed all-reduce) before each
  // step, so all ranks hold the same weights and reach, within float rounding, what one process
  // reaches with the whole batch. Rank 0 writes checkpoints and metrics; the other ranks read
  // rank 0's checkpoints for rollbacks and resume (the run folder must be shared). Validation
  // decisions come from rank 0, so rollbacks and early stopping happen on every rank together.
  dist::ProcessGroup* group = nullptr;
};

struct TrainResult {
  int64_t steps = 0, best_step = 0;
  double best_val_loss = 0;
  int rollbacks = 0;
  bool resumed = false;
  bool stopped_early = false;  // trainer.patience validations without improvement
  double step_seconds = 0;      // wall time of the optimisation steps (no validation, checkpoints)
  double samples_per_second = 0;
  std::map<std::string, double> val_accuracy;  // per task, at the best checkpoint
  double shared_variance = 0;
};

// Runs the composition's trainer settings. Checkpoints go to <run_dir>/checkpoints/step-N/
// (one file per tower, router and head, plus optimizer, RNG and trainer state), written to a
// temporary folder and renamed; <run_dir>/metrics.jsonl gets one line per log or validation.
// With resume, continues from <run_dir>/checkpoints/latest and reaches the same weights as an
// uninterrupted run with the same seed. Seed torch (torch::manual_seed(trainer.seed)) before
// ComposedSystem::build so that initialisation is reproducible too.
TrainResult train(const config::Composition& composition, ComposedSystem& system, const std::vector<TaskData>& data,
                  const TrainOptions& options);

}  // namespace nexus
