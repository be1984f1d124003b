// Errors about a composition: where, what was expected, and a hint.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "nexus/base/errors.hpp"
#include "nexus/config/node.hpp"

namespace nexus::config {

struct Diagnostic {
  Location loc;
  std::string message;  // what is wrong and what was expected
  std::string hint;     // optional: did-you-mean, available names, how to fix
  // "file:line:col: error: message" plus "\n  hint: ..." when a hint is present.
  std::string str() const;
};

// Thrown when a composition cannot be loaded or is invalid; carries every diagnostic found. Its
// what() is the diagnostics, one per line ("file:line:col: error: ...").
class ConfigError : public InputError {
 public:
  explicit ConfigError(std::vector<Diagnostic> diagnostics);
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

// Closest candidate within a small edit distance, or "" if none is close enough.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace nexus::config
