// nexus-plugin-probe LIBRARY: probes one plugin library in this throw-away process and reports
// on stdout (see probe_parent.cpp for the reader). Not meant to be run by hand.
#include <iostream>

#include "nexus/registry/probe.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: nexus-plugin-probe LIBRARY\n";
    return 2;
  }
  return nexus::registry::probe_in_this_process(argv[1], std::cout);
}
