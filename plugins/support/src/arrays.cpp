#include "nexus/support/arrays.hpp"

#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

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

// The dtypes NEXUS reads and writes, by their safetensors names.
const std::pair<const char*, torch::Dtype> kSafetensorsDtypes[] = {
    {"U8", torch::kUInt8},      {"I32", torch::kInt32},    {"I64", torch::kInt64}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"F32", torch::kFloat32}, {"F64", torch::kFloat64}};

bool safetensors_dtype(const std::string& name, torch::Dtype* out) {
  for (const auto& [n, d] : kSafetensorsDtypes)
    if (name == n) {
      *out = d;
      return true;
    }
  return false;
}

const char* safetensors_dtype_name(torch::Dtype dtype) {
  for (const auto& [n, d] : kSafetensorsDtypes)
    if (d == dtype) return n;
  return nullptr;
}

}  // namespace

std::map<std::string, torch::Tensor> read_safetensors(const std::shared_ptr<MappedFile>& file, Storage storage) {
  const auto fail = [&](const std::string& what) {
    return std::runtime_error("safetensors file '" + file->path() + "': " + what);
  };
  const std::size_t size = file->size();
  if (size < 8) throw fail("truncated (" + std::to_string(size) + " bytes, no header length)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file->data()[i];
  if (header_len > size - 8)
    throw fail("truncated or corrupt: header claims " + std::to_string(header_len) + " bytes but the file has " +
               std::to_string(size - 8) + " after the length");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(file->data() + 8, file->data() + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("corrupt JSON header: ") + e.what());
  }
  if (!header.is_object()) throw fail("corrupt JSON header: not an object");
  const std::size_t base = 8 + header_len, data_size = size - base;
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const auto bad = [&](const std::string& what) { return fail("tensor '" + name + "': " + what); };
    try {
      const auto dtype_name = info.at("dtype").get<std::string>();
      torch::Dtype dtype;
      if (!safetensors_dtype(dtype_name, &dtype)) throw bad("unsupported dtype " + dtype_name);
      const auto shape = info.at("shape").get<std::vector<int64_t>>();
      const auto offsets = info.at("data_offsets").get<std::vector<uint64_t>>();
      if (offsets.size() != 2 || offsets[0] > offsets[1]) throw bad("invalid data_offsets");
      uint64_t numel = 1;
      for (auto d : shape) {
        if (d < 0) throw bad("negative dimension in shape");
        numel *= uint64_t(d);
      }
      const uint64_t nbytes = offsets[1] - offsets[0];
      if (nbytes != numel * element_size(dtype))
        throw bad("data_offsets cover " + std::to_string(nbytes) + " bytes, shape and dtype need " +
                  std::to_string(numel * element_size(dtype)));
      if (offsets[1] > data_size)
        throw bad("truncated: data ends at byte " + std::to_string(offsets[1]) + " but only " +
                  std::to_string(data_size) + " bytes of data are present");
      out.emplace(name, view_or_copy(file, base + offsets[0], shape, dtype, storage));
    } catch (const nlohmann::json::exception& e) {
      throw bad(std::string("corrupt header entry: ") + e.what());
    }
  }
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
  const auto fail = [&](const std::string& what) { return std::runtime_error("'" + file->path() + "': " + what); };
  const uint8_t* d = file->data();
  const std::size_t size = file->size();
  if (size < 10 || std::memcmp(d, "\x93NUMPY", 6) != 0) throw fail("not a .npy file (no \\x93NUMPY magic)");
  const int major = d[6];
  if (major < 1 || major > 3) throw fail("unsupported .npy format version " + std::to_string(major));
  const std::size_t len_bytes = major == 1 ? 2 : 4, start = 8 + len_bytes;
  if (size < start) throw fail("truncated .npy header");
  std::size_t header_len = 0;
  for (std::size_t i = len_bytes; i-- > 0;) header_len = (header_len << 8) | d[8 + i];
  if (header_len > size - start) throw fail("truncated .npy header");
  const std::string header(reinterpret_cast<const char*>(d + start), header_len);

  // The header is a Python dict literal with three known keys; find each value after its key.
  const auto value_of = [&](const std::string& key) {
    const auto k = header.find("'" + key + "'");
    if (k == std::string::npos) throw fail(".npy header has no '" + key + "'");
    auto v = header.find(':', k);
    if (v == std::string::npos) throw fail("corrupt .npy header");
    v = header.find_first_not_of(" ", v + 1);
    if (v == std::string::npos) throw fail("corrupt .npy header");
    const char close = header[v] == '\'' ? '\'' : header[v] == '(' ? ')' : ',';
    const auto e = header.find(close, v + 1);
    if (e == std::string::npos) throw fail("corrupt .npy header");
    return header.substr(v, e - v + (close == ',' ? 0 : 1));
  };
  const auto descr = value_of("descr");
  torch::Dtype dtype;
  if (descr == "'|u1'" || descr == "'<u1'" || descr == "'u1'") dtype = torch::kUInt8;
  else if (descr == "'<f2'") dtype = torch::kFloat16;
  else if (descr == "'<f4'") dtype = torch::kFloat32;
  else throw fail("unsupported .npy dtype " + descr + " (feature files use little-endian u1, f2 or f4)");
  if (value_of("fortran_order").rfind("False", 0) != 0) throw fail(".npy array is in Fortran order; write it C-contiguous");
  std::vector<int64_t> shape;
  const auto tuple = value_of("shape");
  std::size_t i = 1;
  while (i < tuple.size()) {
    const auto j = tuple.find_first_of(",)", i);
    const auto item = tuple.substr(i, j - i);
    if (item.find_first_not_of(" ") != std::string::npos) {
      char* end = nullptr;
      const long long v = std::strtoll(item.c_str(), &end, 10);
      if (v < 0 || (end && *end != '\0' && *end != ' ' && *end != 'L')) throw fail("corrupt .npy shape " + tuple);
      shape.push_back(v);
    }
    i = j + 1;
  }
  uint64_t numel = 1;
  for (auto s : shape) numel *= uint64_t(s);
  const std::size_t offset = start + header_len;
  if (size - offset != numel * element_size(dtype))
    throw fail(".npy data has " + std::to_string(size - offset) + " bytes, the header's shape " + tuple + " needs " +
               std::to_string(numel * element_size(dtype)));
  return view_or_copy(file, offset, shape, dtype, storage);
}

}  // namespace nexus::support
