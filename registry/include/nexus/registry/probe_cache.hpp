// Probe results keyed on (path, size, mtime, host ABI): a library is probed again only when it
// or the host changed.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "nexus/registry/records.hpp"

namespace nexus::registry {

class ProbeCache {
 public:
  explicit ProbeCache(std::string file);  // "" disables the cache
  std::optional<LibraryRecord> lookup(const std::string& path, uint64_t size, int64_t mtime_ns) const;
  void store(const LibraryRecord& record);
  void save() const;  // atomic: write a temporary file, then rename

 private:
  std::string file_;
  std::string host_key_;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

std::string default_cache_dir();

}  // namespace nexus::registry
