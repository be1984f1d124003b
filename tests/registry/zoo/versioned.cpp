// One tower, built several times with a deliberately wrong handshake (see tests/CMakeLists.txt).
#include <nexus/plugin_api.hpp>
#include <torch/nn/modules/linear.h>

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
