// `nexus train --nproc N`: starts N workers of one command line, joined the way torchrun joins
// them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT on a free loopback port), and
// watches them: when one fails, the others are stopped at once instead of waiting out a
// collective's timeout.
#pragma once

#include <string>
#include <vector>

namespace nexus::dist {

// The workers' command line (argv[0] is the executable) and how many to start. Each worker gets
// OMP_NUM_THREADS = cores / nproc unless the caller's environment sets it.
struct WorkerLaunch {
  std::vector<std::string> argv;
  int nproc = 1;
};

// Returns rank 0's exit code once every worker has ended. When a worker fails, or SIGINT/SIGTERM
// reaches the launcher, the others are stopped (SIGTERM, then SIGKILL after 10 s) and the result
// is 1, or 2 when the failed worker reported bad input (exit code 2): bad input is bad on every rank.
int launch_workers(const WorkerLaunch& launch);

}  // namespace nexus::dist
