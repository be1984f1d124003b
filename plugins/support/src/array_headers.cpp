#include "nexus/support/array_headers.hpp"

#include "nexus/support/json_fields.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace nexus::support {

namespace {

constexpr uint64_t kMaxIndex = uint64_t(std::numeric_limits<int64_t>::max());

// Elements times bytes per element, or false when that does not fit in int64 (the largest size a
// tensor can have), so that a shape like (2**62, 8) is refused instead of wrapping around.
bool byte_count(const std::vector<int64_t>& shape, DType dtype, uint64_t& bytes) {
  uint64_t n = dtype_size(dtype);
  for (const int64_t d : shape) {
    if (d < 0) return false;
    if (d != 0 && n > kMaxIndex / uint64_t(d)) return false;
    n *= uint64_t(d);
  }
  bytes = n;
  return true;
}

// A cursor over the .npy header, a Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }. Each step moves forward or throws,
// so parsing ends within the header's length.
class NpyDict {
 public:
  NpyDict(const std::string& text, const std::string& name) : s_(text), name_(name) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("'" + name_ + "': corrupt .npy header (" + what + " at byte " + std::to_string(i_) +
                             "): " + s_.substr(0, 200));
  }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool accept(char c) {
    skip_space();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c)) fail(std::string("expected '") + c + "'");
  }
  std::string string() {
    skip_space();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) fail("expected a quoted string");
    const char quote = s_[i_++];
    const auto end = s_.find(quote, i_);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(i_, end - i_);
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_space();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}})
      if (s_.compare(i_, std::strlen(word), word) == 0) {
        i_ += std::strlen(word);
        return value;
      }
    fail("expected True or False");
  }
  // A tuple of non-negative integers: (), (5,), (3, 4); Python 2 wrote longs as 4L.
  std::vector<int64_t> tuple() {
    std::vector<int64_t> shape;
    expect('(');
    while (!accept(')')) {
      if (!shape.empty()) {
        expect(',');
        if (accept(')')) break;
      }
      if (shape.size() == kMaxArrayDims) fail("more than " + std::to_string(kMaxArrayDims) + " dimensions (kMaxArrayDims)");
      shape.push_back(integer());
    }
    return shape;
  }
  bool at_end() {
    skip_space();
    return i_ == s_.size();
  }

 private:
  int64_t integer() {
    skip_space();
    if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') fail("expected a dimension (a non-negative integer)");
    uint64_t v = 0;
    for (; i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9'; ++i_) {
      v = v * 10 + uint64_t(s_[i_] - '0');
      if (v > kMaxIndex) fail("dimension too large");
    }
    if (i_ < s_.size() && s_[i_] == 'L') ++i_;
    return int64_t(v);
  }

  const std::string& s_;
  const std::string& name_;
  std::size_t i_ = 0;
};

DType npy_dtype(const std::string& descr, const std::string& name) {
  if (descr == "|u1" || descr == "<u1" || descr == "u1") return DType::U8;
  if (descr == "<f2") return DType::F16;
  if (descr == "<f4") return DType::F32;
  throw std::runtime_error("'" + name + "': unsupported .npy dtype '" + descr.substr(0, 40) +
                           "' (feature files use little-endian u1, f2 or f4)");
}

bool safetensors_dtype(const std::string& text, DType& out) {
  static const std::pair<const char*, DType> known[] = {{"U8", DType::U8},     {"I32", DType::I32}, {"I64", DType::I64},
                                                        {"F16", DType::F16},   {"BF16", DType::BF16},
                                                        {"F32", DType::F32},   {"F64", DType::F64}};
  for (const auto& [n, d] : known)
    if (text == n) {
      out = d;
      return true;
    }
  return false;
}

// One entry of the JSON header; `data_size` is the number of bytes after the header.
SafetensorsEntry safetensors_entry(const std::string& tensor, const nlohmann::json& info, std::size_t base,
                                   std::size_t data_size, const std::string& file) {
  const auto bad = [&](const std::string& what) {
    return std::runtime_error("safetensors file '" + file + "': tensor '" + tensor.substr(0, 200) + "': " + what);
  };
  if (!info.is_object()) throw bad("corrupt header entry: not an object");
  const auto dtype = info.find("dtype"), shape = info.find("shape"), offsets = info.find("data_offsets");
  if (dtype == info.end() || shape == info.end() || offsets == info.end())
    throw bad("corrupt header entry: needs dtype, shape and data_offsets");
  SafetensorsEntry e;
  e.name = tensor;
  if (!dtype->is_string() || !safetensors_dtype(dtype->get<std::string>(), e.dtype))
    throw bad("unsupported dtype " + json_shown(*dtype));
  if (!shape->is_array()) throw bad("corrupt header entry: shape is not a list");
  if (shape->size() > kMaxArrayDims)
    throw bad("shape has " + std::to_string(shape->size()) + " dimensions, more than " + std::to_string(kMaxArrayDims) +
              " (kMaxArrayDims)");
  for (const auto& d : *shape) {
    if (!d.is_number_integer()) throw bad("corrupt header entry: a dimension is not an integer");
    if (d.is_number_unsigned() ? d.get<uint64_t>() > kMaxIndex : d.get<int64_t>() < 0)
      throw bad("dimension " + d.dump() + " out of range");
    e.shape.push_back(d.get<int64_t>());
  }
  if (!offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned())
    throw bad("invalid data_offsets: expected [begin, end]");
  const uint64_t begin = (*offsets)[0].get<uint64_t>(), end = (*offsets)[1].get<uint64_t>();
  if (begin > end) throw bad("invalid data_offsets: begin " + std::to_string(begin) + " > end " + std::to_string(end));
  if (end > data_size)
    throw bad("truncated: data ends at byte " + std::to_string(end) + " but only " + std::to_string(data_size) +
              " bytes of data are present");
  uint64_t nbytes = 0;
  if (!byte_count(e.shape, e.dtype, nbytes))
    throw bad("shape " + shape_text(e.shape) + " has more elements than any tensor can hold");
  if (end - begin != nbytes)
    throw bad("data_offsets cover " + std::to_string(end - begin) + " bytes, shape and dtype need " +
              std::to_string(nbytes));
  e.begin = base + std::size_t(begin);
  e.end = base + std::size_t(end);
  return e;
}

}  // namespace

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::U8: return 1;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::I32:
    case DType::F32: return 4;
    case DType::I64:
    case DType::F64: return 8;
  }
  return 1;
}

