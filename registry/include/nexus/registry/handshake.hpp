// The version handshake: decides from a plugin's info struct alone whether the host may run any
// more of its code.
#pragma once

#include <string>

#include "nexus/abi.h"

namespace nexus::registry {

// The host's side of the handshake.
struct HostAbi {
  unsigned abi_major, abi_minor;
  std::string torch_version;
  int cxx11_abi;
  int cuda;
  static HostAbi current();
};

// Empty if compatible, else one sentence saying what differs and which side to rebuild.
std::string check_handshake(const nexus_plugin_info& plugin, const HostAbi& host);

}  // namespace nexus::registry
