#include "nexus/base/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace nexus {

ProgressLine::ProgressLine(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), last_print_(start_) {}

std::string ProgressLine::render(int64_t done, int64_t fresh) const {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? double(fresh) / secs : 0.0;
  char buf[256];
  const double pct = total_ > 0 ? 100.0 * double(done) / double(total_) : 100.0;
  if (rate > 0 && done < total_)
    std::snprintf(buf, sizeof buf, "%s %lld/%lld %s (%.0f%%) %.1f %s/s ETA %.0fs", label_.c_str(), (long long)done,
                  (long long)total_, unit_.c_str(), pct, rate, unit_.c_str(), double(total_ - done) / rate);
  else
    std::snprintf(buf, sizeof buf, "%s %lld/%lld %s (%.0f%%) %.1fs", label_.c_str(), (long long)done, (long long)total_,
                  unit_.c_str(), pct, secs);
  return buf;
}

void ProgressLine::update(int64_t done, int64_t fresh) {
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", render(done, fresh).c_str());
    std::fflush(stderr);
  } else if (now - last_print_ > std::chrono::seconds(5)) {
    // Not through the logger: progress must show at the default log level, in pipes and CI logs.
    std::fprintf(stderr, "%s\n", render(done, fresh).c_str());
    last_print_ = now;
  }
}

void ProgressLine::finish() {
  if (finished_) return;
  finished_ = true;
  if (tty_) std::fprintf(stderr, "\r\033[K");
}

}  // namespace nexus
