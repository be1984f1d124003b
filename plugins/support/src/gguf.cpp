// GGUF version 3 (ggml's docs/gguf.md): "GGUF", u32 version, u64 tensor count, u64 key count;
// the keys, each a string, a u32 value type and the value (an array is a u32 element type, a u64
// length and the elements); the tensor infos, each a name, u32 n_dims, u64 ne[n_dims], u32 ggml
// type and a u64 offset into the data section, which starts at the next multiple of
// general.alignment (default 32). Strings are a u64 length and that many bytes. Little-endian.
//
// Design note: how a hostile file is bounded.
// - Everything is read through one Cursor that checks each length against the bytes left before
//   reading or allocating; every count is checked against the bytes its smallest possible entries
//   would need (13 per key, 32 per tensor info, the element size per array element: 8 per string,
//   12 per nested array), so a claimed 2^60 elements is an error, not a reserve(). Each loop step
//   consumes bytes, so parsing ends within the file's length.
// - Values are held as compactly as the file holds them (GgufValue): numbers as their bytes,
//   string arrays as one string and a vector of ends. What the reader allocates is then about the
//   file's size, except arrays inside arrays (a GgufValue each), whose number is capped in all.
// - Tensor types: ggml's id table says each type's block (elements) and size (bytes), so a
//   tensor's bytes are computed, never trusted, and checked to lie inside the file, aligned and
//   not overlapping another tensor. A type ggml defines but NEXUS does not dequantise (Q5_K,
//   IQ2_XXS, ...) can be sized, so the file is accepted and described, and dequantize() refuses
//   the tensor by name. An id ggml does not define (or no longer does: the removed Q4_0_4_4
//   family) cannot be sized, so nothing after it could be checked: the file is refused.
// - Shapes: 1 to 4 dimensions, each >= 1, the product overflow-checked and at most 2^40
//   elements; ne[0] a multiple of the type's block, as ggml requires.
// - Every message starts with the file's name; key and tensor names in messages are clipped.
// - Dequantisation follows ggml-quants.c's reference dequantize_row_* (and gguf-py's
//   quants.py, which matches it); the build compiles this file with -ffp-contract=off so that no
//   multiply-add is fused and the floats are exactly those two compute.
#include "nexus/support/gguf.hpp"

#include "nexus/support/array_headers.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <limits>
#include <stdexcept>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader copies little-endian floats as they are: it needs a little-endian host"
#endif

