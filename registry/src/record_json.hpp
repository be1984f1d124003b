// JSON form of the records: used by the probe protocol, the probe cache and `plugins list --json`.
#pragma once

#include <nlohmann/json.hpp>

#include "nexus/registry/records.hpp"

namespace nexus::registry {

Status status_from_string(const std::string& s);
nlohmann::json to_json(const ComponentRecord& c);
nlohmann::json to_json(const LibraryRecord& l);
ComponentRecord component_from_json(const nlohmann::json& j);
LibraryRecord library_from_json(const nlohmann::json& j);

}  // namespace nexus::registry
