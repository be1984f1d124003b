// The two kinds of failure a NEXUS command reports, one exit code each. Every error the engine
// throws on purpose derives from one of them, so `nexus` needs one handler per exit code:
//   InputError      bad input the user can fix (a flag, a composition, a run folder, a dataset, a
//                   request, a device the machine lacks): exit 2
//   RuntimeFailure  the input was fine but the work failed (a corrupt cache shard, a diverged run,
//                   a plugin that broke, a worker that died): exit 1
// Anything else that escapes (std::bad_alloc, a libtorch error) is a runtime failure too.
#pragma once

#include <stdexcept>

namespace nexus {

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class RuntimeFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace nexus
