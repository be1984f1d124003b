// A run's checkpoints: checkpoints/step-NNNNNNNN/ holds one file per trainable module
// ("tower.minilm.pt", "router.pt", "head.clothes.pt"...; see ComposedSystem::trainable_modules)
// so that a later run can take or replace a single component, next to what the trainer adds
// (optimizer, RNG, state.json). `latest` and `best` name a folder. A folder is written under a
// temporary name and renamed, so a checkpoint is either whole or absent.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "nexus/base/errors.hpp"

namespace nexus {
class ComposedSystem;
}

namespace nexus::run {

// A checkpoint that is missing, corrupt or does not fit the composition.
class CheckpointError : public RuntimeFailure {
 public:
  using RuntimeFailure::RuntimeFailure;
};

// "step-00000100"
std::string checkpoint_name(int64_t step);

// The folder `latest` names, if the run has one.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// A run's checkpoint folder: its best, falling back to its latest; CheckpointError if it has none.
std::string run_checkpoint(const std::string& run_dir);

// Loads a run's checkpoint (run_checkpoint) into the system's trainable modules and puts them in
// eval mode; a module named in `sources` is read from that checkpoint folder instead (a component
// taken from another run). Returns the checkpoint folder. CheckpointError names the file that is
// missing, corrupt, or holds a parameter of another shape than the composition needs.
std::string load_run_weights(ComposedSystem& system, const std::string& run_dir,
                             const std::map<std::string, std::string>& sources = {});

// Loads every module of one checkpoint folder, with the same checks (modes are left alone).
void load_modules(ComposedSystem& system, const std::filesystem::path& checkpoint_dir);

// Writes checkpoints/<name>/: the modules, then whatever `write_more` puts in the folder it is
// given; flushes and renames it into place, points `latest` at it, and removes every other
// step-* folder except `keep` (the best so far). A folder of the same name is replaced.
void write_checkpoint(const std::string& run_dir, const std::string& name, const ComposedSystem& system,
                      const std::function<void(const std::filesystem::path&)>& write_more, const std::string& keep);

// Points `best` at a checkpoint folder.
void set_best_checkpoint(const std::string& run_dir, const std::string& name);

}  // namespace nexus::run
