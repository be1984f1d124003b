// The typed, validated form of a composition file (see docs/config.md for the schema).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nexus/config/diagnostic.hpp"
#include "nexus/config/node.hpp"

namespace nexus::config {

// What validation needs to know about the installed plugins (filled from the registry; only
// components whose status is ok). `options_schema` is the component's declared option list:
// comma-separated entries `name:type[!][=default]`, type one of int, float, bool, string, path,
// list, or choice(a|b|c); `!` marks a required option. Example:
//   "d_in:int!,d_out:int!,hidden:int=256,activation:choice(relu|gelu)=gelu"
struct PluginDescriptor {
  std::string kind;     // "teacher", "tower", "router", "loss"
  std::string name;
  std::string version;
  std::string options_schema;
  // Non-empty for a component that was found but cannot be used (it failed its probe), with why
  // and where: named in errors instead of "unknown plugin". Such entries are never resolved to.
  std::string problem;
};
using PluginCatalog = std::vector<PluginDescriptor>;

// Plugin options as given in YAML: scalars keep their text, lists are joined with ','.
struct PluginSpec {
  std::string plugin;
  std::string version;                       // "" = any
  std::map<std::string, std::string> options;
  Location loc;                              // location of the `plugin:` value
  std::map<std::string, Location> option_locs;
};

struct TeacherSpec {
  std::string name;
  PluginSpec teacher;
  std::optional<int64_t> width;   // declared output width, if given
  std::string modality;           // "" if not declared
  PluginSpec tower;               // host fills d_in (teacher width) and d_out (shared_dim) if absent
  Location loc;
};

struct HeadSpec {
  std::string name;
  std::string task;
  int64_t outputs = 0;
  PluginSpec tower;               // host fills d_in (shared_dim) and d_out (outputs) if absent
  Location loc;
};

struct LossSpec {
  PluginSpec loss;
  std::string head;               // "" for losses not tied to a head (router losses)
  double weight = 1.0;
  int64_t warmup_steps = 0;       // weight ramps linearly from start_factor*weight to weight
  double start_factor = 1.0;
  Location loc;
};

struct RouterSpec {
  PluginSpec router;              // host fills n_experts and d_in if absent
  std::string input = "projected_mean";  // "projected_mean" or "teacher:<name>"
  // "task" or "modality": the host appends a one-hot context (the input's task, or its modality)
  // as the last n_context columns of the router input; "none" appends nothing.
  std::string condition = "none";
};

struct TaskSpec {
  std::string name;
  std::string dataset;
  std::string modality;
  std::map<std::string, std::string> params;  // any further keys, as text
  Location loc;
  // `report_splits: real, other`: further test splits (e.g. real recordings beside synthetic test
  // data), cached and scored with the test split, never trained on, not under the contract.
  std::vector<std::string> report_splits() const;
};

// "a, b,c" -> {"a", "b", "c"} (items trimmed; empty text, no items).
std::vector<std::string> split_names(const std::string& text);

struct TrainerSpec {
  int64_t steps = 1000;
  int64_t batch_size = 64;
  double lr = 1e-3;
  double weight_decay = 0.01;
  int64_t warmup_steps = 0;
  double grad_clip = 1.0;
  int64_t validate_every = 100;
  int64_t patience = 0;           // stop after this many validations without improvement (0 = never)
  int64_t seed = 0;
  std::string device = "auto";
};

struct RetentionSpec {
  double default_min = 0.0;                 // 0 = no contract
  std::map<std::string, double> per_task;
};

struct Composition {
  std::string name;
  std::string source;                        // file it was loaded from
  int64_t shared_dim = 0;
  std::vector<TeacherSpec> teachers;
  RouterSpec router;
  std::vector<HeadSpec> heads;
  std::vector<LossSpec> losses;
  std::map<std::string, TaskSpec> tasks;     // from data.tasks
  std::string data_root;
  TrainerSpec trainer;
  RetentionSpec retention;
};

// Checks the tree against the schema and the catalog; returns every problem found (empty = valid).
// If the result is empty, `out` holds the typed composition.
std::vector<Diagnostic> validate(const Node& root, const PluginCatalog& catalog, Composition& out);

// load_file + overrides + validate; throws ConfigError with all diagnostics on any problem.
Composition load_composition(const std::string& path, const std::vector<std::string>& overrides,
                             const PluginCatalog& catalog);

}  // namespace nexus::config
