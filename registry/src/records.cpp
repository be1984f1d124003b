#include "nexus/registry/records.hpp"

#include <stdexcept>

#include "record_json.hpp"

namespace nexus::registry {

const char* to_string(Status s) {
  switch (s) {
    case Status::Ok: return "ok";
    case Status::Broken: return "broken";
    case Status::Incompatible: return "incompatible";
    case Status::Duplicate: return "duplicate";
  }
  return "?";
}

Status status_from_string(const std::string& s) {
  for (auto st : {Status::Ok, Status::Broken, Status::Incompatible, Status::Duplicate})
    if (s == to_string(st)) return st;
  throw std::invalid_argument("unknown plugin status '" + s + "'");
}

nlohmann::json to_json(const ComponentRecord& c) {
  return {{"kind", c.kind},
          {"name", c.name},
          {"version", c.plugin_version},
          {"plugin", c.plugin_name},
          {"library", c.library},
          {"status", to_string(c.status)},
          {"reason", c.reason},
          {"description", c.description},
          {"options", c.options_schema},
          {"selftest_options", c.selftest_options}};
}

ComponentRecord component_from_json(const nlohmann::json& j) {
  ComponentRecord c;
  c.kind = j.value("kind", "");
  c.name = j.value("name", "");
  c.plugin_version = j.value("version", "");
  c.plugin_name = j.value("plugin", "");
  c.library = j.value("library", "");
  c.status = status_from_string(j.value("status", "ok"));
  c.reason = j.value("reason", "");
  c.description = j.value("description", "");
  c.options_schema = j.value("options", "");
  c.selftest_options = j.value("selftest_options", "");
  return c;
}

nlohmann::json to_json(const LibraryRecord& l) {
  nlohmann::json comps = nlohmann::json::array();
  for (const auto& c : l.components) comps.push_back(to_json(c));
  return {{"path", l.path},       {"size", l.size},
          {"mtime_ns", l.mtime_ns}, {"sha256", l.sha256}, {"status", to_string(l.status)},
          {"reason", l.reason},   {"plugin", l.plugin_name},
          {"version", l.plugin_version}, {"abi", l.abi},
          {"torch_version", l.torch_version}, {"cxx11_abi", l.cxx11_abi},
          {"cuda", l.cuda},       {"components", comps}};
}

namespace {

// An integer field; a float there would be converted with undefined behaviour when out of range,
// so anything but an integer is a type error, as a string would be.
template <typename T>
T integer(const nlohmann::json& j, const char* key, T fallback) {
  const auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (!it->is_number_integer())
    throw nlohmann::json::type_error::create(302, std::string("'") + key + "' must be an integer", &j);
  return it->template get<T>();
}

}  // namespace

LibraryRecord library_from_json(const nlohmann::json& j) {
  LibraryRecord l;
  l.path = j.value("path", "");
  l.size = integer(j, "size", uint64_t{0});
  l.mtime_ns = integer(j, "mtime_ns", int64_t{0});
  l.sha256 = j.value("sha256", "");
  l.status = status_from_string(j.value("status", "ok"));
  l.reason = j.value("reason", "");
  l.plugin_name = j.value("plugin", "");
  l.plugin_version = j.value("version", "");
  l.abi = j.value("abi", "");
  l.torch_version = j.value("torch_version", "");
  l.cxx11_abi = integer(j, "cxx11_abi", -1);
  l.cuda = integer(j, "cuda", -1);
  if (j.contains("components"))
    for (const auto& c : j["components"]) l.components.push_back(component_from_json(c));
  return l;
}

}  // namespace nexus::registry
