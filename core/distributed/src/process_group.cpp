#include "nexus/distributed/process_group.hpp"

// libtorch guards its Gloo process group behind this macro (Debian's libtorch is built with Gloo;
// the headers come from libgloo-dev).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#include <torch/version.h>
// CUDA builds of libtorch define USE_C10D_NCCL for their users (the torch CMake target does).
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace nexus::dist {

namespace {

std::optional<int> env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end || x < 0 || x > 1 << 20) throw std::invalid_argument(std::string(name) + "='" + v + "' is not a non-negative integer");
  return int(x);
}

void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what, int rank) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    // Gloo's own message names the socket; say what it means for the job.
    throw std::runtime_error(std::string(what) + " failed on rank " + std::to_string(rank) +
                             ": another worker died or stopped answering (" + e.what() + ")");
  }
}

}  // namespace

std::optional<DistOptions> options_from_environment() {
  const auto world = env_int("WORLD_SIZE");
  if (!world) return std::nullopt;
  DistOptions o;
  o.world_size = *world;
  if (o.world_size < 1) throw std::invalid_argument("WORLD_SIZE must be at least 1");
  o.rank = env_int("RANK").value_or(0);
  o.local_rank = env_int("LOCAL_RANK").value_or(o.rank);
  if (o.rank >= o.world_size)
    throw std::invalid_argument("RANK=" + std::to_string(o.rank) + " is outside WORLD_SIZE=" + std::to_string(o.world_size));
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) o.master_addr = a;
  o.master_port = env_int("MASTER_PORT").value_or(o.master_port);
  if (o.master_port < 1 || o.master_port > 65535) throw std::invalid_argument("MASTER_PORT must be a TCP port");
  return o;
}

// The process groups' common base: c10d::Backend since libtorch 2.0, c10d::ProcessGroup before.
#if TORCH_VERSION_MAJOR >= 2
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif

bool nccl_available() {
#ifdef USE_C10D_NCCL
  return true;
#else
  return false;
#endif
}

struct ProcessGroup::Impl {
  DistOptions options;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Collectives> group;
  bool nccl = false;
  int64_t stages = 0;  // arrive() calls so far: their store keys are unique per call
  // The heartbeat: a counter per rank in the store, bumped every second while the group lives.
  std::thread heartbeat;
  std::mutex heartbeat_mutex;
  std::condition_variable heartbeat_stop;
  bool stopping = false;
  static std::string alive_key(int rank) { return "nexus/alive/" + std::to_string(rank); }
  // Where a collective's tensors must be: the host for Gloo, this rank's GPU for NCCL.
  at::Tensor here(const at::Tensor& t) const {
    return (nccl ? t.to(options.device) : t.to(torch::kCPU)).contiguous();
  }
};

ProcessGroup::ProcessGroup(const DistOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  c10d::TCPStoreOptions so;
  so.port = uint16_t(options.master_port);
  so.isServer = options.rank == 0;
  so.numWorkers = size_t(options.world_size);
  so.waitWorkers = false;  // joining is checked below, with a message that says who is missing
  so.timeout = options.timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(options.master_addr, so);
    if (options.backend == DistOptions::Backend::Nccl) {
#ifdef USE_C10D_NCCL
      if (!options.device.is_cuda()) throw std::invalid_argument("NCCL needs a CUDA device, got " + options.device.str());
      c10::cuda::set_device(options.device.index());
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = options.timeout;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, options.rank, options.world_size, no);
      impl_->nccl = true;
#else
      throw std::invalid_argument("this libtorch has no NCCL process group (a CPU build); use the Gloo backend");
#endif
    } else {
      auto go = c10d::ProcessGroupGloo::Options::create(options.timeout);
      go->devices.push_back(options.master_addr == "127.0.0.1" || options.master_addr == "localhost"
                                ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                : c10d::ProcessGroupGloo::createDefaultDevice());
      impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, options.rank, options.world_size, go);
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(options.rank) + " of " + std::to_string(options.world_size) +
                             " could not join the group at " + options.master_addr + ":" +
                             std::to_string(options.master_port) + " within " +
                             std::to_string(options.timeout.count()) + " ms: " + e.what());
  }
  impl_->heartbeat = std::thread([impl = impl_.get()] {
    std::unique_lock<std::mutex> lock(impl->heartbeat_mutex);
    while (!impl->stopping) {
      try {
        impl->store->add(Impl::alive_key(impl->options.rank), 1);
      } catch (const std::exception&) {
        // The store is gone (rank 0 ended): whoever waits on us finds out by its own means.
      }
      // Several beats per timeout, so that a late one is never taken for a dead rank.
      impl->heartbeat_stop.wait_for(lock, std::clamp(impl->options.timeout / 4, std::chrono::milliseconds(100),
                                                     std::chrono::milliseconds(1000)));
    }
  });
}