NpyHeader parse_npy_header(const uint8_t* d, std::size_t size, const std::string& name) {
  const auto fail = [&](const std::string& what) { return std::runtime_error("'" + name + "': " + what); };
  if (size < 10 || std::memcmp(d, "\x93NUMPY", 6) != 0) throw fail("not a .npy file (no \\x93NUMPY magic)");
  const int major = d[6];
  if (major < 1 || major > 3) throw fail("unsupported .npy format version " + std::to_string(major));
  const std::size_t len_bytes = major == 1 ? 2 : 4, start = 8 + len_bytes;
  if (size < start) throw fail("truncated .npy header");
  std::size_t header_len = 0;
  for (std::size_t i = len_bytes; i-- > 0;) header_len = (header_len << 8) | d[8 + i];
  if (header_len > kMaxNpyHeaderBytes)
    throw fail(".npy header of " + std::to_string(header_len) + " bytes, more than " +
               std::to_string(kMaxNpyHeaderBytes) + " (kMaxNpyHeaderBytes)");
  if (header_len > size - start)
    throw fail("truncated .npy header: it claims " + std::to_string(header_len) + " bytes, the file has " +
               std::to_string(size - start) + " after the length");
  const std::string header(reinterpret_cast<const char*>(d + start), header_len);

  NpyHeader out;
  bool have_descr = false, have_order = false, have_shape = false;
  NpyDict dict(header, name);
  dict.expect('{');
  while (!dict.accept('}')) {
    if (have_descr || have_order || have_shape) {
      dict.expect(',');
      if (dict.accept('}')) break;
    }
    const std::string key = dict.string();
    dict.expect(':');
    if (key == "descr" && !have_descr) {
      out.dtype = npy_dtype(dict.string(), name);
      have_descr = true;
    } else if (key == "fortran_order" && !have_order) {
      if (dict.boolean()) throw fail(".npy array is in Fortran order; write it C-contiguous");
      have_order = true;
    } else if (key == "shape" && !have_shape) {
      out.shape = dict.tuple();
      have_shape = true;
    } else {
      dict.fail("unexpected or repeated key '" + key.substr(0, 40) + "'");
    }
  }
  if (!have_descr || !have_order || !have_shape) dict.fail("needs 'descr', 'fortran_order' and 'shape'");
  if (!dict.at_end()) dict.fail("text after the closing '}'");  // only padding may follow

  out.data_offset = start + header_len;
  uint64_t nbytes = 0;
  if (!byte_count(out.shape, out.dtype, nbytes))
    throw fail(".npy shape " + shape_text(out.shape) + " has more elements than any array can hold");
  if (size - out.data_offset != nbytes)
    throw fail(".npy data has " + std::to_string(size - out.data_offset) + " bytes, the header's shape " +
               shape_text(out.shape) + " needs " + std::to_string(nbytes));
  out.data_bytes = std::size_t(nbytes);
  return out;
}

std::vector<SafetensorsEntry> parse_safetensors_header(const uint8_t* data, std::size_t size, const std::string& name) {
  const auto fail = [&](const std::string& what) {
    return std::runtime_error("safetensors file '" + name + "': " + what);
  };
  if (size < 8) throw fail("truncated (" + std::to_string(size) + " bytes, no header length)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > size - 8)
    throw fail("truncated or corrupt: header claims " + std::to_string(header_len) + " bytes but the file has " +
               std::to_string(size - 8) + " after the length");
  if (header_len > kMaxSafetensorsHeaderBytes)
    throw fail("header of " + std::to_string(header_len) + " bytes, more than " +
               std::to_string(kMaxSafetensorsHeaderBytes) + " (kMaxSafetensorsHeaderBytes)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data + 8, data + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("corrupt JSON header: ") + e.what());
  }
  if (!header.is_object()) throw fail("corrupt JSON header: not an object");
  const std::size_t base = 8 + std::size_t(header_len), data_size = size - base;
  std::vector<SafetensorsEntry> out;
  for (const auto& [tensor, info] : header.items()) {
    if (tensor == "__metadata__") continue;
    out.push_back(safetensors_entry(tensor, info, base, data_size, name));
  }
  // Views of overlapping bytes would alias each other's data: safetensors forbids it.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : out) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      throw fail("tensors '" + by_offset[i - 1]->name.substr(0, 200) + "' and '" + by_offset[i]->name.substr(0, 200) +
                 "' overlap (data_offsets must not share bytes)");
  return out;
}

}  // namespace nexus::support
