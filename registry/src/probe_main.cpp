// nexus-plugin-probe LIBRARY REPORT_FD: probes one plugin library in this throw-away process and
// reports on descriptor REPORT_FD (the protocol: nexus/registry/probe.hpp). Not meant to be run by
// hand.
#include <cstdlib>
#include <iostream>

#include "nexus/registry/probe.hpp"

int main(int argc, char** argv) {
  char* end = nullptr;
  const long fd = argc == 3 ? std::strtol(argv[2], &end, 10) : -1;
  if (argc != 3 || *end != '\0' || fd < 3) {
    std::cerr << "usage: nexus-plugin-probe LIBRARY REPORT_FD\n";
    return 2;
  }
  return nexus::registry::probe_in_this_process(argv[1], int(fd));
}
