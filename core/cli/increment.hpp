// What add-teacher, remove-teacher and `train --from` share on the command line.
#pragma once

#include <boost/program_options/options_description.hpp>

#include "nexus/increments/increment.hpp"

namespace nexus::cli {

// --kl-weight, --steps, --force and --compare-full; `prefix` starts each help text ("with --from: ").
void add_increment_options(boost::program_options::options_description& opts, IncrementRequest& request,
                           const std::string& prefix = "");

// The proof once (text, or JSON with --json), then what failed; kRuntimeFailure unless the proof holds.
int report_increment(const Proof& proof, const IncrementRequest& request, bool json);

}  // namespace nexus::cli
