// The plugin registry: finds plugin libraries, probes them once, and creates components from the
// ones that passed. Objects it creates keep their library loaded for as long as they live, even
// after the registry itself is gone.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nexus/base/errors.hpp"
#include "nexus/registry/records.hpp"

namespace nexus {
class Options;
class Teacher;
class Tower;
class Router;
class Loss;
}  // namespace nexus

namespace nexus::registry {

// A component that cannot be created: not installed, broken, or its factory failed.
class PluginError : public RuntimeFailure {
 public:
  using RuntimeFailure::RuntimeFailure;
};

struct RegistryOptions {
  std::vector<std::string> plugin_paths;  // from --plugin-path, searched first
  bool use_environment = true;            // NEXUS_PLUGIN_PATH
  bool use_default_paths = true;          // <exe>/../lib/nexus/plugins, user data dir
  bool use_probe_cache = true;
  std::string cache_dir;                  // "" = $NEXUS_CACHE_DIR, $XDG_CACHE_HOME/nexus, ~/.cache/nexus
  double probe_timeout_seconds = 30.0;    // NEXUS_PROBE_TIMEOUT overrides
};

// Directories in search order, without duplicates; nonexistent ones are kept (and logged).
std::vector<std::string> plugin_search_path(const RegistryOptions& options);

class Registry {
 public:
  explicit Registry(RegistryOptions options = {});

  // Finds and probes (or takes from the cache) every library on the search path.
  void scan();

  const std::vector<std::string>& search_path() const { return search_path_; }
  const std::vector<LibraryRecord>& libraries() const { return libraries_; }
  // One row per component (or per unreadable library), in search order.
  std::vector<ComponentRecord> components() const;
  // The component lookup resolves to: first ok match in search order; nullptr if none.
  const ComponentRecord* find(const std::string& kind, const std::string& name, const std::string& version = "") const;
  // Names of usable components of a kind, for error messages.
  std::vector<std::string> available(const std::string& kind) const;

  std::shared_ptr<Teacher> create_teacher(const std::string& name, const Options& options, const std::string& version = "") const;
  std::shared_ptr<Tower> create_tower(const std::string& name, const Options& options, const std::string& version = "") const;
  std::shared_ptr<Router> create_router(const std::string& name, const Options& options, const std::string& version = "") const;
  std::shared_ptr<Loss> create_loss(const std::string& name, const Options& options, const std::string& version = "") const;

 private:
  // Returns the object (as a pointer to the kind's base) and a deleter that owns the library.
  std::shared_ptr<void> create(const std::string& kind, const std::string& name, const Options& options,
                               const std::string& version) const;
  void mark_duplicates();

  RegistryOptions options_;
  std::vector<std::string> search_path_;
  std::vector<LibraryRecord> libraries_;
};

}  // namespace nexus::registry
