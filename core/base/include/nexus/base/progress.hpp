// A progress line with rate and ETA for long work: redrawn in place on a terminal, logged every
// few seconds otherwise (CI logs, pipes).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace nexus {

class ProgressLine {
 public:
  ProgressLine(std::string label, int64_t total, std::string unit = "rows");
  // `done` items so far, `fresh` of them computed in this run (the rate counts only those).
  void update(int64_t done, int64_t fresh);
  void finish();

 private:
  std::string label_, unit_;
  int64_t total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
  bool finished_ = false;
  std::string render(int64_t done, int64_t fresh) const;
};

}  // namespace nexus
