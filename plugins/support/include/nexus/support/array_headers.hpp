// The headers of .npy and safetensors files (formats described in arrays.hpp), parsed without
// libtorch so that the fuzz harnesses (tests/fuzz) can run the same code under sanitizers. Every
// count and size is bounded and checked, with overflow-checked products, against the bytes that
// are actually there before anything is allocated; a hostile header is a std::runtime_error that
// names the file, never a loop, a read past the buffer or a large allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nexus::support {

// More dimensions than NumPy itself allows (NPY_MAXDIMS is 32; 64 since NumPy 2.0).
constexpr std::size_t kMaxArrayDims = 64;
// NumPy's np.load refuses headers over 10,000 bytes unless told otherwise; real ones are ~128.
constexpr std::size_t kMaxNpyHeaderBytes = 65536;
// A safetensors header is a JSON object of one entry per tensor: real ones are a few kB to a few
// hundred kB (a 70B-parameter model's shard lists ~700 tensors). Bounds what the JSON parser holds.
constexpr std::size_t kMaxSafetensorsHeaderBytes = std::size_t(16) << 20;

enum class DType { U8, I32, I64, F16, BF16, F32, F64 };
std::size_t dtype_size(DType dtype);

// "[2, 3]": how every reader names a shape in its errors.
std::string shape_text(const std::vector<int64_t>& shape);

// What a .npy header says: the array's bytes are [data_offset, data_offset + data_bytes), which is
// exactly the rest of the file.
struct NpyHeader {
  DType dtype = DType::F32;  // little-endian u1, f2 or f4 (what feature files use)
  std::vector<int64_t> shape;
  std::size_t data_offset = 0, data_bytes = 0;
};
// `data`/`size`: the whole file; `name` is used in messages ("'<name>': ...").
NpyHeader parse_npy_header(const uint8_t* data, std::size_t size, const std::string& name);

// One tensor of a safetensors file; its bytes are [begin, end) counted from the start of the file.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::size_t begin = 0, end = 0;
};
// Every tensor the header lists ("__metadata__" skipped), sorted by name; the tensors lie inside
// the file and do not overlap. Messages start "safetensors file '<name>': ".
std::vector<SafetensorsEntry> parse_safetensors_header(const uint8_t* data, std::size_t size, const std::string& name);

}  // namespace nexus::support
