#include "nexus/support/arrays.hpp"

#include <nlohmann/json.hpp>

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

// The dtypes NEXUS writes, by their safetensors names (the reader's are in array_headers.hpp).
const std::pair<const char*, torch::Dtype> kSafetensorsDtypes[] = {
    {"U8", torch::kUInt8},      {"I32", torch::kInt32},    {"I64", torch::kInt64}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"F32", torch::kFloat32}, {"F64", torch::kFloat64}};

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

const char* safetensors_dtype_name(torch::Dtype dtype) {
  for (const auto& [n, d] : kSafetensorsDtypes)
    if (d == dtype) return n;
  return nullptr;
}

}  // namespace

std::map<std::string, torch::Tensor> read_safetensors(const std::shared_ptr<MappedFile>& file, Storage storage) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& e : parse_safetensors_header(file->data(), file->size(), file->path()))
    out.emplace(e.name, view_or_copy(file, e.begin, e.shape, torch_dtype(e.dtype), storage));
  return out;
}

std::string safetensors_bytes(const std::map<std::string, torch::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian, as this host's memory");
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const char* dtype = safetensors_dtype_name(tensor.scalar_type());
    if (!dtype) throw std::runtime_error("cannot store tensor '" + name + "' as safetensors: dtype " +
                                         std::string(c10::toString(tensor.scalar_type())) + " is not supported");
    data.push_back(tensor.detach().to(torch::kCPU).contiguous());
    const uint64_t nbytes = data.back().nbytes();
    header[name] = {{"dtype", dtype}, {"shape", tensor.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  // Padded with spaces (as the format allows) so that the data starts 8-byte aligned and a
  // reader can view it in place.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(text.size()) >> (8 * i)) & 0xff);
  out.reserve(8 + text.size() + offset);
  out += text;
  for (const auto& t : data)
    if (t.nbytes()) out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
  return out;
}

torch::Tensor read_npy(const std::shared_ptr<MappedFile>& file, Storage storage) {
  const auto h = parse_npy_header(file->data(), file->size(), file->path());
  return view_or_copy(file, h.data_offset, h.shape, torch_dtype(h.dtype), storage);
}

}  // namespace nexus::support
