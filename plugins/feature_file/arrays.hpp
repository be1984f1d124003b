// The two array formats a feature file shard may use, read from a memory-mapped file:
// - safetensors: 8-byte little-endian header length, a JSON header
//   {"name": {"dtype": "U8", "shape": [..], "data_offsets": [begin, end]}, ...}, then raw bytes;
// - .npy (NumPy format 1.0-3.0): "\x93NUMPY", version, header length, a Python dict literal
//   {'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }, then raw C-order bytes.
// Only what feature files need is supported: little-endian U8, F16 and F32 arrays.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace nexus_ff {

// A read-only view of a whole file, unmapped when the last user (including tensors that view it)
// is gone.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// Tensors that view `file` (or, when `copy` is set or the data is misaligned, own a copy of it).
// Throw std::runtime_error naming the file for anything malformed, truncated or unsupported.
std::map<std::string, torch::Tensor> read_safetensors(const std::shared_ptr<MappedFile>& file, bool copy);
torch::Tensor read_npy(const std::shared_ptr<MappedFile>& file, bool copy);

}  // namespace nexus_ff
