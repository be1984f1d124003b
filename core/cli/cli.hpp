// The `nexus` command line. Each command is a thin driver, in the manner of LLVM's tools: it
// parses its options into a request struct, calls one engine function of core/, and reports
// once (text, or --json). Errors propagate as exceptions and `main` maps them to exit codes
// (base/errors.hpp): 2 for bad usage or input, 1 for runtime failures.
#pragma once

#include <boost/program_options/options_description.hpp>

#include <string>
#include <utility>
#include <vector>

#include "nexus/base/errors.hpp"
#include "nexus/registry/registry.hpp"

namespace nexus {
struct EvaluationReport;
struct Proof;
}  // namespace nexus

namespace nexus::cli {

enum ExitCode { kOk = 0, kRuntimeFailure = 1, kBadInput = 2 };

// Bad command-line usage.
class UsageError : public InputError {
 public:
  using InputError::InputError;
};

// The options before the command word.
struct Globals {
  std::vector<std::string> plugin_paths;
  double probe_timeout = 30.0;
  bool no_probe_cache = false;
  int compute_threads = 0;  // 0: automatic (nexus/model/compute_threads.hpp)
  std::string log_level = "warn";
};

// One row of the command table: what dispatch and `nexus --help` read.
struct Command {
  const char* name;
  const char* synopsis;  // e.g. "cache build|merge|ls|verify|gc"
  const char* summary;
  int (*run)(const Globals&, const std::vector<std::string>&);
};
const std::vector<Command>& commands();

registry::Registry scanned_registry(const Globals& g);

// Parses one command's arguments: the options in `visible` (plus --help) and, in order, the
// positional arguments bound to `positionals` (hidden from the help). Prints the help and returns
// false when --help was given. Malformed options are a UsageError.
bool parse_command(const std::vector<std::string>& args, boost::program_options::options_description& visible,
                   const std::vector<std::pair<std::string, std::string*>>& positionals);

// Reports an evaluation once: the retention table (text) or, with --json, its violations as log
// errors. kRuntimeFailure when a retention contract is violated.
int report_evaluation(const EvaluationReport& report, bool json);

int cmd_plugins(const Globals& g, const std::vector<std::string>& args);
int cmd_validate(const Globals& g, const std::vector<std::string>& args);
int cmd_forward(const Globals& g, const std::vector<std::string>& args);
int cmd_cache(const Globals& g, const std::vector<std::string>& args);
int cmd_train(const Globals& g, const std::vector<std::string>& args);
int cmd_eval(const Globals& g, const std::vector<std::string>& args);
int cmd_profile(const Globals& g, const std::vector<std::string>& args);
int cmd_report(const Globals& g, const std::vector<std::string>& args);
int cmd_add_teacher(const Globals& g, const std::vector<std::string>& args);
int cmd_remove_teacher(const Globals& g, const std::vector<std::string>& args);
int cmd_serve(const Globals& g, const std::vector<std::string>& args);
int cmd_distill(const Globals& g, const std::vector<std::string>& args);
int cmd_convert_run(const Globals& g, const std::vector<std::string>& args);
int cmd_version(const Globals& g, const std::vector<std::string>& args);

}  // namespace nexus::cli
