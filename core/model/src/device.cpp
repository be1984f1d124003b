#include "nexus/model/device.hpp"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#if defined(NEXUS_TORCH_CUDA) && NEXUS_TORCH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace nexus {

namespace {

constexpr bool kBuiltWithCuda =
#if defined(NEXUS_TORCH_CUDA) && NEXUS_TORCH_CUDA
    true;
#else
    false;
#endif

// torch 2.4 replaced the CUDA-only autocast calls by ones that take the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled() { return at::autocast::is_autocast_enabled(at::kCUDA); }
void set_autocast(bool on) { at::autocast::set_autocast_enabled(at::kCUDA, on); }
at::ScalarType autocast_dtype() { return at::autocast::get_autocast_dtype(at::kCUDA); }
void set_autocast_dtype(at::ScalarType t) { at::autocast::set_autocast_dtype(at::kCUDA, t); }
#else
bool autocast_enabled() { return at::autocast::is_enabled(); }
void set_autocast(bool on) { at::autocast::set_enabled(on); }
at::ScalarType autocast_dtype() { return at::autocast::get_autocast_gpu_dtype(); }
void set_autocast_dtype(at::ScalarType t) { at::autocast::set_autocast_gpu_dtype(t); }
#endif

}  // namespace

c10::Device resolve_device(const std::string& spec, int local_rank) {
  const int64_t count = torch::cuda::is_available() ? int64_t(torch::cuda::device_count()) : 0;
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "auto")
    return count > 0 ? c10::Device(c10::kCUDA, c10::DeviceIndex(local_rank % count)) : c10::Device(c10::kCPU);
  if (spec.rfind("cuda", 0) != 0) throw DeviceError("device must be auto, cpu, cuda or cuda:N, got '" + spec + "'");
  if (!kBuiltWithCuda)
    throw DeviceError("device '" + spec + "' asked for, but this build's libtorch has no CUDA (Debian's libtorch-dev " +
                      "is CPU-only): use device: auto or cpu, or build against a CUDA libtorch (docs/gpu.md)");
  if (count == 0)
    throw DeviceError("device '" + spec + "' asked for, but no CUDA device is visible (check the driver with nvidia-smi " +
                      "and CUDA_VISIBLE_DEVICES); device: auto falls back to the CPU");
  if (spec == "cuda") return c10::Device(c10::kCUDA, c10::DeviceIndex(local_rank % count));
  const int64_t index = std::stoll(spec.substr(5));  // the config checker validated "cuda:N"
  if (index >= count)
    throw DeviceError("device '" + spec + "' asked for, but this machine has " + std::to_string(count) + " CUDA device" +
                      (count == 1 ? "" : "s") + " (cuda:0" + (count > 1 ? "..cuda:" + std::to_string(count - 1) : "") + ")");
  return c10::Device(c10::kCUDA, c10::DeviceIndex(index));
}

std::string describe_device(const c10::Device& device) {
  std::string out = device.str();
#if defined(NEXUS_TORCH_CUDA) && NEXUS_TORCH_CUDA
  if (device.is_cuda()) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device.has_index() ? device.index() : 0) == cudaSuccess)
      out += std::string(" (") + prop.name + ")";
  }
#endif
  return out;
}

bool bf16_autocast_active() { return autocast_enabled() && autocast_dtype() == at::kBFloat16; }

AutocastGuard::AutocastGuard(const c10::Device& device, bool enabled) {
  if (!enabled || !device.is_cuda()) return;
  active_ = true;
  was_enabled_ = autocast_enabled();
  was_dtype_ = int8_t(autocast_dtype());
  set_autocast(true);
  set_autocast_dtype(at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(was_enabled_);
  set_autocast_dtype(at::ScalarType(was_dtype_));
}

}  // namespace nexus
