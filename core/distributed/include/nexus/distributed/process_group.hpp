// Data-parallel plumbing on PyTorch's own c10d: a Gloo (CPU) or NCCL (GPU) process group over a
// TCPStore, joined the way torchrun's workers join (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace nexus::dist {

struct DistOptions {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // How long any collective (and joining) may wait for the other ranks: a rank that died makes
  // the others fail with an error after this, never hang.
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  // Gloo reduces in host memory and works with tensors anywhere (GPU tensors go through the CPU);
  // NCCL reduces on `device`, a CUDA device of this rank's own, and needs a libtorch built with it.
  enum class Backend { Gloo, Nccl };
  Backend backend = Backend::Gloo;
  c10::Device device{c10::kCPU};
};

// Whether this libtorch has c10d's NCCL process group (CUDA builds of libtorch 2.x do).
bool nccl_available();

// The torchrun variables; nullopt when WORLD_SIZE is not set. Throws std::invalid_argument naming
// the variable when one is malformed or inconsistent (RANK outside [0, WORLD_SIZE)).
std::optional<DistOptions> options_from_environment();

class ProcessGroup {
 public:
  // Joins the group: rank 0 hosts the store at master_addr:master_port. Throws std::runtime_error
  // saying who is missing when the other ranks do not arrive within the timeout.
  explicit ProcessGroup(const DistOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int world_size() const;

  // Averages the tensors over the ranks, in place. Tensors are packed into flat buckets of at most
  // bucket_bytes (one all-reduce per bucket, not per tensor); undefined tensors are skipped.
  void allreduce_mean(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes = int64_t(25) << 20);
  // Rank `root`'s values everywhere, in place.
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  // True on every rank when it is true on any (a synchronised decision, e.g. to stop early).
  bool any(bool flag);
  void barrier();

  // For waits of unknown length (one rank caching features the others need): every rank calls it
  // in the same order, with `ok` false where its work failed. Returns once all ranks have arrived,
  // however long that takes, true when none failed. It never hangs on a dead rank: every rank's
  // background heartbeat (a counter in the store, bumped every second) must keep moving, and one
  // that stands still for the timeout ends the wait with an error naming the rank.
  bool arrive(const std::string& stage, bool ok = true);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nexus::dist
