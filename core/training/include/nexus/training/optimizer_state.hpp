// The trainer's optimizer (AdamW) and generators as checkpoint files, tensors only (safetensors)
// with JSON beside them, so that loading them runs no code and `--resume` continues bit for bit:
//
//   optimizer.safetensors  "<i>.exp_avg", "<i>.exp_avg_sq" (and "<i>.max_exp_avg_sq" with amsgrad)
//                          for the i-th parameter that has state (none before its first step)
//   optimizer.json         {"optimizer": "AdamW",
//                           "groups": [{"lr", "betas", "eps", "weight_decay", "amsgrad", "params": N}],
//                           "params": [{"name": "head.cls/weight", "step": 12 or null}]}
//   rng.safetensors        "sampler" (the batch generator) and "global" (libtorch's CPU generator):
//                          each generator's state as uint8
//
// Parameters are numbered in the optimizer's fixed order (the trainer's: trainable modules in the
// composition's order, each module's parameters in order); "name" is "<module>/<parameter>", or
// null for one outside the system (a placeholder) or not known (a converted old checkpoint). Loading checks names, shapes and dtypes against
// the optimizer before changing anything: a file of another composition is refused, naming the
// parameter.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/optim/adamw.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "nexus/run/checkpoints.hpp"

namespace nexus {
class ComposedSystem;

// The name of each of the optimizer's parameters in `modules` ("<module>/<parameter>"), in order;
// nullopt for one that belongs to no module of them.
std::vector<std::optional<std::string>> optimizer_parameter_names(const run::NamedModules& modules,
                                                                  const torch::optim::Optimizer& optimizer);

void save_optimizer_state(const torch::optim::AdamW& optimizer, const std::vector<std::optional<std::string>>& names,
                          const std::filesystem::path& dir);
// run::CheckpointError when the files are missing, corrupt or do not fit; run::CheckpointRefused
// for the old pickled optimizer.pt.
void load_optimizer_state(torch::optim::AdamW& optimizer, const std::vector<std::optional<std::string>>& names,
                          const std::filesystem::path& dir);

// Gives every parameter of the optimizer a gradient (zeros where it has none) before the first
// step. AdamW skips a parameter whose gradient is undefined but updates one whose gradient is zero
// (weight decay, momentum): without this, a head that sits out a step (another task's batch) would
// be skipped before its first backward and updated after it, so a run resumed from a checkpoint
// (fresh, undefined gradients) would not take the steps an uninterrupted run takes.
void define_gradients(torch::optim::Optimizer& optimizer);

void save_generator_states(const at::Generator& sampler, const at::Generator& global, const std::filesystem::path& dir);
void load_generator_states(at::Generator& sampler, at::Generator& global, const std::filesystem::path& dir);

}  // namespace nexus
