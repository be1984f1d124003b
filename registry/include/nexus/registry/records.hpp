// What the registry knows about plugin libraries and their components, whether or not they load.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nexus::registry {

enum class Status { Ok, Broken, Incompatible, Duplicate };
const char* to_string(Status s);

struct ComponentRecord {
  std::string kind;  // teacher, tower, router, loss ("-" when the library could not be read)
  std::string name;
  std::string description;
  std::string options_schema;
  std::string selftest_options;
  Status status = Status::Ok;
  std::string reason;  // why it is not ok
  // Filled from the owning library, for listing:
  std::string plugin_name, plugin_version, library;
};

struct LibraryRecord {
  std::string path;  // canonical
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  std::string sha256;  // of the file's content when it was probed: what the probe result is about
  Status status = Status::Ok;
  std::string reason;
  std::string plugin_name, plugin_version;
  std::string abi;  // "major.minor"
  std::string torch_version;
  int cxx11_abi = -1;
  int cuda = -1;
  std::vector<ComponentRecord> components;
  double probe_seconds = 0.0;  // 0 when taken from the probe cache
  bool from_cache = false;
};

}  // namespace nexus::registry
