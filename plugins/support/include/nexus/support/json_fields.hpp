// Reading small JSON files that size a model (config.json and friends) strictly: the file is
// bounded before it is read, and each field is checked for its type and range before anything is
// sized from it, with messages that name the file, the field and the limit. Shared by every
// plugin that reads Hugging Face folders, so they refuse bad files the same way.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace nexus::support {

// The whole file, refused when it is larger than `max_bytes` (`limit_name` names the constant);
// `what` describes it in messages ("model config").
std::string read_small_file(const std::string& path, std::size_t max_bytes, const char* limit_name, const std::string& what);
// Parses `text` as one JSON object; `context` starts every message ("model config 'x/config.json'").
nlohmann::json parse_json_object(const std::string& text, const std::string& context);

// An integer field in [min, max]: a float, a string or a value out of range is an error naming the
// field and `limit` (when not empty). A missing field is an error unless `fallback` is given.
int64_t json_int(const nlohmann::json& j, const char* key, int64_t min, int64_t max, const char* limit,
                 const std::string& context, const int64_t* fallback = nullptr);
// A number field in the open interval (low, high); missing -> fallback.
double json_number(const nlohmann::json& j, const char* key, double low, double high, const std::string& context,
                   double fallback);
// A string field; missing -> fallback.
std::string json_string(const nlohmann::json& j, const char* key, const std::string& fallback, const std::string& context);
// A boolean field; missing -> fallback.
bool json_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& context);

// A value as a message shows it: a scalar as JSON text, cut to `max_chars` (then "..."); an array
// or an object only by its kind, since printing one recurses once per level and a hostile file of
// 1 MiB can nest 500,000 levels (a stack overflow, not an error).
std::string json_shown(const nlohmann::json& v, std::size_t max_chars = 40);

}  // namespace nexus::support
