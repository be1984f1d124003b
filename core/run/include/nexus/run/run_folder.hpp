// A run folder: what `nexus train` (and add-teacher, remove-teacher, train --from) writes, and
// what every later command (eval, serve, the next increment) reads.
//
//   run.json         which composition (absolute path and sha256) and overrides made the run; an
//                    incremental run also names its base run and kind
//   checkpoints/     step-NNNNNNNN/ folders (one safetensors file per module, see checkpoints.hpp
//                    and docs/checkpoints.md), `latest` and `best` naming one of them
//   metrics.jsonl    one line per training log or validation
//   probes/          each teacher's own probe score per task, reused by later evaluations
//   eval.json        the last evaluation (evaluation/report.hpp)
//   proof.json       an incremental run's evidence (increments/proof.hpp)
//
// Every file is written atomically (base/files.hpp): a crash leaves the old file or the new one.
#pragma once

#include <string>
#include <vector>

#include "nexus/config/composition.hpp"

namespace nexus::run {

// What run.json records.
struct RunRecord {
  std::string composition_file;       // the composition as it is now (hashed)
  std::string composition_recorded;   // the path run.json names, when not composition_file: a run
                                      // built in a staging folder names where its composition
                                      // will be once the folder is renamed
  std::vector<std::string> overrides;
  std::string base_run, kind;         // an incremental run's base run and kind ("add-teacher", ...)
};
void write_run_info(const std::string& run_dir, const RunRecord& record);

struct RunInfo {
  std::string composition;             // absolute path
  std::vector<std::string> overrides;
  bool changed = false;                // the file's content differs from when the run was made
};
// Reads RUN/run.json. InputError when RUN is not a run folder or its composition is gone;
// RuntimeFailure when run.json is corrupt.
RunInfo read_run_info(const std::string& run_dir);

// The run's composition with its overrides, validated against the installed plugins.
config::Composition load_run_composition(const RunInfo& info, const config::PluginCatalog& catalog);

// Writes a JSON document (one space indent, newline-terminated) atomically.
void write_json_file(const std::string& path, const std::string& json_text);

}  // namespace nexus::run