ProcessGroup::~ProcessGroup() {
  {
    std::lock_guard<std::mutex> lock(impl_->heartbeat_mutex);
    impl_->stopping = true;
  }
  impl_->heartbeat_stop.notify_all();
  if (impl_->heartbeat.joinable()) impl_->heartbeat.join();
}

bool ProcessGroup::arrive(const std::string& stage, bool ok) {
  auto& store = *impl_->store;
  const int world = world_size();
  const std::string prefix = "nexus/stage/" + std::to_string(impl_->stages++) + "/";
  try {
    if (!ok) store.add(prefix + "failed", 1);
    store.add(prefix + "arrived", 1);
    std::vector<int64_t> beats(size_t(world), -1);
    std::vector<std::chrono::steady_clock::time_point> moved(size_t(world), std::chrono::steady_clock::now());
    auto last_check = std::chrono::steady_clock::time_point{};
    while (store.add(prefix + "arrived", 0) < world) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_check >= std::chrono::milliseconds(500)) {
        last_check = now;
        for (int r = 0; r < world; ++r) {
          const int64_t beat = store.add(Impl::alive_key(r), 0);
          if (beat != beats[size_t(r)]) {
            beats[size_t(r)] = beat;
            moved[size_t(r)] = now;
          } else if (now - moved[size_t(r)] > impl_->options.timeout) {
            throw std::runtime_error("rank " + std::to_string(r) + " stopped answering while rank " + std::to_string(rank()) +
                                     " waited for it at '" + stage + "' (no heartbeat for " +
                                     std::to_string(impl_->options.timeout.count() / 1000) + " s): it died, or its machine did");
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return store.add(prefix + "failed", 0) == 0;
  } catch (const c10::Error& e) {
    // The store lives in rank 0's process: it is unreachable when rank 0 is gone.
    throw std::runtime_error("rank " + std::to_string(rank()) + " lost the group while waiting at '" + stage +
                             "': rank 0 died or stopped answering (" + e.what_without_backtrace() + ")");
  }
}

int ProcessGroup::rank() const { return impl_->options.rank; }
int ProcessGroup::world_size() const { return impl_->options.world_size; }

void ProcessGroup::allreduce_mean(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  torch::NoGradGuard no_grad;
  const double scale = 1.0 / world_size();
  std::vector<at::Tensor> bucket;
  int64_t bytes = 0;
  auto flush = [&] {
    if (bucket.empty()) return;
    std::vector<at::Tensor> pieces;
    for (const auto& t : bucket) pieces.push_back(t.reshape(-1).to(torch::kFloat));
    // Gloo reduces host memory: a GPU bucket goes through the CPU (one copy each way per bucket).
    std::vector<at::Tensor> flat{impl_->here(torch::cat(pieces))};
    wait(impl_->group->allreduce(flat), "all-reduce", rank());
    flat[0].mul_(scale);
    int64_t offset = 0;
    for (auto& t : bucket) {
      t.copy_(flat[0].narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
    bucket.clear();
    bytes = 0;
  };
  for (const auto& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    const int64_t b = t.numel() * int64_t(sizeof(float));
    if (!bucket.empty() && bytes + b > bucket_bytes) flush();
    bucket.push_back(t);
    bytes += b;
  }
  flush();
}

void ProcessGroup::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    if (!t.defined()) continue;
    std::vector<at::Tensor> one{impl_->here(t)};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    wait(impl_->group->broadcast(one, bo), "broadcast", rank());
    if (!one[0].is_same(t)) t.copy_(one[0]);
  }
}

bool ProcessGroup::any(bool flag) {
  std::vector<at::Tensor> v{impl_->here(torch::full({1}, flag ? 1.0f : 0.0f))};
  c10d::AllreduceOptions ao;
  ao.reduceOp = c10d::ReduceOp::MAX;
  wait(impl_->group->allreduce(v, ao), "all-reduce", rank());
  return v[0].item<float>() > 0;
}

void ProcessGroup::barrier() {
  c10d::BarrierOptions bo;
  if (impl_->nccl) bo.device_ids = {int64_t(impl_->options.device.index())};
  wait(impl_->group->barrier(bo), "barrier", rank());
}

}  // namespace nexus::dist
