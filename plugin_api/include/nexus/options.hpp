// Component options: what a composition's `options:` mapping becomes when it reaches a plugin.
// Values are text; typed getters convert and say clearly what was wrong. The component's
// options schema ("d_in:int!,hidden:int=256,act:choice(relu|gelu)=gelu") is the single source of
// truth for names, types and defaults: the generated factory applies it before the constructor
// runs, so constructors just call get_int("hidden").
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nexus/text.hpp"

namespace nexus {

class OptionError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct OptionSpec {
  std::string name;
  std::string type;  // int, float, bool, string, path, list, choice
  bool required = false;
  bool has_default = false;
  std::string default_value;
  std::vector<std::string> choices;  // type == "choice"
  // "int|auto": the value may also be `auto`, which the host replaces with a size measured on the
  // data before the component is created (e.g. a low-rank tower's rank from its teacher's
  // profile; docs/profiling.md). A plugin never receives `auto` itself.
  bool data_sized = false;
};

// The value that asks the host to size an option from the data.
constexpr const char* kDataSized = "auto";

namespace detail {
inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;  // separators inside (...) do not split: choice(a|b)
  for (char c : s) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == sep && depth == 0) {
      out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!trim(cur).empty() || !out.empty()) out.push_back(trim(cur));
  return out;
}
}  // namespace detail

// Parses "name:type[!][=default],..." ; throws OptionError on a malformed schema.
inline std::vector<OptionSpec> parse_option_schema(const std::string& schema) {
  std::vector<OptionSpec> specs;
  for (const auto& entry : detail::split(schema, ',')) {
    if (entry.empty()) continue;
    OptionSpec spec;
    auto colon = entry.find(':');
    if (colon == std::string::npos) throw OptionError("option schema entry '" + entry + "' has no ':type'");
    spec.name = trim(entry.substr(0, colon));
    std::string rest = entry.substr(colon + 1);
    auto eq = rest.find('=');
    if (eq != std::string::npos && rest.find('(') != std::string::npos && rest.find(')') > eq) eq = std::string::npos;
    if (eq != std::string::npos) {
      spec.has_default = true;
      spec.default_value = trim(rest.substr(eq + 1));
      rest = rest.substr(0, eq);
    }
    rest = trim(rest);
    if (!rest.empty() && rest.back() == '!') {
      spec.required = true;
      rest.pop_back();
    }
    if (rest == "int|auto") {
      spec.type = "int";
      spec.data_sized = true;
    } else if (rest.rfind("choice(", 0) == 0 && rest.back() == ')') {
      spec.type = "choice";
      spec.choices = detail::split(rest.substr(7, rest.size() - 8), '|');
    } else {
      spec.type = rest;
    }
    static const char* known[] = {"int", "float", "bool", "string", "path", "list", "choice"};
    bool ok = false;
    for (auto* k : known) ok = ok || spec.type == k;
    if (!ok || spec.name.empty())
      throw OptionError("option schema entry '" + entry + "': unknown type '" + spec.type + "'");
    specs.push_back(std::move(spec));
  }
  return specs;
}

// YAML spellings of booleans (true, True, TRUE and the same for false).
inline bool parse_bool(const std::string& v, bool* out) {
  const bool t = v == "true" || v == "True" || v == "TRUE", f = v == "false" || v == "False" || v == "FALSE";
  if (out) *out = t;
  return t || f;
}

// Empty string if `value` is valid for `spec`, else what was expected.
inline std::string check_option_value(const OptionSpec& spec, const std::string& value) {
  if (spec.data_sized && value == kDataSized) return "";
  if (spec.type == "int") {
    errno = 0;
    char* end = nullptr;
    (void)std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno) return "an int";
  } else if (spec.type == "float") {
    errno = 0;
    char* end = nullptr;
    (void)std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || errno) return "a number";
  } else if (spec.type == "bool") {
    if (!parse_bool(value, nullptr)) return "true or false";
  } else if (spec.type == "choice") {
    for (const auto& c : spec.choices)
      if (c == value) return "";
    return "one of " + join(spec.choices, "|");
  }
  return "";
}

class Options {
 public:
  Options() = default;

  // "k=v;k2=v2" (the format of selftest_options).
  static Options parse(const std::string& text) {
    Options o;
    for (const auto& kv : detail::split(text, ';')) {
      if (kv.empty()) continue;
      auto eq = kv.find('=');
      if (eq == std::string::npos) throw OptionError("option '" + kv + "' is not key=value");
      o.set(trim(kv.substr(0, eq)), trim(kv.substr(eq + 1)));
    }
    return o;
  }

  Options& set(const std::string& key, std::string value) {
    values_[key] = std::move(value);
    return *this;
  }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  const std::map<std::string, std::string>& items() const { return values_; }

  const std::string& get_string(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) throw OptionError("missing required option '" + key + "'");
    return it->second;
  }
  std::string get_string(const std::string& key, const std::string& fallback) const {
    return has(key) ? get_string(key) : fallback;
  }
  int64_t get_int(const std::string& key) const {
    const auto& v = get_string(key);
    errno = 0;
    char* end = nullptr;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno) throw OptionError("option '" + key + "' must be an int, got '" + v + "'");
    return x;
  }
  int64_t get_int(const std::string& key, int64_t fallback) const { return has(key) ? get_int(key) : fallback; }
  double get_double(const std::string& key) const {
    const auto& v = get_string(key);
    errno = 0;
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || errno) throw OptionError("option '" + key + "' must be a number, got '" + v + "'");
    return x;
  }
  double get_double(const std::string& key, double fallback) const { return has(key) ? get_double(key) : fallback; }
  bool get_bool(const std::string& key) const {
    const auto& v = get_string(key);
    bool b = false;
    if (parse_bool(v, &b)) return b;
    throw OptionError("option '" + key + "' must be true or false, got '" + v + "'");
  }
  bool get_bool(const std::string& key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }
  // Lists travel as comma-separated text ("1,2,3"); YAML sequences are joined that way.
  std::vector<std::string> get_list(const std::string& key) const {
    if (!has(key) || get_string(key).empty()) return {};
    return detail::split(get_string(key), ',');
  }
  std::vector<int64_t> get_int_list(const std::string& key) const {
    std::vector<int64_t> out;
    for (const auto& item : get_list(key)) {
      Options one;
      one.set(key, item);
      out.push_back(one.get_int(key));
    }
    return out;
  }

  std::string str() const {
    std::vector<std::string> pairs;
    for (const auto& [k, v] : values_) pairs.push_back(k + "=" + v);
    return join(pairs, ";");
  }

  // Returns these options checked against `schema` with defaults filled in. Throws OptionError
  // naming the first unknown key, missing required option or ill-typed value.
  Options with_schema(const std::string& schema) const {
    const auto specs = parse_option_schema(schema);
    Options out = *this;
    for (const auto& [key, value] : values_) {
      const OptionSpec* spec = nullptr;
      for (const auto& s : specs)
        if (s.name == key) spec = &s;
      if (!spec) {
        std::vector<std::string> names;
        for (const auto& s : specs) names.push_back(s.name);
        throw OptionError("unknown option '" + key + "' (accepted: " + join_or(names, "none") + ")");
      }
      auto expected = check_option_value(*spec, value);
      if (!expected.empty())
        throw OptionError("option '" + key + "' must be " + expected + ", got '" + value + "'");
    }
    for (const auto& s : specs) {
      if (out.has(s.name)) continue;
      if (s.required) throw OptionError("missing required option '" + s.name + "' (" + s.type + ")");
      if (s.has_default) out.set(s.name, s.default_value);
    }
    return out;
  }

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace nexus
