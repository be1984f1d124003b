#include "nexus/model/compute_threads.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "nexus/base/errors.hpp"

namespace nexus {

ComputeThreads choose_compute_threads(int requested, const char* omp_num_threads, unsigned cores) {
  if (requested < 0)
    throw InputError("--compute-threads must be 1 or more (0 chooses automatically), not " + std::to_string(requested));
  if (requested > 0) return {requested, "--compute-threads"};
  if (omp_num_threads && *omp_num_threads) {
    char* end = nullptr;
    const long n = std::strtol(omp_num_threads, &end, 10);
    // OpenMP also allows a list ("4,2") for nested levels; the first applies at the outer level.
    if (end == omp_num_threads || (*end && *end != ',') || n < 1 || n > 4096)
      throw InputError(std::string("OMP_NUM_THREADS='") + omp_num_threads + "' is not a positive thread count");
    return {int(n), "OMP_NUM_THREADS"};
  }
  const int all = int(std::max(1u, cores));
  return {all, "all " + std::to_string(all) + " cores"};
}

ComputeThreads apply_compute_threads(int requested) {
  auto chosen = choose_compute_threads(requested, std::getenv("OMP_NUM_THREADS"), std::thread::hardware_concurrency());
  at::set_num_threads(chosen.count);
  return chosen;
}

}  // namespace nexus
