#include "nexus/support/json_fields.hpp"

#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace nexus::support {

namespace {
std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}
}  // namespace

std::string read_small_file(const std::string& path, std::size_t max_bytes, const char* limit_name, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + what + " '" + path + "'");
  // One byte more than allowed tells "too large" from "exactly at the limit" without a stat race.
  std::string text(max_bytes + 1, '\0');
  in.read(text.data(), std::streamsize(text.size()));
  text.resize(std::size_t(in.gcount()));
  if (text.size() > max_bytes)
    throw std::runtime_error(what + " '" + path + "' is larger than " + std::to_string(max_bytes) + " bytes (" +
                             limit_name + ")");
  return text;
}

nlohmann::json parse_json_object(const std::string& text, const std::string& context) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("cannot parse " + context + ": " + e.what());
  }
  if (!j.is_object()) throw std::runtime_error(context + " is not a JSON object");
  return j;
}

int64_t json_int(const nlohmann::json& j, const char* key, int64_t min, int64_t max, const char* limit,
                 const std::string& context, const int64_t* fallback) {
  const auto it = j.find(key);
  if (it == j.end() || (fallback && it->is_null())) {
    if (fallback) return *fallback;
    throw std::runtime_error(context + ": '" + key + "' is missing");
  }
  // JSON reads every non-negative integer as unsigned, so both bounds apply to either kind.
  const bool in_range =
      it->is_number_unsigned()  ? it->get<uint64_t>() <= uint64_t(max) && int64_t(it->get<uint64_t>()) >= min
      : it->is_number_integer() ? it->get<int64_t>() >= min && it->get<int64_t>() <= max
                                : false;
  if (!in_range)
    throw std::runtime_error(context + ": '" + key + "' must be an integer in [" + std::to_string(min) + ", " +
                             std::to_string(max) + "]" + (limit[0] ? std::string(" (") + limit + ")" : "") + ", got " +
                             json_shown(*it));
  return it->get<int64_t>();
}

double json_number(const nlohmann::json& j, const char* key, double low, double high, const std::string& context,
                   double fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number() || !(it->get<double>() > low && it->get<double>() < high))
    throw std::runtime_error(context + ": '" + key + "' must be a number in (" + number_text(low) + ", " + number_text(high) +
                             "), got " + json_shown(*it));
  return it->get<double>();
}

std::string json_string(const nlohmann::json& j, const char* key, const std::string& fallback, const std::string& context) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string()) throw std::runtime_error(context + ": '" + key + "' must be a string, got " + json_shown(*it));
  return it->get<std::string>();
}

bool json_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& context) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw std::runtime_error(context + ": '" + key + "' must be true or false, got " + json_shown(*it));
  return it->get<bool>();
}

std::string json_shown(const nlohmann::json& v, std::size_t max_chars) {
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  const auto text = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return text.size() <= max_chars ? text : text.substr(0, max_chars) + "...";
}

}  // namespace nexus::support
