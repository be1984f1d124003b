// libFuzzer harness: a whole safetensors file through the header parser that read_safetensors
// uses. A std::runtime_error naming the file is the expected answer to bad input.
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "nexus/support/array_headers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    for (const auto& e : nexus::support::parse_safetensors_header(data, size, "fuzz.safetensors")) {
      // Every tensor's bytes must lie inside the input: touch the first and the last (ASan checks).
      if (e.begin > e.end || e.end > size) __builtin_trap();
      if (e.end > e.begin) {
        volatile uint8_t edge = data[e.begin];
        edge = data[e.end - 1];
        (void)edge;
      }
    }
  } catch (const std::runtime_error&) {
  }
  return 0;
}
