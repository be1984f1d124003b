#include "nexus/registry/probe_cache.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "nexus/base/files.hpp"
#include "nexus/registry/handshake.hpp"
#include "nexus/registry/probe.hpp"
#include "nexus/version.hpp"
#include "record_json.hpp"

namespace nexus::registry {
namespace fs = std::filesystem;

struct ProbeCache::Impl {
  std::map<std::string, LibraryRecord> entries;
};

std::string default_cache_dir() {
  if (const char* d = std::getenv("NEXUS_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "nexus").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "nexus").string();
  return (fs::temp_directory_path() / "nexus-cache").string();
}

ProbeCache::ProbeCache(std::string file) : file_(std::move(file)), impl_(std::make_shared<Impl>()) {
  const auto host = HostAbi::current();
  // A different host (ABI, libtorch, nexus version) may judge a library differently, and a result
  // reported in another protocol may have been read differently.
  host_key_ = std::string(NEXUS_VERSION) + "|" + std::to_string(host.abi_major) + "." + std::to_string(host.abi_minor) +
              "|" + host.torch_version + "|" + std::to_string(host.cxx11_abi) + "|" + std::to_string(host.cuda) +
              "|probe-protocol-" + std::to_string(kProbeProtocol);
  if (file_.empty() || !fs::exists(file_)) return;
  try {
    const auto j = nlohmann::json::parse(read_file(file_));
    if (j.value("host", "") != host_key_) return;
    for (const auto& e : j.at("libraries")) {
      auto rec = library_from_json(e);
      impl_->entries[rec.path] = rec;
    }
  } catch (const std::exception& e) {
    spdlog::warn("ignoring unreadable plugin probe cache {}: {}", file_, e.what());
    impl_->entries.clear();
  }
}

std::optional<LibraryRecord> ProbeCache::lookup(const std::string& path, const std::string& sha256) const {
  auto it = impl_->entries.find(path);
  if (it == impl_->entries.end() || sha256.empty() || it->second.sha256 != sha256) return std::nullopt;
  auto rec = it->second;
  rec.from_cache = true;
  rec.probe_seconds = 0;
  return rec;
}

void ProbeCache::store(const LibraryRecord& record) { impl_->entries[record.path] = record; }

void ProbeCache::save() const {
  if (file_.empty()) return;
  nlohmann::json libs = nlohmann::json::array();
  for (const auto& [path, rec] : impl_->entries) libs.push_back(to_json(rec));
  const nlohmann::json j = {{"host", host_key_}, {"libraries", libs}};
  std::error_code ec;
  fs::create_directories(fs::path(file_).parent_path(), ec);
  try {
    write_file_atomically(file_, j.dump(1));
  } catch (const std::exception& e) {
    spdlog::warn("cannot update plugin probe cache: {}", e.what());  // probing again next time is all it costs
  }
}

}  // namespace nexus::registry