namespace nexus::support {

namespace {

// ggml's types by id (ggml.h), with gguf-py's names and GGML_QUANT_SIZES: elements per block and
// bytes per block. Unnamed ids are undefined or removed.
struct TypeInfo {
  const char* name;
  uint32_t block, size;
};
constexpr uint32_t QK_K = 256;
constexpr TypeInfo kTypes[] = {
    {"F32", 1, 4},                                  // 0
    {"F16", 1, 2},                                  // 1
    {"Q4_0", 32, 2 + 16},                           // 2
    {"Q4_1", 32, 2 + 2 + 16},                       // 3
    {nullptr, 0, 0},                                // 4: Q4_2, removed before GGUF
    {nullptr, 0, 0},                                // 5: Q4_3, removed before GGUF
    {"Q5_0", 32, 2 + 4 + 16},                       // 6
    {"Q5_1", 32, 2 + 2 + 4 + 16},                   // 7
    {"Q8_0", 32, 2 + 32},                           // 8
    {"Q8_1", 32, 4 + 4 + 32},                       // 9
    {"Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4},   // 10
    {"Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12},   // 11
    {"Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12},          // 12
    {"Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12},  // 13
    {"Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16},  // 14
    {"Q8_K", QK_K, 4 + QK_K + QK_K / 8},            // 15
    {"IQ2_XXS", QK_K, 2 + QK_K / 4},                // 16
    {"IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32},     // 17
    {"IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8},     // 18
    {"IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16},      // 19
    {"IQ4_NL", 32, 2 + 16},                         // 20
    {"IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4},  // 21
    {"IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16},      // 22
    {"IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64},  // 23
    {"I8", 1, 1},                                   // 24
    {"I16", 1, 2},                                  // 25
    {"I32", 1, 4},                                  // 26
    {"I64", 1, 8},                                  // 27
    {"F64", 1, 8},                                  // 28
    {"IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32},  // 29
    {"BF16", 1, 2},                                 // 30
    {nullptr, 0, 0},                                // 31: Q4_0_4_4, removed
    {nullptr, 0, 0},                                // 32: Q4_0_4_8, removed
    {nullptr, 0, 0},                                // 33: Q4_0_8_8, removed
    {"TQ1_0", QK_K, 2 + 4 * 13},                    // 34
    {"TQ2_0", QK_K, 2 + 64},                        // 35
    {nullptr, 0, 0},                                // 36: IQ4_NL_4_4, removed
    {nullptr, 0, 0},                                // 37: IQ4_NL_4_8, removed
    {nullptr, 0, 0},                                // 38: IQ4_NL_8_8, removed
    {"MXFP4", 32, 1 + 16},                          // 39
    {"NVFP4", 64, 4 + 32},                          // 40
    {"Q1_0", 128, 2 + 16},                          // 41
};
enum : uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, Q4_K = 12, Q6_K = 14, BF16 = 30 };

const TypeInfo* type_info(uint32_t type) {
  if (type >= std::size(kTypes) || !kTypes[type].name) return nullptr;
  return &kTypes[type];
}

std::string clip(const std::string& s) { return s.size() > 200 ? s.substr(0, 200) + "..." : s; }
std::string quoted(const std::string& s) { return "'" + clip(s) + "'"; }

uint64_t read_le(const uint8_t* p, std::size_t n) {
  uint64_t v = 0;
  for (std::size_t i = n; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

// The product of a shape's dimensions, or false when a dimension is below 1, or the product is
// above kMaxGgufElements.
bool checked_numel(const std::vector<int64_t>& ne, int64_t& n) {
  n = 1;
  for (const int64_t d : ne) {
    if (d < 1 || d > kMaxGgufElements / n) return false;
    n *= d;
  }
  return true;
}

// Reads forward through the file; every read is checked against the bytes left first.
class Cursor {
 public:
  Cursor(const uint8_t* data, std::size_t size, const std::string& name) : d_(data), size_(size), name_(name) {}
  std::size_t pos() const { return pos_; }
  std::size_t left() const { return size_ - pos_; }
  std::runtime_error error(const std::string& what) const { return std::runtime_error("'" + name_ + "': " + what); }

  const uint8_t* take(std::size_t n, const std::string& what) {
    if (n > left())
      throw error("truncated at byte " + std::to_string(pos_) + ": " + what + " needs " + std::to_string(n) +
                  " bytes, the file has " + std::to_string(left()) + " left");
    const uint8_t* p = d_ + pos_;
    pos_ += n;
    return p;
  }
  uint32_t u32(const std::string& what) { return uint32_t(read_le(take(4, what), 4)); }
  uint64_t u64(const std::string& what) { return read_le(take(8, what), 8); }
  // A GGUF string: its length, checked against the file and `max` (named `limit` in messages).
  // `what()` describes it, and is only called for a message: a vocabulary is 49,152 strings.
  template <typename What>
  std::string_view text(const What& what, std::size_t max, const char* limit) {
    if (left() < 8) take(8, "the length of " + what());
    const uint64_t n = read_le(d_ + pos_, 8);
    pos_ += 8;
    if (n > left())
      throw error("truncated at byte " + std::to_string(pos_) + ": " + what() + " is " + std::to_string(n) +
                  " bytes long, the file has " + std::to_string(left()) + " left");
    if (n > max)
      throw error(what() + " is " + std::to_string(n) + " bytes long, more than " + std::to_string(max) + " (" +
                  limit + ")");
    const char* p = reinterpret_cast<const char*>(d_ + pos_);
    pos_ += std::size_t(n);
    return {p, std::size_t(n)};
  }

 private:
  const uint8_t* d_;
  std::size_t size_, pos_ = 0;
  const std::string& name_;
};

std::size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::Uint8:
    case GgufValueType::Int8:
    case GgufValueType::Bool: return 1;
    case GgufValueType::Uint16:
    case GgufValueType::Int16: return 2;
    case GgufValueType::Uint32:
    case GgufValueType::Int32:
    case GgufValueType::Float32: return 4;
    case GgufValueType::Uint64:
    case GgufValueType::Int64:
    case GgufValueType::Float64: return 8;
    case GgufValueType::String:
    case GgufValueType::Array: return 0;
  }
  return 0;
}

bool is_integer(GgufValueType t) {
  return scalar_size(t) != 0 && t != GgufValueType::Bool && t != GgufValueType::Float32 &&
         t != GgufValueType::Float64;
}
bool is_signed(GgufValueType t) {
  return t == GgufValueType::Int8 || t == GgufValueType::Int16 || t == GgufValueType::Int32 || t == GgufValueType::Int64;
}
bool is_float(GgufValueType t) { return t == GgufValueType::Float32 || t == GgufValueType::Float64; }

// A value's type in words, for messages: "a uint32", "an array of string".
std::string describe(const GgufValue& v) {
  const std::string type =
      v.is_array() ? "array of " + gguf_value_type_name(v.element_type) : gguf_value_type_name(v.type);
  return (type[0] == 'a' || type[0] == 'i' ? "an " : "a ") + type;
}

// The metadata section: keys and their values, arrays nested at most kMaxGgufArrayDepth deep.
class MetadataReader {
 public:
  explicit MetadataReader(Cursor& c) : c_(c) {}

  GgufValue value(uint32_t type, const std::string& key) {
    const auto t = value_type(type, key);
    GgufValue v;
    v.type = v.element_type = t;
    if (t == GgufValueType::Array) {
      array(v, key, 1);
    } else if (t == GgufValueType::String) {
      const auto s = c_.text([&] { return "the value of key " + quoted(key); }, kMaxGgufStringBytes,
                             "kMaxGgufStringBytes");
      v.bytes.assign(s.data(), s.size());
      v.ends.push_back(v.bytes.size());
    } else {
      v.bytes = scalars(t, 1, key);
    }
    return v;
  }

 private:
  GgufValueType value_type(uint32_t type, const std::string& key) const {
    if (type > uint32_t(GgufValueType::Float64))
      throw c_.error("metadata key " + quoted(key) + " has value type " + std::to_string(type) +
                     ", which GGUF does not define");
    return GgufValueType(type);
  }

  std::string scalars(GgufValueType t, std::size_t n, const std::string& key) {
    const uint8_t* p = c_.take(n * scalar_size(t), "the value of key " + quoted(key));
    if (t == GgufValueType::Bool)
      for (std::size_t i = 0; i < n; ++i)
        if (p[i] > 1)
          throw c_.error("metadata key " + quoted(key) + " holds the bool " + std::to_string(p[i]) +
                         " (a bool is 0 or 1)");
    return std::string(reinterpret_cast<const char*>(p), n * scalar_size(t));
  }

  // The array `v` (its type already read as Array), at nesting `depth` (1: a key's value).
  void array(GgufValue& v, const std::string& key, int depth) {
    const auto t = value_type(c_.u32("the element type of key " + quoted(key)), key);
    const uint64_t n = c_.u64("the array length of key " + quoted(key));
    if (t == GgufValueType::Array && depth >= kMaxGgufArrayDepth)
      throw c_.error("metadata key " + quoted(key) + " nests arrays more than " + std::to_string(kMaxGgufArrayDepth) +
                     " deep (kMaxGgufArrayDepth)");
    // The least each element takes in the file: a string's length, an array's type and length.
    const std::size_t least = t == GgufValueType::String ? 8 : t == GgufValueType::Array ? 12 : scalar_size(t);
    if (n > c_.left() / least)
      throw c_.error("truncated at byte " + std::to_string(c_.pos()) + ": metadata key " + quoted(key) +
                     " claims an array of " + std::to_string(n) + " " + gguf_value_type_name(t) +
                     " values, which need at least " + std::to_string(least) + " bytes each; the file has " +
                     std::to_string(c_.left()) + " left");
    v.element_type = t;
    v.count = std::size_t(n);
    if (t == GgufValueType::String) {
      v.ends.reserve(v.count);
      for (std::size_t i = 0; i < v.count; ++i) {
        const auto s = c_.text([&] { return "element " + std::to_string(i) + " of key " + quoted(key); },
                               kMaxGgufStringBytes, "kMaxGgufStringBytes");
        v.bytes.append(s.data(), s.size());
        v.ends.push_back(v.bytes.size());
      }
    } else if (t == GgufValueType::Array) {
      nested_ += n;
      if (nested_ > kMaxGgufNestedArrays)
        throw c_.error("metadata key " + quoted(key) + ": more than " + std::to_string(kMaxGgufNestedArrays) +
                       " arrays inside arrays in the file (kMaxGgufNestedArrays)");
      v.arrays.resize(v.count);
      for (auto& inner : v.arrays) {
        inner.type = GgufValueType::Array;
        array(inner, key, depth + 1);
      }
    } else {
      v.bytes = scalars(t, v.count, key);
    }
  }

  Cursor& c_;
  uint64_t nested_ = 0;
};

std::size_t read_alignment(const GgufFile& f, const Cursor& c) {
  const GgufValue* v = f.find("general.alignment");
  if (!v) return kDefaultGgufAlignment;
  uint64_t a = 0;
  if (v->type != GgufValueType::Uint32 || !v->as_uint(0, a))
    throw c.error("general.alignment is " + describe(*v) + "; it must be a uint32");
  if (a == 0 || (a & (a - 1)) != 0 || a > kMaxGgufAlignment)
    throw c.error("general.alignment is " + std::to_string(a) + "; it must be a power of two up to " +
                  std::to_string(kMaxGgufAlignment) + " (kMaxGgufAlignment)");
  return std::size_t(a);
}

// One tensor info; its offset is left relative to the data section.
GgufTensor read_tensor_info(Cursor& c, std::size_t index) {
  GgufTensor t;
  t.name = std::string(c.text([&] { return "the name of tensor " + std::to_string(index); },
                              kMaxGgufTensorNameBytes, "kMaxGgufTensorNameBytes"));
  const std::string what = "tensor " + quoted(t.name);
  const uint32_t n_dims = c.u32("the number of dimensions of " + what);
  if (n_dims < 1 || n_dims > kMaxGgufDims)
    throw c.error(what + " has " + std::to_string(n_dims) + " dimensions; GGUF tensors have 1 to " +
                  std::to_string(kMaxGgufDims));
  for (uint32_t i = 0; i < n_dims; ++i) {
    const uint64_t d = c.u64("dimension " + std::to_string(i) + " of " + what);
    if (d < 1 || d > uint64_t(kMaxGgufElements))
      throw c.error(what + " has dimension " + std::to_string(i) + " of " + std::to_string(d) +
                    " elements (each must be 1 to 2^40)");
    t.ne.push_back(int64_t(d));
  }
  int64_t numel = 0;
  if (!checked_numel(t.ne, numel))
    throw c.error(what + " has shape " + shape_text(t.ne) + ", more than 2^40 elements (kMaxGgufElements)");
  t.type = c.u32("the type of " + what);
  const TypeInfo* info = type_info(t.type);
  if (!info)
    throw c.error(what + " has " + gguf_type_name(t.type) +
                  ", which ggml does not define, so its size cannot be known and the file cannot be read");
  if (t.ne[0] % info->block != 0)
    throw c.error(what + " has rows of " + std::to_string(t.ne[0]) + " elements, not a multiple of " + info->name +
                  "'s block of " + std::to_string(info->block));
  t.bytes = std::size_t(numel / info->block) * info->size;
  t.offset = std::size_t(c.u64("the offset of " + what));
  return t;
}

// Places the tensors in the file: aligned offsets, inside it, not overlapping.
void place_tensors(std::vector<GgufTensor>& tensors, std::size_t data_offset, std::size_t alignment,
                   std::size_t size, const Cursor& c) {
  const std::size_t data_size = data_offset <= size ? size - data_offset : 0;
  for (auto& t : tensors) {
    const std::string what = "tensor " + quoted(t.name);
    if (t.offset % alignment != 0)
      throw c.error(what + " starts at offset " + std::to_string(t.offset) +
                    " of the data section, not a multiple of the alignment " + std::to_string(alignment));
    if (t.offset > data_size || t.bytes > data_size - t.offset)
      throw c.error("truncated: " + what + " (" + std::to_string(t.bytes) + " bytes at offset " +
                    std::to_string(t.offset) + " of the data section) ends past the end of the file; the data "
                    "section has " + std::to_string(data_size) + " bytes");
    t.offset += data_offset;
  }
  // Views of overlapping bytes would alias each other's data; ggml's writers never overlap.
  std::vector<const GgufTensor*> by_offset;
  for (const auto& t : tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->offset < by_offset[i - 1]->offset + by_offset[i - 1]->bytes)
      throw c.error("tensors " + quoted(by_offset[i - 1]->name) + " and " + quoted(by_offset[i]->name) +
                    " overlap (their bytes must not be shared)");
}

// ---- dequantisation (ggml-quants.c's dequantize_row_*) ----

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }

// IEEE half to float, exactly (NaN payloads kept, as NumPy does).
float fp16(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0x1f) return from_bits(sign | 0x7f800000u | (man << 13));
  if (exp != 0) return from_bits(sign | ((exp + 112) << 23) | (man << 13));
  const float v = float(man) * 0x1p-24f;  // zero or subnormal: exact
  return sign ? -v : v;
}

void deq_f32(const uint8_t* x, int64_t n, float* y) { std::memcpy(y, x, std::size_t(n) * 4); }
void deq_f16(const uint8_t* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp16(le16(x + 2 * i));
}
void deq_bf16(const uint8_t* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = from_bits(uint32_t(le16(x + 2 * i)) << 16);
}

// block_q8_0: fp16 d, int8 qs[32].
void deq_q8_0(const uint8_t* x, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, x += 34, y += 32) {
    const float d = fp16(le16(x));
    for (int j = 0; j < 32; ++j) y[j] = float(int8_t(x[2 + j])) * d;
  }
}

// block_q4_0: fp16 d, qs[16]; low nibbles are elements 0..15, high nibbles 16..31, offset by 8.
void deq_q4_0(const uint8_t* x, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, x += 18, y += 32) {
    const float d = fp16(le16(x));
    for (int j = 0; j < 16; ++j) {
      y[j] = float(int(x[2 + j] & 0x0f) - 8) * d;
      y[j + 16] = float(int(x[2 + j] >> 4) - 8) * d;
    }
  }
}

// block_q4_1: fp16 d, fp16 m, qs[16]; element = q * d + m.
void deq_q4_1(const uint8_t* x, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, x += 20, y += 32) {
    const float d = fp16(le16(x)), m = fp16(le16(x + 2));
    for (int j = 0; j < 16; ++j) {
      y[j] = float(x[4 + j] & 0x0f) * d + m;
      y[j + 16] = float(x[4 + j] >> 4) * d + m;
    }
  }
}

// Q4_K's 8 six-bit scales and mins packed in 12 bytes (ggml's get_scale_min_k4).
void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = uint8_t((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// block_q4_K: fp16 d, fp16 dmin, scales[12], qs[128]: 8 sub-blocks of 32, each d*sc*q - dmin*m.
void deq_q4_k(const uint8_t* x, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, x += 144) {
    const float d = fp16(le16(x)), dmin = fp16(le16(x + 2));
    const uint8_t* scales = x + 4;
    const uint8_t* q = x + 16;
    for (int is = 0; is < 8; is += 2, q += 32) {
      uint8_t sc, m;
      scale_min_k4(is, scales, sc, m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      scale_min_k4(is + 1, scales, sc, m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

// block_q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], fp16 d; 6-bit q - 32.
void deq_q6_k(const uint8_t* x, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, x += 210) {
    const float d = fp16(le16(x + 208));
    const uint8_t* ql = x;
    const uint8_t* qh = x + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
    for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, sc += 8, y += 128)
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = int((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = int((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * float(sc[is]) * float(q1);
        y[l + 32] = d * float(sc[is + 2]) * float(q2);
        y[l + 64] = d * float(sc[is + 4]) * float(q3);
        y[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
  }
}

// The kernel for a type, over a number of blocks; null for a type NEXUS does not read.
using Kernel = void (*)(const uint8_t*, int64_t, float*);
Kernel kernel(uint32_t type) {
  switch (type) {
    case F32: return deq_f32;
    case F16: return deq_f16;
    case BF16: return deq_bf16;
    case Q8_0: return deq_q8_0;
    case Q4_0: return deq_q4_0;
    case Q4_1: return deq_q4_1;
    case Q4_K: return deq_q4_k;
    case Q6_K: return deq_q6_k;
    default: return nullptr;
  }
}

}  // namespace

std::string gguf_value_type_name(GgufValueType type) {
  static const char* const names[] = {"uint8", "int8",  "uint16", "int16",  "uint32", "int32", "float32",
                                      "bool",  "string", "array", "uint64", "int64",  "float64"};
  const auto i = uint32_t(type);
  return i < std::size(names) ? names[i] : "value type " + std::to_string(i);
}

std::string gguf_type_name(uint32_t type) {
  const TypeInfo* info = type_info(type);
  return info ? info->name : "type " + std::to_string(type);
}

bool gguf_can_dequantize(uint32_t type) { return kernel(type) != nullptr; }

std::string_view GgufValue::text(std::size_t i) const {
  if (element_type != GgufValueType::String || i >= ends.size()) throw std::out_of_range("GgufValue::text");
  const std::size_t begin = i ? ends[i - 1] : 0;
  return std::string_view(bytes).substr(begin, ends[i] - begin);
}

double GgufValue::number(std::size_t i) const {
  const std::size_t s = scalar_size(element_type);
  if (s == 0 || i >= count || (i + 1) * s > bytes.size()) throw std::out_of_range("GgufValue::number");
  const uint64_t raw = read_le(reinterpret_cast<const uint8_t*>(bytes.data()) + i * s, s);
  if (element_type == GgufValueType::Float32) return double(from_bits(uint32_t(raw)));
  if (element_type == GgufValueType::Float64) {
    double f;
    std::memcpy(&f, &raw, 8);
    return f;
  }
  if (is_signed(element_type)) {
    const unsigned shift = unsigned(64 - 8 * s);  // sign-extend from s bytes
    return double(int64_t(raw << shift) >> shift);
  }
  return double(raw);
}

bool GgufValue::as_uint(std::size_t i, uint64_t& out) const {
  const std::size_t s = scalar_size(element_type);
  if (!is_integer(element_type) || i >= count || (i + 1) * s > bytes.size()) return false;
  const uint64_t raw = read_le(reinterpret_cast<const uint8_t*>(bytes.data()) + i * s, s);
  if (is_signed(element_type) && (raw >> (8 * s - 1)) != 0) return false;  // negative
  out = raw;
  return true;
}

bool GgufValue::as_int(std::size_t i, int64_t& out) const {
  const std::size_t s = scalar_size(element_type);
  if (!is_integer(element_type) || i >= count || (i + 1) * s > bytes.size()) return false;
  const uint64_t raw = read_le(reinterpret_cast<const uint8_t*>(bytes.data()) + i * s, s);
  if (is_signed(element_type)) {
    const unsigned shift = unsigned(64 - 8 * s);
    out = int64_t(raw << shift) >> shift;
    return true;
  }
  if (raw > uint64_t(std::numeric_limits<int64_t>::max())) return false;
  out = int64_t(raw);
  return true;
}

int64_t GgufTensor::numel() const {
  int64_t n = 0;
  return checked_numel(ne, n) ? n : -1;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  const auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufTensor* GgufFile::tensor(const std::string& name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue& GgufFile::need(const std::string& key, const char* what, bool ok(const GgufValue&)) const {
  const GgufValue* v = find(key);
  if (!v) throw std::runtime_error("'" + name_ + "': no metadata key " + quoted(key) + " (expected " + what + ")");
  if (!ok(*v))
    throw std::runtime_error("'" + name_ + "': metadata key " + quoted(key) + " is " + describe(*v) + ", expected " +
                             what);
  return *v;
}

std::string GgufFile::get_string(const std::string& key) const {
  return std::string(need(key, "a string", [](const GgufValue& v) { return v.type == GgufValueType::String; }).text());
}

uint64_t GgufFile::get_uint(const std::string& key) const {
  uint64_t out = 0;
  need(key, "a non-negative integer", [](const GgufValue& v) {
    uint64_t u;
    return !v.is_array() && v.as_uint(0, u);
  }).as_uint(0, out);
  return out;
}

double GgufFile::get_float(const std::string& key) const {
  return need(key, "a float32 or float64", [](const GgufValue& v) { return !v.is_array() && is_float(v.type); })
      .number();
}

bool GgufFile::get_bool(const std::string& key) const {
  return need(key, "a bool", [](const GgufValue& v) { return v.type == GgufValueType::Bool; }).number() != 0;
}

std::vector<std::string> GgufFile::get_strings(const std::string& key) const {
  const auto& v = need(key, "an array of string",
                       [](const GgufValue& x) { return x.is_array() && x.element_type == GgufValueType::String; });
  std::vector<std::string> out;
  out.reserve(v.count);
  for (std::size_t i = 0; i < v.count; ++i) out.emplace_back(v.text(i));
  return out;
}

std::vector<int64_t> GgufFile::get_ints(const std::string& key) const {
  const auto& v = need(key, "an array of integers that fit int64", [](const GgufValue& x) {
    int64_t n;
    if (!x.is_array() || !is_integer(x.element_type)) return false;
    for (std::size_t i = 0; i < x.count; ++i)
      if (!x.as_int(i, n)) return false;
    return true;
  });
  std::vector<int64_t> out(v.count);
  for (std::size_t i = 0; i < v.count; ++i) v.as_int(i, out[i]);
  return out;
}

std::vector<double> GgufFile::get_floats(const std::string& key) const {
  const auto& v = need(key, "an array of float32 or float64",
                       [](const GgufValue& x) { return x.is_array() && is_float(x.element_type); });
  std::vector<double> out(v.count);
  for (std::size_t i = 0; i < v.count; ++i) out[i] = v.number(i);
  return out;
}

GgufFile parse_gguf(const uint8_t* data, std::size_t size, const std::string& name) {
  Cursor c(data, size, name);
  GgufFile f;
  f.name_ = name;
  if (size < 4 || std::memcmp(data, "GGUF", 4) != 0) throw c.error("not a GGUF file (no GGUF magic)");
  c.take(4, "the magic");
  f.version = c.u32("the version");
  if (f.version != 3) {
    if ((f.version & 0xffff) == 0 && (f.version >> 24) >= 1 && (f.version >> 24) <= 3)
      throw c.error("a big-endian GGUF file; NEXUS reads little-endian ones (what llama.cpp writes by default)");
    if (f.version == 1 || f.version == 2)
      throw c.error("GGUF version " + std::to_string(f.version) +
                    "; NEXUS reads version 3 (written by llama.cpp since 2023: convert the model again)");
    throw c.error("unknown GGUF version " + std::to_string(f.version) + "; NEXUS reads version 3");
  }
  const uint64_t n_tensors = c.u64("the tensor count"), n_keys = c.u64("the metadata key count");
  if (n_tensors > kMaxGgufTensors)
    throw c.error(std::to_string(n_tensors) + " tensors, more than " + std::to_string(kMaxGgufTensors) +
                  " (kMaxGgufTensors)");
  if (n_keys > kMaxGgufKeys)
    throw c.error(std::to_string(n_keys) + " metadata keys, more than " + std::to_string(kMaxGgufKeys) +
                  " (kMaxGgufKeys)");
  // The least a key (8-byte length, type, a u8) and a tensor info (length, n_dims, one dimension,
  // type, offset) take.
  if (n_keys * 13 + n_tensors * 32 > c.left())
    throw c.error("truncated: the header claims " + std::to_string(n_keys) + " metadata keys and " +
                  std::to_string(n_tensors) + " tensors, which need at least " +
                  std::to_string(n_keys * 13 + n_tensors * 32) + " bytes; the file has " + std::to_string(c.left()) +
                  " after the header");

  MetadataReader metadata(c);
  for (uint64_t i = 0; i < n_keys; ++i) {
    std::string key(
        c.text([&] { return "metadata key " + std::to_string(i); }, kMaxGgufStringBytes, "kMaxGgufStringBytes"));
    if (f.key_index_.count(key)) throw c.error("metadata key " + quoted(key) + " appears twice");
    const uint32_t type = c.u32("the value type of key " + quoted(key));
    GgufValue v = metadata.value(type, key);
    f.key_index_.emplace(key, f.metadata_.size());
    f.metadata_.emplace_back(std::move(key), std::move(v));
  }
  f.alignment = read_alignment(f, c);

  f.tensors_.reserve(std::size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t = read_tensor_info(c, std::size_t(i));
    if (f.tensor_index_.count(t.name)) throw c.error("tensor " + quoted(t.name) + " appears twice");
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }
  f.data_offset = (c.pos() + f.alignment - 1) / f.alignment * f.alignment;
  place_tensors(f.tensors_, f.data_offset, f.alignment, size, c);
  return f;
}

void dequantize(const GgufTensor& t, const uint8_t* data, std::size_t size, float* out, const std::string& name) {
  const auto fail = [&](const std::string& what) {
    return std::runtime_error("'" + name + "': tensor " + quoted(t.name) + " " + what);
  };
  const Kernel k = kernel(t.type);
  if (!k)
    throw fail("has type " + gguf_type_name(t.type) +
               ", which NEXUS cannot read (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)");
  // parse_gguf made `t` so; checked again because a GgufTensor is plain data anyone can edit.
  const TypeInfo& info = *type_info(t.type);
  int64_t numel = 0;
  if (t.ne.empty() || t.ne.size() > kMaxGgufDims || !checked_numel(t.ne, numel) || t.ne[0] % info.block != 0)
    throw fail("has an invalid shape " + shape_text(t.ne) + " for " + info.name);
  if (t.bytes != std::size_t(numel / info.block) * info.size || t.offset > size || t.bytes > size - t.offset)
    throw fail("does not describe bytes of this file (" + std::to_string(t.bytes) + " bytes at " +
               std::to_string(t.offset) + " of " + std::to_string(size) + ")");
  k(data + t.offset, numel / info.block, out);
}

}  // namespace nexus::support
