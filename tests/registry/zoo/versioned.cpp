// One tower, built several times with a deliberately wrong handshake (see tests/CMakeLists.txt).
#include <nexus/plugin_api.hpp>
#include <torch/nn/modules/linear.h>

// The deliberately wrong handshake values (FAKE_* from tests/CMakeLists.txt) replace the real ones
// here, after the shared precompiled header, not as NEXUS_PLUGIN_BUILD_* on the command line: a
// command-line definition that the header tests voids the precompiled header, and each of these
// plugins then took 50 s to compile instead of 13.
#ifdef FAKE_ABI_MAJOR
#undef NEXUS_PLUGIN_BUILD_ABI_MAJOR
#define NEXUS_PLUGIN_BUILD_ABI_MAJOR FAKE_ABI_MAJOR
#endif
#ifdef FAKE_ABI_MINOR
#undef NEXUS_PLUGIN_BUILD_ABI_MINOR
#define NEXUS_PLUGIN_BUILD_ABI_MINOR FAKE_ABI_MINOR
#endif
#ifdef FAKE_TORCH_VERSION
#undef NEXUS_PLUGIN_BUILD_TORCH_VERSION
#define NEXUS_PLUGIN_BUILD_TORCH_VERSION FAKE_TORCH_VERSION
#endif
#ifdef FAKE_CXX11_ABI
#undef NEXUS_PLUGIN_BUILD_CXX11_ABI
#define NEXUS_PLUGIN_BUILD_CXX11_ABI FAKE_CXX11_ABI
#endif

namespace {
class Identity : public nexus::Tower {
 public:
  explicit Identity(const nexus::Options& o) : nexus::Tower("Identity"), d_(o.get_int("d")) {}
  torch::Tensor forward(const torch::Tensor& x) override { return x; }
  int64_t in_features() const override { return d_; }
  int64_t out_features() const override { return d_; }
 private:
  int64_t d_;
};
}  // namespace

NEXUS_PLUGIN_BEGIN(TEST_PLUGIN_NAME, "1.0.0")
NEXUS_TOWER(Identity, TEST_PLUGIN_NAME "_tower", "identity", "d:int=4", "")
NEXUS_PLUGIN_END()
