#include "nexus/distributed/launcher.hpp"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <thread>

namespace nexus::dist {

namespace {

constexpr int kRuntimeFailure = 1, kBadInput = 2;

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0)
    throw std::runtime_error(std::string("cannot find a free loopback port: ") + std::strerror(errno));
  ::close(fd);
  return ntohs(a.sin_port);
}

std::atomic<int> interrupted{0};

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "stopped";
}

// The exit code a job ends with when this worker failed.
int failure_code(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == kBadInput ? kBadInput : kRuntimeFailure; }

pid_t start_worker(const WorkerLaunch& launch, int rank, int port) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("cannot start a worker: ") + std::strerror(errno));
  if (pid > 0) return pid;
  ::setenv("RANK", std::to_string(rank).c_str(), 1);
  ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  ::setenv("WORLD_SIZE", std::to_string(launch.nproc).c_str(), 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  // N workers each running a pool of all cores would oversubscribe the machine (torchrun sets 1);
  // share the cores out unless the user chose.
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  ::setenv("OMP_NUM_THREADS", std::to_string(std::max(1u, cores / unsigned(launch.nproc))).c_str(), 0);
  std::vector<std::string> argv = launch.argv;
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  ::execv(cargv[0], cargv.data());
  std::_Exit(127);
}

// SIGTERM to every worker still running, SIGKILL to those still there after 10 s; reaps them all.
void stop_all(std::vector<pid_t>& pids) {
  for (auto p : pids)
    if (p > 0) ::kill(p, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (auto& p : pids) {
    while (p > 0) {
      int st = 0;
      if (::waitpid(p, &st, WNOHANG) == p) {
        p = 0;
      } else if (std::chrono::steady_clock::now() > deadline) {
        ::kill(p, SIGKILL);
        ::waitpid(p, &st, 0);
        p = 0;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }
}

}  // namespace

int launch_workers(const WorkerLaunch& launch) {
  const int port = free_loopback_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < launch.nproc; ++r) pids.push_back(start_worker(launch, r, port));
  spdlog::info("started {} workers on 127.0.0.1:{}", launch.nproc, port);
  ::signal(SIGINT, [](int s) { interrupted = s; });
  ::signal(SIGTERM, [](int s) { interrupted = s; });

  int rank0 = 0, running = launch.nproc;
  while (running > 0) {
    if (interrupted) {
      std::cerr << "nexus train: interrupted; stopping the workers (resume with --resume)\n";
      stop_all(pids);
      return kRuntimeFailure;
    }
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    const auto rank = std::find(pids.begin(), pids.end(), done) - pids.begin();
    if (done <= 0 || rank == int64_t(pids.size())) {
      if (done <= 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    pids[size_t(rank)] = 0;
    --running;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (rank == 0) rank0 = WIFEXITED(status) ? WEXITSTATUS(status) : kRuntimeFailure;
    if (ok || (rank == 0 && running == 0)) continue;  // the job ends with rank 0's own exit code
    std::cerr << "nexus train: worker rank " << rank << " (pid " << done << ") " << describe(status);
    if (running > 0) {
      std::cerr << "; stopped the other " << running << " worker(s). Continue with --resume (any --nproc).\n";
      stop_all(pids);
    } else {
      std::cerr << "\n";
    }
    return failure_code(status);
  }
  return rank0;
}

}  // namespace nexus::dist
