// libFuzzer harness: a whole GGUF file through parse_gguf, its metadata through the typed reads,
// then every tensor of a type NEXUS reads through dequantize. A std::runtime_error naming the
// file is the expected answer to bad input. The work is bounded by the input: a tensor's bytes
// lie inside it, and no supported type has more than 32 elements per 18 bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "nexus/support/gguf.hpp"

namespace {

// Every typed read of every key; the wrong type is an error, never a crash.
void read_metadata(const nexus::support::GgufFile& f) {
  for (const auto& [key, value] : f.metadata()) {
    for (int read = 0; read < 7; ++read) {
      try {
        switch (read) {
          case 0: f.get_string(key); break;
          case 1: f.get_uint(key); break;
          case 2: f.get_float(key); break;
          case 3: f.get_bool(key); break;
          case 4: f.get_strings(key); break;
          case 5: f.get_ints(key); break;
          default: f.get_floats(key); break;
        }
      } catch (const std::runtime_error&) {
      }
    }
    if (f.find(key) != &value) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = nexus::support::parse_gguf(data, size, "fuzz.gguf");
    read_metadata(f);
    if (f.alignment == 0 || (f.alignment & (f.alignment - 1)) != 0) __builtin_trap();
    std::vector<float> out;
    for (const auto& t : f.tensors()) {
      // The tensor's bytes must lie inside the input (ASan checks the touches) and be aligned.
      if (t.bytes == 0 || t.offset > size || t.bytes > size - t.offset) __builtin_trap();
      if ((t.offset - f.data_offset) % f.alignment != 0 || f.tensor(t.name) != &t) __builtin_trap();
      volatile uint8_t edge = data[t.offset];
      edge = data[t.offset + t.bytes - 1];
      (void)edge;
      if (!nexus::support::gguf_can_dequantize(t.type)) continue;
      if (t.numel() < 1 || uint64_t(t.numel()) > 2 * uint64_t(t.bytes)) __builtin_trap();
      out.assign(std::size_t(t.numel()), 0.0f);
      nexus::support::dequantize(t, data, size, out.data(), "fuzz.gguf");
    }
  } catch (const std::runtime_error&) {
  }
  return 0;
}
