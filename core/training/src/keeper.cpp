#include "nexus/training/keeper.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>

#include "nexus/base/files.hpp"
#include "nexus/model/system.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/training/optimizer_state.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

nlohmann::json to_json(const TrainerState& s) {
  return {{"step", s.step},           {"best_step", s.best_step}, {"best_val", s.best_val},
          {"lr_factor", s.lr_factor}, {"rollbacks", s.rollbacks}, {"initial_variance", s.initial_variance},
          {"best_dir", s.best_dir}, {"stale_validations", s.stale_validations},
          {"stopped_early", s.stopped_early}};
}

TrainerState state_from(const nlohmann::json& j) {
  TrainerState s;
  s.step = j.at("step");
  s.best_step = j.at("best_step");
  s.best_val = j.at("best_val").is_null() ? INFINITY : j.at("best_val").get<double>();
  s.lr_factor = j.at("lr_factor");
  s.rollbacks = j.at("rollbacks");
  s.initial_variance = j.at("initial_variance");
  s.best_dir = j.at("best_dir");
  s.stale_validations = j.value("stale_validations", int64_t(0));
  s.stopped_early = j.value("stopped_early", false);
  return s;
}

}  // namespace

CheckpointKeeper::CheckpointKeeper(std::string run_dir, Trainables trainables, KeeperOptions options, Log log, bool writer)
    : run_dir_(std::move(run_dir)), t_(trainables), options_(options), log_(std::move(log)), writer_(writer) {}

void CheckpointKeeper::save() {
  if (!writer_) return;
  run::write_checkpoint(run_dir_, run::checkpoint_name(state_.step), t_.modules, [&](const fs::path& dir) {
    save_optimizer_state(t_.optimizer, optimizer_parameter_names(t_.modules, t_.optimizer), dir);
    save_generator_states(t_.sampler, at::detail::getDefaultCPUGenerator(), dir);
    write_file_atomically(dir / "state.json", to_json(state_).dump(1) + "\n");
  }, state_.best_dir);
}

TrainerState CheckpointKeeper::load(const std::string& name) {
  const auto dir = fs::path(run_dir_) / "checkpoints" / run::checked_checkpoint_name(name, "the checkpoint to load");
  if (!fs::exists(dir / "state.json")) throw TrainingError("checkpoint " + dir.string() + " is incomplete (no state.json)");
  TrainerState state;
  try {
    state = state_from(nlohmann::json::parse(read_file(dir / "state.json")));
  } catch (const nlohmann::json::exception& e) {
    throw TrainingError("corrupt checkpoint " + dir.string() + ": state.json: " + e.what());
  }
  // A later rollback joins best_dir to checkpoints/: it must name a folder there.
  run::checked_checkpoint_name(state.best_dir, (dir / "state.json").string() + "'s best_dir");
  run::load_modules(t_.modules, dir);
  load_optimizer_state(t_.optimizer, optimizer_parameter_names(t_.modules, t_.optimizer), dir);
  auto global = at::detail::getDefaultCPUGenerator();  // a handle to the process-wide generator
  load_generator_states(t_.sampler, global, dir);
  return state;
}

void CheckpointKeeper::resume(const std::string& name) { state_ = load(name); }

void CheckpointKeeper::roll_back(const std::string& why) {
  if (++state_.rollbacks > options_.max_rollbacks)
    throw TrainingError("training diverged: " + why + "; gave up after " + std::to_string(options_.max_rollbacks) +
                        " rollbacks (lower trainer.lr or check the data)");
  const int rollbacks = state_.rollbacks;
  const int64_t step = state_.step, stale = state_.stale_validations;
  const double factor = state_.lr_factor * 0.5;
  state_ = load(state_.best_dir);
  state_.rollbacks = rollbacks;
  state_.stale_validations = stale;
  state_.step = step;  // the schedule goes on; the weights and optimizer go back
  state_.lr_factor = factor;
  if (writer_) spdlog::warn("step {}: {}; rolled back to {} and halved the learning rate", step, why, state_.best_dir);
  log_({{"step", step}, {"rollback", why}, {"to", state_.best_dir}, {"lr_factor", factor}});
}

void CheckpointKeeper::count_stale() {
  if (options_.patience <= 0 || ++state_.stale_validations < options_.patience) return;
  state_.stopped_early = true;
  spdlog::info("step {}: no better validation loss for {} validations; stopping early (best at step {})", state_.step,
               state_.stale_validations, state_.best_step);
  log_({{"step", state_.step}, {"early_stop", true}, {"best_step", state_.best_step}});
}

CheckpointKeeper::Verdict CheckpointKeeper::judge(double val_loss, double variance) {
  auto& s = state_;
  if (variance < options_.collapse_ratio * s.initial_variance)
    throw TrainingError("the shared space collapsed at step " + std::to_string(s.step) + ": its variance is " +
                        std::to_string(variance) + ", was " + std::to_string(s.initial_variance) +
                        " at the start (anchor the towers: task labels, a reconstruction term, or a lower lr)");
  if (!std::isfinite(val_loss) || val_loss > options_.rollback_tolerance * s.best_val) {
    roll_back("validation loss " + std::to_string(val_loss) + " > " + std::to_string(options_.rollback_tolerance) +
              " x best " + std::to_string(s.best_val));
    // A rollback is also a validation without improvement: overfitting ends in early stopping, not
    // in "diverged" after max_rollbacks.
    count_stale();
    return Verdict::RolledBack;
  }
  Verdict verdict = Verdict::NotBetter;
  if (val_loss < s.best_val) {
    s.best_val = val_loss;
    s.best_step = s.step;
    s.stale_validations = 0;
    s.best_dir = run::checkpoint_name(s.step);
    verdict = Verdict::Improved;
  } else {
    count_stale();
  }
  save();
  return verdict;
}

TrainerState CheckpointKeeper::finish() {
  const TrainerState at_end = state_;
  state_ = load(state_.best_dir);
  if (writer_) run::set_best_checkpoint(run_dir_, state_.best_dir);
  return at_end;
}

}  // namespace nexus
