// libFuzzer harness: `--set key=value` overrides (config::apply_override) applied to a small
// composition tree, one override per input line. A ConfigError is the expected answer.
#include <cstddef>
#include <cstdint>
#include <string>

#include "nexus/config/diagnostic.hpp"
#include "nexus/config/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nexus::config::Node base = nexus::config::load_string(
      "nexus: 1\nname: demo\nshared_dim: 8\nteachers:\n  - name: t\n    plugin: linear\n    options: {width: 4}\n"
      "trainer: {lr: 0.001, steps: [1, 2, 3]}\n",
      "base.yaml");
  nexus::config::Node root = base;
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::size_t start = 0;
  while (start <= input.size()) {
    auto nl = input.find('\n', start);
    if (nl == std::string::npos) nl = input.size();
    try {
      nexus::config::apply_override(root, input.substr(start, nl - start));
    } catch (const nexus::config::ConfigError&) {
    }
    start = nl + 1;
  }
  return 0;
}
