// Probe results keyed on (path, sha256 of the content, host ABI): a library is probed again when
// any byte of it, or the host, changed. Size and modification time are no key: both can be kept
// while the content changes (a copy with `cp -p`, `touch -r`, a build that writes in place).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "nexus/registry/records.hpp"

namespace nexus::registry {

class ProbeCache {
 public:
  explicit ProbeCache(std::string file);  // "" disables the cache
  std::optional<LibraryRecord> lookup(const std::string& path, const std::string& sha256) const;
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
