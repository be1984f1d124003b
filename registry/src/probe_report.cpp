#include "probe_report.hpp"

#include "nexus/registry/probe.hpp"
#include "record_json.hpp"

namespace nexus::registry {

namespace {

// A string field of an event, or `fallback` when it is absent or not a string.
std::string text(const nlohmann::json& j, const char* key, const std::string& fallback) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// A status the child named; one this host does not know counts as broken.
Status status(const nlohmann::json& j) {
  const auto name = text(j, "status", "broken");
  for (auto st : {Status::Ok, Status::Broken, Status::Incompatible, Status::Duplicate})
    if (name == to_string(st)) return st;
  return Status::Broken;
}

}  // namespace

void ProbeReport::consume(const std::string& line) {
  static const std::string tag = "@nexus ";
  if (line.compare(0, tag.size(), tag) != 0) return;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line.substr(tag.size()));
  } catch (...) {
    return;
  }
  if (!j.is_object()) return;
  const auto event = text(j, "event", "");
  if (event == "hello") {
    const auto p = j.find("protocol");
    // get<int> of a float or a huge number would be undefined: only a small integer counts.
    protocol = p != j.end() && p->is_number_integer() && *p >= 0 && *p <= 1000000 ? p->get<int>() : -1;
    return;
  }
  if (protocol != kProbeProtocol) return;  // a child that did not say hello, or speaks another protocol
  if (event == "stage") {
    stage = text(j, "stage", stage);
  } else if (event == "library") {
    // A record of the wrong shape is as good as no record: parse it whole before taking it.
    try {
      auto record = library_from_json(j.value("record", nlohmann::json::object()));
      library = std::move(record);
      have_library = true;
    } catch (const std::exception&) {  // JSON of the wrong type, an unknown status
    }
  } else if (event == "component") {
    const auto kind = text(j, "kind", ""), name = text(j, "name", "");
    for (auto& c : library.components)
      if (c.kind == kind && c.name == name) {
        c.status = status(j);
        c.reason = text(j, "reason", "");
      }
  } else if (event == "error") {
    have_error = true;
    error_status = status(j);
    error_reason = text(j, "reason", "");
  } else if (event == "done") {
    done = true;
  }
}

}  // namespace nexus::registry
