// Runs nexus-plugin-probe on one library and turns its report, or its death, into a record.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "nexus/registry/probe.hpp"
#include "nexus/version.hpp"
#include "probe_report.hpp"
#include "record_json.hpp"

extern char** environ;

namespace nexus::registry {
namespace fs = std::filesystem;

std::string probe_executable() {
  if (const char* env = std::getenv("NEXUS_PROBE_EXE"); env && *env) return env;
  std::error_code ec;
  const auto self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto sibling = self.parent_path() / "nexus-plugin-probe";
    if (fs::exists(sibling)) return sibling.string();
  }
  return (fs::path(NEXUS_INSTALL_PREFIX) / NEXUS_INSTALL_BINDIR / "nexus-plugin-probe").string();
}

namespace {

std::string format_seconds(double s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

using Report = ProbeReport;

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : std::to_string(sig);
}

}  // namespace

namespace {

// Starts the probe executable on `path` with the write end of a pipe as its report descriptor.
// Returns the child's pid and the read end, or a reason why it could not start.
struct Child {
  pid_t pid = -1;
  int report = -1;
  std::string problem;
};

Child spawn_probe(const std::string& exe, const std::string& path) {
  Child child;
  // Close-on-exec, so that probes started side by side do not inherit each other's pipes (a pipe
  // reaches end-of-file only when every writer is gone); the child gets its end as kProbeReportFd.
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return {-1, -1, std::string("cannot probe: pipe: ") + std::strerror(errno)};
  if (out_pipe[1] == kProbeReportFd) {  // dup2 onto itself would keep close-on-exec
    const int moved = ::fcntl(out_pipe[1], F_DUPFD_CLOEXEC, kProbeReportFd + 1);
    ::close(out_pipe[1]);
    out_pipe[1] = moved;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], kProbeReportFd);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);  // plugin chatter
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);  // own group: a timeout kills grandchildren too
  posix_spawnattr_setpgroup(&attr, 0);
  const std::string fd = std::to_string(kProbeReportFd);
  std::vector<char*> argv{const_cast<char*>(exe.c_str()), const_cast<char*>(path.c_str()), const_cast<char*>(fd.c_str()), nullptr};
  const int spawn_error = ::posix_spawn(&child.pid, exe.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out_pipe[1]);
  child.report = out_pipe[0];
  if (spawn_error != 0) {
    ::close(out_pipe[0]);
    return {-1, -1, "cannot probe: starting '" + exe + "' failed: " + std::strerror(spawn_error)};
  }
  return child;
}

// Reads the child's report until it closes its end, then waits for it to exit; if the deadline
// passes first, kills its process group. Reaps it. Returns false on a timeout.
bool collect(Child& child, std::chrono::steady_clock::time_point deadline, Report& report, int& wstatus) {
  std::string pending;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{child.report, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, int(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(child.report, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the child closed its report: it exited (or is about to)
    pending.append(buf, size_t(n));
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      report.consume(pending.substr(0, nl));
      pending.erase(0, nl + 1);
    }
  }
  ::close(child.report);
  // A closed report does not mean an exited child: one that closes its descriptor and then stops
  // without exiting gets the same deadline. One whose report is complete (done, or an error) but
  // that is slow to exit (static destructors on a loaded machine) is stopped then and believed.
  bool stuck = false;
  while (!timed_out) {
    const pid_t done = ::waitpid(child.pid, &wstatus, WNOHANG);
    if (done == child.pid || (done < 0 && errno != EINTR)) break;
    if (std::chrono::steady_clock::now() >= deadline) stuck = true;
    if (stuck) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const bool complete = report.done || report.have_error;
  if (timed_out || stuck) {
    ::kill(-child.pid, SIGKILL);  // the whole group: whatever the probe started goes too
    while (::waitpid(child.pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    if (stuck && complete) wstatus = 0;  // its verdict was in: the lingering is not its fault
    else timed_out = true;
  }
  if (!timed_out && !pending.empty()) report.consume(pending);
  return !timed_out;
}

// Why the child's report cannot be trusted as complete; "" when it can.
std::string death_of(const Report& report, bool finished, int wstatus, const std::string& exe, double timeout_seconds) {
  if (report.protocol != kProbeProtocol && report.protocol != 0)
    return "the probe executable " + exe + " speaks probe protocol " + std::to_string(report.protocol) + ", this nexus " +
           std::to_string(kProbeProtocol) + " (a probe from another installation: set NEXUS_PROBE_EXE or reinstall)";
  if (!finished) return "probe timed out after " + format_seconds(timeout_seconds) + " s while " + report.stage;
  if (WIFSIGNALED(wstatus))
    return "probe crashed with signal " + std::to_string(WTERMSIG(wstatus)) + " (" + signal_name(WTERMSIG(wstatus)) +
           ") while " + report.stage;
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0 && !report.done && !report.have_error)
    return "probe exited with status " + std::to_string(WEXITSTATUS(wstatus)) + " while " + report.stage;
  if (!report.done && !report.have_error) return "probe ended without a report while " + report.stage;
  return "";
}

}  // namespace

LibraryRecord probe_in_child(const std::string& path, double timeout_seconds) {
  const auto started = std::chrono::steady_clock::now();
  LibraryRecord rec;
  rec.path = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    rec.size = uint64_t(st.st_size);
    rec.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  auto broken = [&](Status status, const std::string& reason) {
    rec.status = status;
    rec.reason = reason;
    return rec;
  };
  const std::string exe = probe_executable();
  if (::access(exe.c_str(), X_OK) != 0)
    return broken(Status::Broken, "cannot probe: the probe executable '" + exe +
                                      "' is missing (set NEXUS_PROBE_EXE or reinstall nexus)");
  auto child = spawn_probe(exe, path);
  if (!child.problem.empty()) return broken(Status::Broken, child.problem);
  Report report;
  int wstatus = 0;
  const auto deadline = started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(timeout_seconds));
  const bool finished = collect(child, deadline, report, wstatus);

  if (report.have_library) {
    auto library = report.library;
    library.path = rec.path;
    library.size = rec.size;
    library.mtime_ns = rec.mtime_ns;
    rec = library;
  }
  rec.probe_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (const auto death = death_of(report, finished, wstatus, exe, timeout_seconds); !death.empty()) {
    // The library may not be loaded in-process at all, so every component goes down with it.
    rec.status = Status::Broken;
    rec.reason = death;
    for (auto& c : rec.components) {
      if (c.status != Status::Ok) continue;
      const bool culprit = report.stage.find(c.kind + " '" + c.name + "'") != std::string::npos;
      c.status = Status::Broken;
      c.reason = culprit ? death : "unusable: " + death;
    }
  } else if (report.have_error) {
    rec.status = report.error_status;
    rec.reason = report.error_reason;
    for (auto& c : rec.components) {
      c.status = report.error_status;
      c.reason = report.error_reason;
    }
  }
  return rec;
}

}  // namespace nexus::registry
