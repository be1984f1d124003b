#include "nexus/registry/handshake.hpp"

#include <torch/version.h>

#include <cstddef>

#include "nexus/version.hpp"

namespace nexus::registry {

HostAbi HostAbi::current() {
  return {NEXUS_ABI_MAJOR, NEXUS_ABI_MINOR, TORCH_VERSION, _GLIBCXX_USE_CXX11_ABI, NEXUS_TORCH_CUDA};
}

std::string check_handshake(const nexus_plugin_info& p, const HostAbi& host) {
  const std::string host_abi = std::to_string(host.abi_major) + "." + std::to_string(host.abi_minor);
  const std::string plugin_abi = std::to_string(p.abi_major) + "." + std::to_string(p.abi_minor);
  // Everything past the version fields is only trusted once struct_size says it is there.
  if (p.struct_size < offsetof(nexus_plugin_info, abi_minor) + sizeof(p.abi_minor))
    return "plugin info is only " + std::to_string(p.struct_size) + " bytes: not a NEXUS plugin or a corrupt one";
  if (p.abi_major != host.abi_major) {
    if (p.abi_major > host.abi_major)
      return "plugin ABI " + plugin_abi + " is newer than this host's ABI " + host_abi +
             ": upgrade nexus to one with plugin ABI " + std::to_string(p.abi_major) +
             ".x, or rebuild the plugin against this host's plugin_api";
    return "plugin ABI " + plugin_abi + " is older than this host's ABI " + host_abi +
           " (major versions differ): rebuild the plugin against this host's plugin_api";
  }
  if (p.abi_minor > host.abi_minor)
    return "plugin needs ABI " + plugin_abi + " but this host provides " + host_abi +
           ": upgrade nexus, or rebuild the plugin against this host's plugin_api";
  if (p.struct_size < sizeof(nexus_plugin_info))
    return "plugin info is " + std::to_string(p.struct_size) + " bytes, expected " +
           std::to_string(sizeof(nexus_plugin_info)) + " for ABI " + plugin_abi + ": the plugin is corrupt";
  const std::string torch = p.torch_version ? p.torch_version : "?";
  if (torch != host.torch_version)
    return "plugin was built against libtorch " + torch + " but this host uses libtorch " + host.torch_version +
           ": rebuild the plugin against libtorch " + host.torch_version;
  if (p.cxx11_abi != host.cxx11_abi)
    return "plugin was built with _GLIBCXX_USE_CXX11_ABI=" + std::to_string(p.cxx11_abi) + " but this host uses " +
           std::to_string(host.cxx11_abi) + ": rebuild the plugin with the flags of the host's libtorch (TORCH_CXX_FLAGS)";
  if (p.cuda != host.cuda)
    return std::string("plugin was built against a ") + (p.cuda ? "CUDA" : "CPU-only") + " libtorch but this host's is " +
           (host.cuda ? "CUDA" : "CPU-only") + ": rebuild the plugin against the host's libtorch";
  if (!p.plugin_name || !p.plugin_version || (p.component_count > 0 && !p.components))
    return "plugin info is missing its name, version or component list";
  return "";
}

}  // namespace nexus::registry
