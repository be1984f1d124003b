// GGUF (version 3), llama.cpp's model file format, read without libtorch so that the fuzz harness
// (tests/fuzz/gguf_fuzz.cpp) runs the same code under sanitizers, and its tensors dequantised to
// float32. The reader is a parsed view of a file's bytes (usually a MappedFile): metadata is
// copied out, tensors are described by where their bytes lie. The design note at the top of
// gguf.cpp says how a hostile file is bounded; the limits are below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nexus::support {

// Far above real files (a 405B-parameter model has ~1,100 tensors and ~40 keys) and far below
// what would hurt; each is also bounded by the bytes the file has left.
constexpr uint64_t kMaxGgufTensors = 65536;
constexpr uint64_t kMaxGgufKeys = 65536;
// One string: a key, a value, an element of a string array (a chat template is a few kB).
constexpr std::size_t kMaxGgufStringBytes = std::size_t(16) << 20;
// The spec's limit on a tensor's name (ggml's GGML_MAX_NAME).
constexpr std::size_t kMaxGgufTensorNameBytes = 64;
// An array may hold arrays, which may not (the spec allows any depth; no file uses more than 1).
constexpr int kMaxGgufArrayDepth = 2;
// Arrays inside arrays, in the whole file: each is a GgufValue, several times the 12 bytes it
// takes in the file, so their number is capped rather than left proportional to the file.
constexpr uint64_t kMaxGgufNestedArrays = 65536;
constexpr std::size_t kMaxGgufDims = 4;  // GGML_MAX_DIMS
constexpr int64_t kMaxGgufElements = int64_t(1) << 40;
constexpr std::size_t kMaxGgufAlignment = 65536;
constexpr std::size_t kDefaultGgufAlignment = 32;

// Metadata value types, numbered as in the file (gguf.h's gguf_type).
enum class GgufValueType : uint32_t {
  Uint8 = 0, Int8 = 1, Uint16 = 2, Int16 = 3, Uint32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
  String = 8, Array = 9, Uint64 = 10, Int64 = 11, Float64 = 12
};
std::string gguf_value_type_name(GgufValueType type);  // "uint32", "string", ...

// ggml's tensor types (ggml.h), as gguf-py names them: "Q4_K"; "type 77" for an id ggml does not
// define (then the file cannot be read: its tensors cannot be sized).
std::string gguf_type_name(uint32_t type);
// True for the types dequantize() reads: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K.
bool gguf_can_dequantize(uint32_t type);

// One metadata value, held about as compactly as the file holds it (the 49,152 tokens of a
// vocabulary are one string and one vector of ends, not 49,152 std::strings), so that what a
// file makes the reader allocate stays proportional to its size.
struct GgufValue {
  GgufValueType type = GgufValueType::Uint8;          // Array for an array
  GgufValueType element_type = GgufValueType::Uint8;  // an array's elements' type; a scalar's own
  std::size_t count = 1;                              // an array's length; 1 for a scalar
  std::string bytes;              // numbers, bools: little-endian, one after another; strings: their texts back to back
  std::vector<std::size_t> ends;  // strings: where each text ends in `bytes`
  std::vector<GgufValue> arrays;  // an array of arrays: its elements

  bool is_array() const { return type == GgufValueType::Array; }
  // Element i (0 for a scalar). text: element type String. number: any number or bool.
  // as_uint / as_int: an integer type whose value fits, else false.
  std::string_view text(std::size_t i = 0) const;
  double number(std::size_t i = 0) const;
  bool as_uint(std::size_t i, uint64_t& out) const;
  bool as_int(std::size_t i, int64_t& out) const;
};

// One tensor. ne is in ggml's order: ne[0] is the contiguous (row) dimension, so the tensor's
// PyTorch shape is ne reversed. Its bytes are [offset, offset + bytes) counted from the start of
// the file.
struct GgufTensor {
  std::string name;
  std::vector<int64_t> ne;
  uint32_t type = 0;
  std::size_t offset = 0, bytes = 0;
  int64_t numel() const;
};

class GgufFile {
 public:
  uint32_t version = 3;
  std::size_t alignment = kDefaultGgufAlignment;
  std::size_t data_offset = 0;  // where the aligned tensor data section starts in the file

  const std::string& name() const { return name_; }
  // Keys and values in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;
  // Typed reads; each throws std::runtime_error naming the file and the key when the key is
  // absent or its value has another type. get_uint takes any integer type with a value >= 0,
  // get_ints any integer type that fits int64, get_float and get_floats float32 or float64.
  std::string get_string(const std::string& key) const;
  uint64_t get_uint(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<int64_t> get_ints(const std::string& key) const;
  std::vector<double> get_floats(const std::string& key) const;

  // Tensors in file order; they lie inside the file, aligned, and do not overlap.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* tensor(const std::string& name) const;

 private:
  friend GgufFile parse_gguf(const uint8_t* data, std::size_t size, const std::string& name);
  const GgufValue& need(const std::string& key, const char* what, bool ok(const GgufValue&)) const;

  std::string name_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, std::size_t, std::less<>> key_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

// `data`/`size`: the whole file; `name` starts every message ("'<name>': ...").
GgufFile parse_gguf(const uint8_t* data, std::size_t size, const std::string& name);

// Tensor `t` of the file `data`/`size` (what parse_gguf was given) as t.numel() floats into `out`,
// in ggml's element order. Throws naming the file, the tensor and its type when the type is not
// one NEXUS reads, or when `t` does not describe bytes of this file.
void dequantize(const GgufTensor& t, const uint8_t* data, std::size_t size, float* out, const std::string& name);

}  // namespace nexus::support
