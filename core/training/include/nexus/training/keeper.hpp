// The trainer's memory and its rollback policy. The state (best validation loss and the
// checkpoint that holds it, the learning-rate factor, rollbacks, early-stopping patience) is
// written into every checkpoint, so that a resumed run makes exactly the decisions an
// uninterrupted one would.
//
// Policy (the design's training hygiene): validation every trainer.validate_every steps; a loss
// above rollback_tolerance x the best (or not finite) rolls back to the best checkpoint and halves
// the learning rate, keeping the step count; a lower loss becomes the best; patience validations
// without improvement stop the run; a shared space whose variance falls below collapse_ratio x its
// initial variance is a collapse and ends the run with an error.
#pragma once

#include <ATen/core/Generator.h>
#include <nlohmann/json_fwd.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>

#include "nexus/run/checkpoints.hpp"
#include "nexus/training/trainer.hpp"

namespace torch::optim {
class AdamW;
}

namespace nexus {
class ComposedSystem;

struct TrainerState {
  int64_t step = 0, best_step = 0;
  double best_val = INFINITY, lr_factor = 1.0, initial_variance = 0;
  int rollbacks = 0;
  int64_t stale_validations = 0;  // validations since the best one, for early stopping
  bool stopped_early = false;
  std::string best_dir;
};

struct KeeperOptions {
  int max_rollbacks = 20;
  double rollback_tolerance = 1.05;
  double collapse_ratio = 1e-3;
  int64_t patience = 0;  // 0 = never stop early
};

// Everything a checkpoint restores besides the trainer state.
struct Trainables {
  run::NamedModules modules;  // ComposedSystem::trainable_modules(), or a student's
  torch::optim::AdamW& optimizer;  // its state's file format is AdamW's (optimizer_state.hpp)
  at::Generator& sampler;
};

class CheckpointKeeper {
 public:
  using Log = std::function<void(const nlohmann::json&)>;
  // Only the writer (rank 0 of a data-parallel job) writes checkpoints and logs warnings; the
  // other ranks read rank 0's checkpoints when they roll back.
  CheckpointKeeper(std::string run_dir, Trainables trainables, KeeperOptions options, Log log, bool writer);

  TrainerState& state() { return state_; }
  const TrainerState& state() const { return state_; }

  // The state and everything else from checkpoints/<name>.
  void resume(const std::string& name);
  // Writes the current step's checkpoint (the writer only).
  void save();
  // Back to the best checkpoint with half the learning rate; the step count and the patience
  // count go on. Throws TrainingError ("training diverged: ...") after max_rollbacks.
  void roll_back(const std::string& why);

  enum class Verdict { Improved, NotBetter, RolledBack };
  // Applies the policy to a validation at the current step and saves a checkpoint unless it
  // rolled back. Throws TrainingError when the shared space collapsed.
  Verdict judge(double val_loss, double shared_variance);

  // Loads the best checkpoint and points `best` at it. Returns the state as training left it
  // (steps done, rollbacks, early stop); state() is then the best checkpoint's.
  TrainerState finish();

 private:
  TrainerState load(const std::string& name);
  void count_stale();

  std::string run_dir_;
  Trainables t_;
  KeeperOptions options_;
  Log log_;
  bool writer_;
  TrainerState state_;
};

}  // namespace nexus
