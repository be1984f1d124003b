// Probing a plugin library: load it, check the handshake, create every component with its
// self-test options and run its self-test. Done first in a child process so that a plugin that
// crashes or hangs takes down only the child.
//
// The protocol: the child (nexus-plugin-probe LIBRARY REPORT_FD) writes one line per event,
// "@nexus {json}", to a descriptor of its own, never to stdout or stderr, so that nothing a plugin
// prints can be mistaken for (or forge) a report. Its first event says which protocol it speaks;
// a child that speaks another (a probe executable from another installation) is refused. The
// parent sends the child's stdout to /dev/null and leaves stderr to the terminal.
//   {"event":"hello","protocol":N}      first, always
//   {"event":"stage","stage":"..."}     before each step, so that a crash or hang is located
//   {"event":"library","record":{...}}  what the plugin's info struct says
//   {"event":"component",...}           one per component: status and reason
//   {"event":"error","status":...}      the library as a whole is unusable
//   {"event":"done"}                    last
#pragma once

#include <string>

#include "nexus/registry/records.hpp"

namespace nexus::registry {

// The version of that protocol. It is part of the probe-cache key: a cached result is trusted
// only if it was reported the way this host reads reports.
constexpr int kProbeProtocol = 2;
// The descriptor the parent gives the child for its report.
constexpr int kProbeReportFd = 3;

// Static checks before dlopen: ELF magic and that the file is not truncated. "" if fine.
std::string check_elf_file(const std::string& path);

// Runs the probe in this process and writes the protocol's lines to descriptor `report_fd`. Used by
// the nexus-plugin-probe executable; never call it in a process you care about.
int probe_in_this_process(const std::string& path, int report_fd);

// Spawns the probe executable on `path` and turns what it reports (or how it died) into a
// record. Never throws for a bad plugin; the record says what happened.
LibraryRecord probe_in_child(const std::string& path, double timeout_seconds);

// The probe executable: $NEXUS_PROBE_EXE, else `nexus-plugin-probe` beside this executable, else
// the one installed with nexus.
std::string probe_executable();

}  // namespace nexus::registry
