// The parent's side of the probe protocol (probe.hpp): what a probe child has reported so far.
// Kept apart from the process handling in probe_parent.cpp, torch-free, so that the fuzz harness
// (tests/fuzz/probe_report_fuzz.cpp) feeds it lines the way a broken or hostile child could.
#pragma once

#include <string>

#include "nexus/registry/records.hpp"

namespace nexus::registry {

struct ProbeReport {
  std::string stage = "starting the probe";
  int protocol = 0;  // from the child's hello; 0 until it came, -1 when it was not a number
  bool have_library = false, done = false, have_error = false;
  LibraryRecord library;
  Status error_status = Status::Broken;
  std::string error_reason;

  // One line of the child's report. Lines without the "@nexus " tag (plugin chatter) and lines
  // that are not a well-formed event are ignored: the child's death or silence is judged from the
  // events that did come.
  void consume(const std::string& line);
};

}  // namespace nexus::registry
