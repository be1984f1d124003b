// Reader for the safetensors format: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {...}}
// and the raw little-endian tensor bytes. The file is memory-mapped and every tensor is copied
// into its own torch tensor, so nothing refers to the mapping afterwards.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>

namespace nexus_hf {

// Loads every tensor (F32, F16, BF16, F64, I64, I32) of `path`, keeping its dtype. Throws
// std::runtime_error naming the file (and the tensor) for a missing, truncated or corrupt file.
std::map<std::string, torch::Tensor> load_safetensors(const std::string& path);

}  // namespace nexus_hf
