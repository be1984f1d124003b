// A run folder: what `nexus train` (and add-teacher, remove-teacher, train --from) writes, and
// what every later command (eval, serve, the next increment) reads.
//
//   run.json         which composition (absolute path and sha256) and overrides made the run, and
//                    each teacher's fingerprint; an incremental run also names its base run and kind
//   composition.resolved.yaml
//                    the composition the run was made from, self-contained: includes merged,
//                    overrides applied, relative paths made absolute. Every later command reads
//                    this copy, so a run folder copied or moved elsewhere means the same system,
//                    and editing the original composition changes no trained run (they say so).
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
  std::vector<std::pair<std::string, std::string>> teachers;  // name and fingerprint (Fingerprint::str)
  // Options the composition left to the data (`auto`), as measured: --set assignments applied to
  // the resolved copy after `overrides` (profile::DataSizedOption::assignment).
  std::vector<std::string> data_sized;
};
// Writes run.json and composition.resolved.yaml (the catalog says which options are paths).
void write_run_info(const std::string& run_dir, const RunRecord& record, const config::PluginCatalog& catalog);

struct RunInfo {
  std::string composition;             // the file to read: the run's own resolved copy (older runs:
                                       // the original, with `overrides` still to apply)
  std::vector<std::string> overrides;
  std::string original;                // the composition the run was trained from (absolute)
  bool changed = false;                // the original differs from when the run was made, or is gone
  std::vector<std::pair<std::string, std::string>> teachers;  // recorded name and fingerprint
};
// The name of the resolved copy inside a run folder.
constexpr const char* kResolvedComposition = "composition.resolved.yaml";
// Reads RUN/run.json. InputError when RUN is not a run folder or its composition is gone;
// RuntimeFailure when run.json is corrupt.
RunInfo read_run_info(const std::string& run_dir);

// What a command on the run should say when the original composition changed since training
// ("" when it did not): the run uses its own copy regardless.
std::string composition_note(const RunInfo& info, const std::string& run_dir);

// The run's composition with its overrides, validated against the installed plugins.
config::Composition load_run_composition(const RunInfo& info, const config::PluginCatalog& catalog);

// Writes a JSON document (one space indent, newline-terminated) atomically.
void write_json_file(const std::string& path, const std::string& json_text);

}  // namespace nexus::run
