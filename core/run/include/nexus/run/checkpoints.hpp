// A run's checkpoints: checkpoints/step-NNNNNNNN/ holds one file per trainable module
// ("tower.minilm.safetensors", "router.safetensors", "head.clothes.safetensors"...; see
// ComposedSystem::trainable_modules) so that a later run can take or replace a single component,
// next to what the trainer adds (optimizer, RNG, state.json; training/keeper.hpp). `latest` and
// `best` name a folder. A folder is written under a temporary name and renamed, so a checkpoint
// is either whole or absent.
//
// Checkpoints are data (docs/security.md): every tensor file is safetensors, read by
// support::read_safetensors, so loading one never runs code. A module's file holds its parameters
// and buffers under their names in the module (Module::named_parameters: "net.0.weight"); they
// must match the composition's module name for name, shape and dtype, or nothing is loaded.
// The old format (torch::save pickles, "<module>.pt") is refused unread; `nexus convert-run`
// rewrites a trusted old run (training/convert.hpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nexus/base/errors.hpp"

namespace torch::nn {
class Module;
}

namespace nexus {
class ComposedSystem;
}

namespace nexus::run {

// A checkpoint that is missing, corrupt or does not fit the composition.
class CheckpointError : public RuntimeFailure {
 public:
  using RuntimeFailure::RuntimeFailure;
};

// A checkpoint NEXUS will not read as it is: one in the old pickled format (the message says how
// to convert it), or a name read from the run folder (`best`, `latest`, state.json) that is not
// a checkpoint folder of this run. The user's to fix: exit 2.
class CheckpointRefused : public InputError {
 public:
  using InputError::InputError;
};

// What a checkpoint holds: modules by name, in a fixed order (ComposedSystem::trainable_modules(),
// or those and more: a distilled student adds its encoder).
using NamedModules = std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>;

// A module's parameters and buffers under their names in the module, as its file holds them.
std::map<std::string, at::Tensor> module_tensors(const torch::nn::Module& module);

// "step-00000100"
std::string checkpoint_name(int64_t step);

// `name` if it is a checkpoint folder's name ("step-" and digits: one name inside checkpoints/,
// never "..", a path or an absolute path); CheckpointRefused naming `where` it was read from
// otherwise.
std::string checked_checkpoint_name(const std::string& name, const std::string& where);

// A checkpoint's tensor file, written (atomically) / read back. Reading runs nothing: it is
// CheckpointError when the file is missing or corrupt, and CheckpointRefused when only the old
// pickled file of that name (".pt" for ".safetensors") is there.
void write_checkpoint_tensors(const std::filesystem::path& file, const std::map<std::string, at::Tensor>& tensors);
std::map<std::string, at::Tensor> read_checkpoint_tensors(const std::filesystem::path& file);

// The message for a checkpoint folder that holds old pickled files.
std::string pickled_checkpoint_message(const std::filesystem::path& file);

// The folder `latest` names, if the run has one (checked as checked_checkpoint_name does).
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
void load_modules(const NamedModules& modules, const std::filesystem::path& checkpoint_dir);

// Writes checkpoints/<name>/: the modules, then whatever `write_more` puts in the folder it is
// given; flushes and renames it into place, points `latest` at it, and removes every other
// step-* folder except `keep` (the best so far). A folder of the same name is replaced.
void write_checkpoint(const std::string& run_dir, const std::string& name, const NamedModules& modules,
                      const std::function<void(const std::filesystem::path&)>& write_more, const std::string& keep);

// Points `best` at a checkpoint folder.
void set_best_checkpoint(const std::string& run_dir, const std::string& name);

}  // namespace nexus::run
