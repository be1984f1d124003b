// nexus train --nproc N: starts N workers of this same binary, joined the way torchrun joins them
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), and watches them: when one fails, the
// others are stopped at once instead of waiting out a collective's timeout.
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
#include <filesystem>
#include <iostream>
#include <thread>

#include "cli.hpp"

namespace nexus::cli {

namespace {

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

}  // namespace

int launch_workers(const Globals& g, int nproc, const std::vector<std::string>& train_args) {
  const auto exe = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<std::string> argv{exe};
  for (const auto& p : g.plugin_paths) argv.insert(argv.end(), {"--plugin-path", p});
  argv.insert(argv.end(), {"--probe-timeout", std::to_string(g.probe_timeout)});
  const auto level = spdlog::level::to_string_view(spdlog::get_level());
  argv.insert(argv.end(), {"--log-level", std::string(level.data(), level.size())});
  if (g.no_probe_cache) argv.push_back("--no-probe-cache");
  argv.push_back("train");
  argv.insert(argv.end(), train_args.begin(), train_args.end());
  const int port = free_loopback_port();

  std::vector<pid_t> pids(size_t(nproc), 0);
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("cannot start a worker: ") + std::strerror(errno));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      // N workers each running a pool of all cores would oversubscribe the machine (torchrun
      // sets 1); share the cores out unless the user chose.
      const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
      ::setenv("OMP_NUM_THREADS", std::to_string(std::max(1u, cores / unsigned(nproc))).c_str(), 0);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      ::execv(exe.c_str(), cargv.data());
      std::_Exit(127);
    }
    pids[size_t(r)] = pid;
  }
  spdlog::info("started {} workers on 127.0.0.1:{}", nproc, port);
  ::signal(SIGINT, [](int s) { interrupted = s; });
  ::signal(SIGTERM, [](int s) { interrupted = s; });

  auto stop_others = [&] {
    for (auto p : pids)
      if (p > 0) ::kill(p, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (auto& p : pids) {
      while (p > 0) {
        int st = 0;
        if (::waitpid(p, &st, WNOHANG) == p) p = 0;
        else if (std::chrono::steady_clock::now() > deadline) ::kill(p, SIGKILL), ::waitpid(p, &st, 0), p = 0;
        else std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  };
  int rank0 = kOk, running = nproc;
  while (running > 0) {
    if (interrupted) {
      std::cerr << "nexus train: interrupted; stopping the workers (resume with --resume)\n";
      stop_others();
      return kRuntimeFailure;
    }
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    int rank = 0;
    while (rank < nproc && pids[size_t(rank)] != done) ++rank;
    if (rank == nproc) continue;
    pids[size_t(rank)] = 0;
    --running;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (rank == 0) rank0 = WIFEXITED(status) ? WEXITSTATUS(status) : kRuntimeFailure;
    if (!ok && running > 0) {
      std::cerr << "nexus train: worker rank " << rank << " (pid " << done << ") " << describe(status)
                << "; stopped the other " << running << " worker(s). Continue with --resume (any --nproc).\n";
      stop_others();
      // Bad input (a composition, a flag) is bad on every rank: say so with the exit code too.
      return WIFEXITED(status) && WEXITSTATUS(status) == kBadInput ? kBadInput : kRuntimeFailure;
    }
    if (!ok && rank != 0) {
      std::cerr << "nexus train: worker rank " << rank << " (pid " << done << ") " << describe(status) << "\n";
      return WIFEXITED(status) && WEXITSTATUS(status) == kBadInput ? kBadInput : kRuntimeFailure;
    }
  }
  return rank0;
}

}  // namespace nexus::cli
