#include "nexus/support/arrays.hpp"

#include <cstring>
#include <stdexcept>
#include <vector>

#include "nexus/support/array_headers.hpp"

namespace nexus::support {

namespace {

std::size_t element_size(torch::Dtype d) { return c10::elementSize(d); }

torch::Tensor view_or_copy(const std::shared_ptr<MappedFile>& file, std::size_t offset, const std::vector<int64_t>& shape,
                           torch::Dtype dtype, Storage storage) {
  const auto options = torch::TensorOptions().dtype(dtype);
  uint8_t* p = const_cast<uint8_t*>(file->data()) + offset;
  const bool aligned = reinterpret_cast<std::uintptr_t>(p) % element_size(dtype) == 0;
  if (storage == Storage::Copy || !aligned || file->size() == 0) {
    auto t = torch::empty(shape, options);
    if (t.numel()) std::memcpy(t.data_ptr(), p, std::size_t(t.numel()) * element_size(dtype));
    return t;
  }
  // The tensor holds the mapping alive: it may outlive the teacher that read it.
  auto keep = file;
  return torch::from_blob(p, shape, [keep](void*) mutable { keep.reset(); }, options);
}

torch::Dtype torch_dtype(DType d) {
  switch (d) {
    case DType::U8: return torch::kUInt8;
    case DType::I32: return torch::kInt32;
    case DType::I64: return torch::kInt64;
    case DType::F16: return torch::kFloat16;
    case DType::BF16: return torch::kBFloat16;
    case DType::F32: return torch::kFloat32;
    case DType::F64: return torch::kFloat64;
  }
  throw std::logic_error("unknown dtype");
}

}  // namespace

std::map<std::string, torch::Tensor> read_safetensors(const std::shared_ptr<MappedFile>& file, Storage storage) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& e : parse_safetensors_header(file->data(), file->size(), file->path()))
    out.emplace(e.name, view_or_copy(file, e.begin, e.shape, torch_dtype(e.dtype), storage));
  return out;
}

torch::Tensor read_npy(const std::shared_ptr<MappedFile>& file, Storage storage) {
  const auto h = parse_npy_header(file->data(), file->size(), file->path());
  return view_or_copy(file, h.data_offset, h.shape, torch_dtype(h.dtype), storage);
}

}  // namespace nexus::support
