// Small typed readers over Node that turn every mismatch into a diagnostic instead of a throw,
// so that one pass over a composition reports all of its problems.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "nexus/config/diagnostic.hpp"
#include "nexus/config/node.hpp"
#include "nexus/text.hpp"

namespace nexus::config::detail {

// An allowed interval for a number; messages print it in interval notation.
struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  bool lo_open = false;
  double hi = std::numeric_limits<double>::infinity();
  bool hi_open = false;
  bool contains(double v) const;
  std::string describe() const;  // "> 0", ">= 0", "in (0, 1]", "" when unbounded
};

inline Range positive() { return {0, true}; }
inline Range non_negative() { return {0, false}; }
inline Range unit_open_closed() { return {0, true, 1, false}; }
inline Range unit_closed() { return {0, false, 1, false}; }

// "'abc'", "the quoted string '256'", "a mapping", "a sequence", "an empty value".
std::string describe_value(const Node& n);

class Checker {
 public:
  explicit Checker(std::vector<Diagnostic>& out) : out_(out) {}

  void error(const Location& loc, std::string message, std::string hint = "");

  // Reports every key of `map` not in `allowed`, with a did-you-mean (which also knows common
  // synonyms such as learning_rate -> lr) or else the list of allowed keys.
  void check_keys(const Node& map, const std::vector<std::string>& allowed,
                  const std::string& where);
  // The value of `key`; if absent, reports it at the start of `map` and returns nullptr.
  const Node* require(const Node& map, const std::string& key, const std::string& where,
                      const std::string& hint = "");

  // Typed readers: `what` names the value in messages (e.g. "'trainer.lr'"). Each reports a
  // mismatch and returns false / nullopt.
  bool map(const Node& n, const std::string& what, const std::string& expected = "a mapping");
  std::optional<std::string> string(const Node& n, const std::string& what);
  std::optional<int64_t> integer(const Node& n, const std::string& what, Range range = {});
  std::optional<double> number(const Node& n, const std::string& what, Range range = {});
  // A string that must be one of `choices`.
  std::optional<std::string> choice(const Node& n, const std::string& what,
                                    const std::vector<std::string>& choices);

 private:
  std::vector<Diagnostic>& out_;
};

}  // namespace nexus::config::detail
