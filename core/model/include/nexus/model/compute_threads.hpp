// How many threads libtorch's CPU kernels use (intra-op parallelism). NEXUS chooses this rather
// than leaving it to libtorch: Debian's libtorch starts with one thread on a 2-core machine, so
// teacher forwards, which dominate cold runs, left a core idle. Under `--nproc N` each worker gets
// cores / N (the launcher sets OMP_NUM_THREADS for it), so N workers do not oversubscribe the
// machine. Torch-free header: `main` applies the choice before any command runs.
#pragma once

#include <string>

namespace nexus {

struct ComputeThreads {
  int count = 1;
  std::string reason;  // "--compute-threads", "OMP_NUM_THREADS" or "all N cores"
};

// `requested` > 0 (--compute-threads) wins; then a positive OMP_NUM_THREADS; then every core.
// Throws InputError for a negative request or an OMP_NUM_THREADS that is not a thread count.
ComputeThreads choose_compute_threads(int requested, const char* omp_num_threads, unsigned cores);

// choose_compute_threads from this process's environment and core count, applied to libtorch.
ComputeThreads apply_compute_threads(int requested);

}  // namespace nexus
