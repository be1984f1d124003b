#include "nexus/config/diagnostic.hpp"

namespace nexus::config {

std::string Diagnostic::str() const {
  std::string s = loc.str() + ": error: " + message;
  if (!hint.empty()) s += "\n  hint: " + hint;
  return s;
}

namespace {
std::string join_diagnostics(const std::vector<Diagnostic>& diagnostics) {
  if (diagnostics.empty()) return "invalid composition";
  std::string s;
  for (const auto& d : diagnostics) {
    if (!s.empty()) s += '\n';
    s += d.str();
  }
  return s;
}
}  // namespace

ConfigError::ConfigError(std::vector<Diagnostic> diagnostics)
    : InputError(join_diagnostics(diagnostics)), diagnostics_(std::move(diagnostics)) {}

}  // namespace nexus::config
