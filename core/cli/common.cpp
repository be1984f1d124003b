#include <cstdlib>

#include "cli.hpp"

namespace nexus::cli {

registry::Registry scanned_registry(const Globals& g) {
  registry::RegistryOptions o;
  o.plugin_paths = g.plugin_paths;
  o.probe_timeout_seconds = g.probe_timeout;
  o.use_probe_cache = !g.no_probe_cache && !std::getenv("NEXUS_NO_PROBE_CACHE");
  registry::Registry r(o);
  r.scan();
  return r;
}

}  // namespace nexus::cli
