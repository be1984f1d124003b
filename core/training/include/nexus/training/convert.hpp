// Rewriting a run's checkpoints from the old pickled format (torch::save: TorchScript archives,
// which can run code when they are loaded) into the current one (run/checkpoints.hpp,
// training/optimizer_state.hpp). This is the one place NEXUS still deserialises such a file, and
// only on the user's word (`nexus convert-run RUN`): converting a run means trusting it.
#pragma once

#include <string>
#include <vector>

namespace nexus {

struct ConversionReport {
  std::vector<std::string> folders;  // the checkpoint folders converted
  int files = 0;                     // pickled files replaced
};

// Converts every checkpoints/step-*/ folder under `run_dir` (nested runs too: add-teacher's solo
// phase) that holds *.pt files: each module's archive becomes <module>.safetensors, optimizer.pt
// optimizer.safetensors + optimizer.json (parameter names unknown: recorded as null),
// rng_sampler.pt and rng_global.pt rng.safetensors; the .pt files are removed once their
// replacements are on disk, so an interrupted conversion can simply be run again. InputError when
// `run_dir` holds no checkpoints; RuntimeFailure naming a file that cannot be converted.
ConversionReport convert_pickled_run(const std::string& run_dir);

}  // namespace nexus
