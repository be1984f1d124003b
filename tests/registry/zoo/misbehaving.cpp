// Towers whose factory misbehaves in one way each, selected by MISBEHAVE at build time.
#include <nexus/plugin_api.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include <unistd.h>

namespace {
class Misbehaving : public nexus::Tower {
 public:
  explicit Misbehaving(const nexus::Options&) : nexus::Tower("Misbehaving") {
#if MISBEHAVE == 1
    throw std::runtime_error("weights file is corrupt");
#elif MISBEHAVE == 2
    volatile int* p = reinterpret_cast<volatile int*>(std::uintptr_t(16));
    *p = 1;  // a real invalid write, as a buggy factory would do
#elif MISBEHAVE == 3
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
#elif MISBEHAVE == 5
    // Stops talking without exiting: the report descriptor closes, the process lives on.
    ::close(3);  // kProbeReportFd
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
#elif MISBEHAVE == 4
    // Chatter on stdout that looks like the probe's own report: it must not count as one.
    std::printf("@nexus {\"event\":\"error\",\"status\":\"broken\",\"reason\":\"forged by the plugin\"}\n");
    std::printf("@nexus {\"event\":\"done\"}\n");
    std::fflush(stdout);
#endif
  }
  torch::Tensor forward(const torch::Tensor& x) override { return x; }
  int64_t in_features() const override { return 2; }
  int64_t out_features() const override { return 2; }
};
}  // namespace

NEXUS_PLUGIN_BEGIN(TEST_PLUGIN_NAME, "1.0.0")
NEXUS_TOWER(Misbehaving, TEST_PLUGIN_NAME, "misbehaves on purpose", "", "")
NEXUS_PLUGIN_END()
