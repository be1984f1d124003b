// Probing a plugin library: load it, check the handshake, create every component with its
// self-test options and run its self-test. Done first in a child process so that a plugin that
// crashes or hangs takes down only the child.
#pragma once

#include <iosfwd>
#include <string>

#include "nexus/registry/records.hpp"

namespace nexus::registry {

// Static checks before dlopen: ELF magic and that the file is not truncated. "" if fine.
std::string check_elf_file(const std::string& path);

// Runs the probe in this process and writes protocol lines ("@nexus {json}") to `out`. Used by
// the nexus-plugin-probe executable; never call it in a process you care about.
int probe_in_this_process(const std::string& path, std::ostream& out);

// Spawns the probe executable on `path` and turns what it reports (or how it died) into a
// record. Never throws for a bad plugin; the record says what happened.
LibraryRecord probe_in_child(const std::string& path, double timeout_seconds);

// The probe executable: $NEXUS_PROBE_EXE, else `nexus-plugin-probe` beside this executable, else
// the one installed with nexus.
std::string probe_executable();

}  // namespace nexus::registry
