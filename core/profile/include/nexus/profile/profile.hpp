// Seeing what a composition's teachers give it, from the feature cache: `nexus profile`, the
// sizes behind `rank: auto`, and the principal directions towers start from.
//
// Design note. A profile has three parts. (1) Per teacher and task, the spectrum of its
// training features (spectrum.hpp): ranks at 90/95/99 % of the variance, effective rank, dead
// dimensions, norms. (2) Per task read by several teachers, the linear CKA of every pair on the
// same rows: how much one teacher's features already say what another's do. (3) Per teacher,
// the tower size its features call for, measured on everything its tower is trained on (the
// training splits of all its tasks together, as FeatureNorm is fitted): the rank that explains
// 99 % of the variance, rounded up to a multiple of 8. The same measurement resolves `auto`
// options ("int|auto" in a tower's schema) before the tower is created, and the same principal
// directions initialise towers that implement InitialisedFromData, so what `nexus profile`
// suggests is exactly what `rank: auto` gets.
#pragma once

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <set>
#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/data/task_features.hpp"
#include "nexus/profile/spectrum.hpp"

namespace nexus {
class ComposedSystem;
namespace registry {
class Registry;
}
namespace cache {
class FeatureCache;
}

namespace profile {

// Rows beyond this are thinned by a fixed stride (spectrum.hpp): 20000 rows pin a 1024-wide
// spectrum to well under 1 % and keep a profile to seconds on two cores.
constexpr int64_t kDefaultMaxRows = 20000;
constexpr double kAutoVariance = 0.99;

struct TeacherProfile {
  std::string teacher, task, dataset, split;
  Spectrum spectrum;
  int64_t suggested_rank = 0;
};

struct Redundancy {
  std::string task, dataset;
  std::vector<std::string> teachers;
  std::vector<std::vector<double>> cka;  // [i][j], symmetric, 1 on the diagonal
};

struct TowerSize {
  std::string teacher, tower;  // tower: the composition's tower plugin
  int64_t rows = 0, width = 0, rank_99 = 0, suggested_rank = 0;
  int64_t tower_parameters = 0;    // the composition's tower as built
  int64_t lowrank_parameters = 0;  // a lowrank tower at suggested_rank
  int64_t linear_parameters = 0;   // a linear tower: smaller than lowrank above (d_in d_out) / (d_in + d_out)
};

struct CompositionProfile {
  std::vector<TeacherProfile> teachers;
  std::vector<Redundancy> redundancy;
  std::vector<TowerSize> towers;
};

struct ProfileOptions {
  int64_t max_rows = kDefaultMaxRows;
};

// The rank covering kAutoVariance of the spectrum, rounded up to a multiple of 8 (what GEMM
// kernels like), at most min(d_in, d_out) and at least 1.
int64_t suggested_rank(const Spectrum& spectrum, int64_t d_in, int64_t d_out);

// Reads the cache's training splits (they must be complete: cache_features builds them).
CompositionProfile profile_composition(const config::Composition& composition, ComposedSystem& system,
                                       cache::FeatureCache& store, const ProfileOptions& options);
nlohmann::json to_json(const CompositionProfile& profile);
void print_profile(const CompositionProfile& profile, std::ostream& out);

// `nexus profile FILE|RUN`: the composition (a run's own copy), its training splits cached
// (computing what is missing), profiled. A run keeps its profile in RUN/profile.json.
struct ProfileRequest {
  std::string target;      // a composition file or a run folder
  std::string cache_root;  // "" = feature_cache_root()'s default
  ProfileOptions options;
  bool progress = true;
};
struct ProfileOutcome {
  CompositionProfile profile;
  nlohmann::json json;
  std::string written;  // RUN/profile.json, or "" for a composition file
};
ProfileOutcome profile_target(const ProfileRequest& request, const registry::Registry& registry);
// The file name inside a run folder.
constexpr const char* kProfileFile = "profile.json";

// `auto` tower options, resolved from the training data of each teacher (TaskData::train).
struct DataSizedOption {
  size_t teacher = 0;   // composition order
  std::string option;   // e.g. "rank"
  int64_t value = 0;
  std::string assignment() const;  // "teachers.<i>.tower.options.<option>=<value>" (a --set)
};
// Measures every `auto` option, writes the value into `composition` in its place, and builds those
// towers again at their measured size (the same on every worker: the same cache). Returns what
// it measured, for run.json.
std::vector<DataSizedOption> size_towers(config::Composition& composition, ComposedSystem& system,
                                         const std::vector<TaskData>& data, const registry::Registry& registry);

// Starts every tower that implements InitialisedFromData (and is not in `frozen`, by component
// name "tower.<teacher>") from the principal directions of its standardised training features.
// Returns the names of the towers it initialised.
std::vector<std::string> initialise_towers(ComposedSystem& system, const std::vector<TaskData>& data,
                                           const std::set<std::string>& frozen);

}  // namespace profile
}  // namespace nexus
