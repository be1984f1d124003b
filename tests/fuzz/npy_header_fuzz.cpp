// libFuzzer harness: a whole .npy file through the header parser that read_npy uses. A
// std::runtime_error naming the file is the expected answer to bad input.
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "nexus/support/array_headers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = nexus::support::parse_npy_header(data, size, "fuzz.npy");
    // The array's bytes must be inside the input: touch the first and the last (ASan checks).
    if (h.data_offset + h.data_bytes != size) __builtin_trap();
    if (h.data_bytes) {
      volatile uint8_t edge = data[h.data_offset];
      edge = data[h.data_offset + h.data_bytes - 1];
      (void)edge;
    }
  } catch (const std::runtime_error&) {
  }
  return 0;
}
