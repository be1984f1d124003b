// Where the trainable part of a system runs, and its bf16 autocast on GPUs. The same code builds
// against Debian's CPU-only libtorch 1.13 and a CUDA libtorch 2.x; what differs is resolved here,
// at run time, and in the autocast API (which changed in 2.4).
#pragma once

#include <c10/core/Device.h>

#include <string>

#include "nexus/base/errors.hpp"

namespace nexus {

// A device the machine cannot provide ("cuda" on a CPU-only libtorch, "cuda:3" on a two-GPU box):
// bad input for this machine, reported with what it does have.
class DeviceError : public InputError {
 public:
  using InputError::InputError;
};

// "auto" -> a CUDA device when libtorch has CUDA and sees one, else the CPU. "cuda" without an
// index and "auto" pick device local_rank % device_count, so data-parallel workers on one machine
// spread over its GPUs. Throws DeviceError for a device that is not there.
c10::Device resolve_device(const std::string& spec, int local_rank = 0);

// "cpu", "cuda:0": how logs, --json and the docs name a device; with the GPU's name when known.
std::string describe_device(const c10::Device& device);

// Whether CUDA ops on this thread currently run under bf16 autocast.
bool bf16_autocast_active();

// bf16 autocast on CUDA for its lifetime (no-op when `enabled` is false or the device is not
// CUDA). Matmuls and linear layers run in bf16, reductions and softmax stay fp32; callers cast
// what leaves the region back to fp32.
class AutocastGuard {
 public:
  AutocastGuard(const c10::Device& device, bool enabled);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false, was_enabled_ = false;
  int8_t was_dtype_ = 0;
};

}  // namespace nexus
