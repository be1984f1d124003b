// Shared pieces of the `nexus` command line.
#pragma once

#include <boost/program_options/options_description.hpp>

#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "nexus/registry/registry.hpp"

namespace nexus {
class ComposedSystem;
namespace config {
struct Composition;
}
namespace cache {
class FeatureCache;
}
}  // namespace nexus

namespace nexus::cli {

enum ExitCode { kOk = 0, kRuntimeFailure = 1, kBadInput = 2 };

// Bad command-line usage: printed with the subcommand's help, exit 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Globals {
  std::vector<std::string> plugin_paths;
  double probe_timeout = 30.0;
  bool no_probe_cache = false;
};

registry::Registry scanned_registry(const Globals& g);

// Parses one command's arguments: the options in `visible` (plus --help) and, in order, the
// positional arguments bound to `positionals` (hidden from the help). Prints the help and returns
// false when --help was given.
bool parse_command(const std::vector<std::string>& args, boost::program_options::options_description& visible,
                   const std::vector<std::pair<std::string, std::string*>>& positionals);

int cmd_plugins(const Globals& g, const std::vector<std::string>& args);
int cmd_validate(const Globals& g, const std::vector<std::string>& args);
int cmd_forward(const Globals& g, const std::vector<std::string>& args);
int cmd_cache(const Globals& g, const std::vector<std::string>& args);
int cmd_train(const Globals& g, const std::vector<std::string>& args);
// Runs `nexus train ARGS` in nproc local worker processes (torchrun's variables, a free loopback
// port); stops them all when one fails. Returns rank 0's exit code, or kRuntimeFailure.
int launch_workers(const Globals& g, int nproc, const std::vector<std::string>& train_args);
int cmd_eval(const Globals& g, const std::vector<std::string>& args);

int cmd_add_teacher(const Globals& g, const std::vector<std::string>& args);
int cmd_serve(const Globals& g, const std::vector<std::string>& args);
int cmd_remove_teacher(const Globals& g, const std::vector<std::string>& args);

// RUN/run.json: which composition (absolute path, content hash) and overrides made the run, so
// later commands (eval, add-teacher, serve) rebuild the same system. `extra` keys are added
// (an incremental run records its base run). `composition_recorded`, when given, is the path
// written into run.json instead of `composition_file` (a run built in a staging folder records
// where its composition will be once the folder is renamed).
void write_run_info(const std::string& run_dir, const std::string& composition_file,
                    const std::vector<std::string>& overrides, const nlohmann::json* extra = nullptr,
                    const std::string& composition_recorded = "");

struct RunInfo {
  std::string composition;             // absolute path
  std::vector<std::string> overrides;
  bool changed = false;                // the file's content differs from when the run was made
};
// Reads RUN/run.json; UsageError when RUN is not a run folder or its composition is gone.
RunInfo read_run_info(const std::string& run_dir);

// Evaluates the system (weights loaded) on the test splits, writes RUN/eval.json and RUN/probes/,
// prints the retention table unless `json`; returns kRuntimeFailure when a contract is violated.
int evaluate_and_report(const config::Composition& composition, ComposedSystem& system, cache::FeatureCache& store,
                        const std::string& run_dir, bool json, nlohmann::json* json_out);

// The feature cache folder: `given`, else $NEXUS_CACHE_DIR/features (default ~/.cache/nexus/features).
std::string feature_cache_root(const std::string& given);

}  // namespace nexus::cli
