// Reading arrays out of memory-mapped files, for any plugin that loads tensors:
// - safetensors: an 8-byte little-endian header length, a JSON header
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {...}}
//   and the raw little-endian tensor bytes (model weights, feature-file shards);
// - .npy (NumPy format 1.0-3.0): "\x93NUMPY", version, header length, a Python dict literal
//   {'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }, then raw C-order bytes.
// Both check every offset and size against the file before touching the data, so a truncated or
// hostile file is an error naming the file (and the tensor), never a read past the mapping; the
// headers are parsed by array_headers.hpp, torch-free (its limits are listed there).
// safetensors is also what NEXUS writes when it stores tensors (checkpoints): tensors only, so
// reading one back can never run code, and any tool with the `safetensors` package opens it.
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>

#include "nexus/support/mapped_file.hpp"

namespace nexus::support {

// Whether tensors view the mapping (no copy; each holds the file mapped while it lives) or own a
// copy of their bytes. Misaligned data is always copied.
enum class Storage { View, Copy };

// Every tensor of a safetensors file, keeping its dtype: U8, I32, I64, F16, BF16, F32 or F64.
// Throws std::runtime_error "safetensors file '<path>': ..." for anything truncated, malformed or
// unsupported.
std::map<std::string, torch::Tensor> read_safetensors(const std::shared_ptr<MappedFile>& file, Storage storage);
inline std::map<std::string, torch::Tensor> load_safetensors(const std::string& path) {
  return read_safetensors(MappedFile::open(path), Storage::Copy);
}

// The bytes of a safetensors file holding `tensors` (any device and layout; stored as CPU,
// C-order, with the dtypes read_safetensors knows) and string `metadata` (its "__metadata__"),
// for the caller to write (write_file_atomically). Throws std::runtime_error naming a tensor of
// another dtype.
std::string safetensors_bytes(const std::map<std::string, torch::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// A little-endian u1, f2 or f4 .npy array in C order. Throws std::runtime_error naming the file.
torch::Tensor read_npy(const std::shared_ptr<MappedFile>& file, Storage storage);

}  // namespace nexus::support
