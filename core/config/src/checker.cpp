#include "checker.hpp"

#include <algorithm>
#include <map>

#include "scalars.hpp"

namespace nexus::config::detail {

namespace {

// Names people reach for out of habit from other trainers; a did-you-mean on these finds the
// key NEXUS uses even though the spelling is far from it.
const std::map<std::string, std::string>& synonyms() {
  static const std::map<std::string, std::string> table = {
      {"learning_rate", "lr"},       {"lr_rate", "lr"},
      {"max_steps", "steps"},        {"num_steps", "steps"},
      {"train_steps", "steps"},      {"batch", "batch_size"},
      {"bs", "batch_size"},          {"clip_grad", "grad_clip"},
      {"gradient_clip", "grad_clip"}, {"max_grad_norm", "grad_clip"},
      {"eval_every", "validate_every"}, {"val_every", "validate_every"},
      {"warmup", "warmup_steps"},    {"wd", "weight_decay"},
      {"type", "plugin"},            {"kind", "plugin"},
      {"params", "options"},         {"args", "options"},
      {"dim", "width"},              {"num_classes", "outputs"},
      {"n_outputs", "outputs"},      {"schema", "nexus"},
      {"version_schema", "nexus"},   {"includes", "include"},
      {"dataset", "data"},           {"loss", "losses"},
      {"head", "heads"},             {"teacher", "teachers"},
  };
  return table;
}

}  // namespace

bool Range::contains(double v) const {
  if (lo_open ? !(v > lo) : !(v >= lo)) return false;
  if (hi_open ? !(v < hi) : !(v <= hi)) return false;
  return true;
}

std::string Range::describe() const {
  const bool has_lo = lo != -std::numeric_limits<double>::infinity();
  const bool has_hi = hi != std::numeric_limits<double>::infinity();
  if (has_lo && has_hi)
    return std::string("in ") + (lo_open ? "(" : "[") + format_number(lo) + ", " +
           format_number(hi) + (hi_open ? ")" : "]");
  if (has_lo) return (lo_open ? "> " : ">= ") + format_number(lo);
  if (has_hi) return (hi_open ? "< " : "<= ") + format_number(hi);
  return "";
}

std::string describe_value(const Node& n) {
  switch (n.kind) {
    case Node::Kind::Map: return "a mapping";
    case Node::Kind::Sequence: return "a sequence";
    case Node::Kind::Null: return "an empty value";
    case Node::Kind::Scalar: break;
  }
  return n.quoted ? "the quoted string '" + n.scalar + "'" : "'" + n.scalar + "'";
}

void Checker::error(const Location& loc, std::string message, std::string hint) {
  out_.push_back({loc, std::move(message), std::move(hint)});
}

void Checker::check_keys(const Node& map, const std::vector<std::string>& allowed,
                         const std::string& where) {
  if (!map.is_map()) return;
  std::vector<std::string> candidates = allowed;
  for (const auto& [alias, target] : synonyms())
    if (std::find(allowed.begin(), allowed.end(), target) != allowed.end())
      candidates.push_back(alias);
  for (size_t i = 0; i < map.map.size(); ++i) {
    const std::string& key = map.map[i].first;
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string guess = did_you_mean(key, candidates);
    auto alias = synonyms().find(guess);
    if (alias != synonyms().end() &&
        std::find(allowed.begin(), allowed.end(), guess) == allowed.end())
      guess = alias->second;
    std::string hint = guess.empty() ? "allowed keys in " + where + ": " + join(allowed)
                                     : "did you mean '" + guess + "'?";
    const Location& loc = i < map.key_locs.size() ? map.key_locs[i] : map.loc;
    error(loc, "unknown key '" + key + "' in " + where, hint);
  }
}

const Node* Checker::require(const Node& map, const std::string& key, const std::string& where,
                             const std::string& hint) {
  if (const Node* n = map.find(key)) return n;
  error(map.loc, where + " is missing the required key '" + key + "'", hint);
  return nullptr;
}

bool Checker::map(const Node& n, const std::string& what, const std::string& expected) {
  if (n.is_map()) return true;
  error(n.loc, what + " must be " + expected + ", got " + describe_value(n));
  return false;
}

std::optional<std::string> Checker::string(const Node& n, const std::string& what) {
  if (n.is_scalar()) return n.scalar;
  error(n.loc, what + " must be a string, got " + describe_value(n),
        n.is_null() ? "give it a value or remove the key" : "");
  return std::nullopt;
}

std::optional<int64_t> Checker::integer(const Node& n, const std::string& what, Range range) {
  std::string expected = "an integer";
  if (range.lo == 0 && range.lo_open && range.hi == Range{}.hi) expected = "a positive integer";
  else if (!range.describe().empty()) expected += " " + range.describe();
  int64_t v = 0;
  if (!n.is_scalar() || n.quoted || !parse_int(n.scalar, v)) {
    std::string hint;
    double as_number = 0;
    if (n.is_scalar() && n.quoted && parse_int(n.scalar, v)) hint = "remove the quotes";
    else if (n.is_scalar() && parse_number(n.scalar, as_number))
      hint = "write a whole number, without a decimal point or exponent";
    error(n.loc, what + " must be " + expected + ", got " + describe_value(n), hint);
    return std::nullopt;
  }
  if (!range.contains(static_cast<double>(v))) {
    error(n.loc, what + " must be " + expected + ", got " + n.scalar);
    return std::nullopt;
  }
  return v;
}

std::optional<double> Checker::number(const Node& n, const std::string& what, Range range) {
  const std::string bounds = range.describe();
  const std::string expected = "a number" + (bounds.empty() ? "" : " " + bounds);
  double v = 0;
  if (!n.is_scalar() || n.quoted || !parse_number(n.scalar, v)) {
    error(n.loc, what + " must be " + expected + ", got " + describe_value(n),
          n.is_scalar() && n.quoted && parse_number(n.scalar, v) ? "remove the quotes" : "");
    return std::nullopt;
  }
  if (!range.contains(v)) {
    error(n.loc, what + " must be " + expected + ", got " + n.scalar);
    return std::nullopt;
  }
  return v;
}

std::optional<std::string> Checker::choice(const Node& n, const std::string& what,
                                           const std::vector<std::string>& choices) {
  auto s = string(n, what);
  if (!s) return std::nullopt;
  if (std::find(choices.begin(), choices.end(), *s) != choices.end()) return s;
  const std::string guess = did_you_mean(*s, choices);
  error(n.loc, what + " must be one of " + join(choices) + ", got '" + *s + "'",
        guess.empty() ? "" : "did you mean '" + guess + "'?");
  return std::nullopt;
}

}  // namespace nexus::config::detail
