// libFuzzer harness: a composition's YAML text (anchors, aliases, includes, merging) through the
// loader and the validator, as `nexus train FILE` reads it. A ConfigError is the expected answer
// to bad input; any other exception, a crash, a hang or a large allocation is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "nexus/config/composition.hpp"
#include "nexus/config/diagnostic.hpp"
#include "nexus/config/loader.hpp"

namespace {

// The built-in plugins' schemas (as in tests/config/test_config.cpp), so that validation gets
// past the plugin checks into the typed sections.
const nexus::config::PluginCatalog& catalog() {
  static const nexus::config::PluginCatalog c = {
      {"teacher", "torchscript", "1.0.0",
       "path:path!,modality:choice(text|image|audio|id|tensor)=tensor,input_shape:list,width:int"},
      {"tower", "linear", "1.0.0", "d_in:int!,d_out:int!,bias:bool=true"},
      {"tower", "mlp", "1.0.0", "d_in:int!,d_out:int!,hidden:int=256,layers:int=2,activation:choice(relu|gelu|tanh)=gelu"},
      {"router", "softmax", "1.0.0", "d_in:int!,n_experts:int!,temperature:float=1"},
      {"loss", "mse", "1.0.0", ""},
      {"loss", "cross_entropy", "1.0.0", "label_smoothing:float=0"},
  };
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    // Includes resolve against the harness's working folder (scripts/fuzz.sh runs it in the
    // corpus copy), so corpus entries may include one another.
    const nexus::config::Node root = nexus::config::load_string(text, "fuzz.yaml");
    nexus::config::Composition out;
    (void)nexus::config::validate(root, catalog(), out);
  } catch (const nexus::config::ConfigError&) {
  }
  return 0;
}
