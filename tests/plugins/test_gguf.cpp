// The GGUF reader (plugins/support/gguf.hpp): real and gguf-py-written files read back with the
// values gguf-py computes, and hostile files (built here byte by byte) refused with an error that
// names the file, decided before anything large is allocated, never a read past the file.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nexus/support/gguf.hpp"
#include "nexus/support/mapped_file.hpp"

using namespace nexus::support;

namespace gguf_tests {

const uint8_t* u8p(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

std::string fixture_path(const std::string& file) {
  return std::string(NEXUS_TEST_DATA_DIR) + "/plugins/data/gguf/" + file;
}

std::string read_fixture(const std::string& file) {
  std::ifstream in(fixture_path(file), std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture ", file, " (scripts/make_gguf_fixtures.py writes it)");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// What parse_gguf says about `bytes` ("" if it accepts them). Each error must name the file.
std::string parse_error(const std::string& bytes) {
  try {
    parse_gguf(u8p(bytes), bytes.size(), "x.gguf");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).rfind("'x.gguf': ", 0) == 0);
    return e.what();
  }
  return "";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Little-endian GGUF encodings, for files made byte by byte.
struct Writer {
  std::string b;
  Writer& u8(uint8_t v) {
    b += char(v);
    return *this;
  }
  Writer& u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) b += char((v >> (8 * i)) & 0xff);
    return *this;
  }
  Writer& u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) b += char((v >> (8 * i)) & 0xff);
    return *this;
  }
  Writer& str(const std::string& s) {
    u64(s.size());
    b += s;
    return *this;
  }
};

// One key's bytes: its name, a value type, and the value's bytes as given.
std::string kv(const std::string& key, uint32_t type, const std::string& value) {
  Writer w;
  w.str(key).u32(type);
  return w.b + value;
}
std::string kv_u32(const std::string& key, uint32_t v) { return kv(key, 4, Writer().u32(v).b); }

struct TensorInfo {
  std::string name = "t";
  std::vector<uint64_t> ne = {8};
  uint32_t type = 0;  // F32
  uint64_t offset = 0;
};

// A GGUF file: by default version 3, no keys, one F32 tensor of 8 elements and its 32 bytes.
struct Tiny {
  uint32_t version = 3;
  std::optional<uint64_t> n_tensors, n_keys;  // the counts the header claims, if not the real ones
  std::vector<std::string> keys;              // kv() entries
  std::vector<TensorInfo> tensors = {TensorInfo{}};
  std::size_t alignment = 32;
  std::size_t data_bytes = 32;

  std::string bytes() const {
    Writer w;
    w.b = "GGUF";
    w.u32(version).u64(n_tensors.value_or(tensors.size())).u64(n_keys.value_or(keys.size()));
    for (const auto& k : keys) w.b += k;
    for (const auto& t : tensors) {
      w.str(t.name).u32(uint32_t(t.ne.size()));
      for (const auto d : t.ne) w.u64(d);
      w.u32(t.type).u64(t.offset);
    }
    w.b.resize((w.b.size() + alignment - 1) / alignment * alignment, '\0');
    return w.b + std::string(data_bytes, '\x01');
  }
};

std::string error_with_tensor(const TensorInfo& t, std::size_t data_bytes = 32) {
  Tiny f;
  f.tensors = {t};
  f.data_bytes = data_bytes;
  return parse_error(f.bytes());
}

std::string error_with_key(const std::string& key_bytes) {
  Tiny f;
  f.keys = {key_bytes};
  return parse_error(f.bytes());
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

}  // namespace gguf_tests

using namespace gguf_tests;

TEST_CASE("gguf: each supported tensor type dequantises to exactly the floats gguf-py computes") {
  // name -> (ne in ggml order, ggml type name), as scripts/make_gguf_fixtures.py writes them.
  const std::map<std::string, std::pair<std::vector<int64_t>, std::string>> fixtures = {
      {"f32", {{8, 3, 2}, "F32"}},  {"f16", {{16, 4}, "F16"}},   {"bf16", {{16, 4}, "BF16"}},
      {"q8_0", {{64, 2}, "Q8_0"}},  {"q4_0", {{64, 2}, "Q4_0"}}, {"q4_1", {{64, 2}, "Q4_1"}},
      {"q4_k", {{512, 2}, "Q4_K"}}, {"q6_k", {{256, 2}, "Q6_K"}}};
  for (const auto& [stem, expect] : fixtures) {
    CAPTURE(stem);
    const std::string bytes = read_fixture(stem + ".gguf"), want_bytes = read_fixture(stem + ".f32");
    const auto f = parse_gguf(u8p(bytes), bytes.size(), stem + ".gguf");
    REQUIRE(f.tensors().size() == 1);
    const GgufTensor* t = f.tensor("t");
    REQUIRE(t);
    CHECK(t->ne == expect.first);
    CHECK(gguf_type_name(t->type) == expect.second);
    CHECK(gguf_can_dequantize(t->type));
    REQUIRE(want_bytes.size() == std::size_t(t->numel()) * 4);
    std::vector<float> got(std::size_t(t->numel()), -12345.0f), want(got.size());
    std::memcpy(want.data(), want_bytes.data(), want_bytes.size());
    dequantize(*t, u8p(bytes), bytes.size(), got.data(), stem + ".gguf");
    std::size_t differ = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      if (!same_bits(got[i], want[i])) {
        if (differ++ < 3) MESSAGE(stem, "[", i, "]: ", got[i], " != gguf-py's ", want[i]);
      }
    CHECK(differ == 0);
  }
  // The half and bfloat16 fixtures begin with the special values: +-0, +-inf, NaN, subnormals.
  const std::string f16 = read_fixture("f16.f32");
  float first[12];
  std::memcpy(first, f16.data(), sizeof first);
  CHECK(std::signbit(first[1]));
  CHECK(std::isinf(first[2]));
  CHECK(std::isnan(first[4]));
  CHECK(first[5] == std::ldexp(1.0f, -24));
}

TEST_CASE("gguf: metadata of every value type reads back through the typed accessors") {
  const std::string bytes = read_fixture("metadata.gguf");
  const auto f = parse_gguf(u8p(bytes), bytes.size(), "metadata.gguf");
  CHECK(f.version == 3);
  CHECK(f.alignment == 64);
  CHECK(f.data_offset % 64 == 0);
  REQUIRE(f.metadata().size() == 21);
  CHECK(f.metadata()[0].first == "general.architecture");
  CHECK(f.get_string("general.architecture") == "nexus-test");
  CHECK(f.get_uint("test.u8") == 200);
  CHECK(f.get_uint("test.u16") == 60000);
  CHECK(f.get_uint("test.u32") == 4000000000u);
  CHECK(f.get_uint("test.u64") == 18000000000000000000ull);
  CHECK(f.find("test.i8")->number() == -100);
  CHECK(f.find("test.i16")->number() == -30000);
  int64_t i = 0;
  CHECK((f.find("test.i32")->as_int(0, i) && i == -2000000000));
  CHECK((f.find("test.i64")->as_int(0, i) && i == -9000000000000000000ll));
  CHECK(f.get_float("test.f32") == 0.25);
  CHECK(f.get_float("test.f64") == -1.5e300);
  CHECK(f.get_bool("test.bool"));
  CHECK(f.get_string("test.string") == "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c");
  CHECK(f.get_strings("test.strings") == std::vector<std::string>{"a", "", "\xc3\xbc" "ber", "merges \xc4\xa0t"});
  CHECK(f.get_ints("test.ints") == std::vector<int64_t>{1, -2, 3});
  CHECK(f.get_floats("test.floats") == std::vector<double>{0.5, -2.0, double(0.001f)});
  const GgufValue* bools = f.find("test.bools");
  REQUIRE(bools);
  CHECK((bools->element_type == GgufValueType::Bool && bools->count == 3 && bools->number(1) == 0 &&
         bools->number(2) == 1));
  const GgufValue* nested = f.find("test.nested");
  REQUIRE(nested);
  REQUIRE(nested->arrays.size() == 2);
  CHECK((nested->arrays[0].element_type == GgufValueType::Int32 && nested->arrays[0].count == 2));
  CHECK((nested->arrays[1].as_int(0, i) && i == 3));

  // Absent keys and other types are errors naming the file, the key and what was expected.
  CHECK(f.find("nope") == nullptr);
  const auto error = [](const auto& read) {
    try {
      read();
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(error([&] { f.get_string("nope"); }) == "'metadata.gguf': no metadata key 'nope' (expected a string)");
  CHECK(error([&] { f.get_string("test.u8"); }) == "'metadata.gguf': metadata key 'test.u8' is a uint8, expected a string");
  CHECK(has(error([&] { f.get_uint("test.i32_negative_as_uint"); }), "is an int32, expected a non-negative integer"));
  CHECK(has(error([&] { f.get_uint("test.ints"); }), "is an array of int32"));
  CHECK(has(error([&] { f.get_ints("test.u64s"); }), "expected an array of integers that fit int64"));
  CHECK(has(error([&] { f.get_ints("test.bools"); }), "is an array of bool"));
  CHECK(has(error([&] { f.get_float("test.u32"); }), "expected a float32 or float64"));
  CHECK(has(error([&] { f.get_bool("test.u8"); }), "expected a bool"));
  CHECK(has(error([&] { f.get_strings("test.string"); }), "is a string, expected an array of string"));

  // The tensors start on the file's 64-byte alignment and read back.
  REQUIRE(f.tensors().size() == 2);
  const GgufTensor* a = f.tensor("a");
  const GgufTensor* b = f.tensor("b");
  REQUIRE((a && b));
  CHECK((a->offset == f.data_offset && b->offset == f.data_offset + 64));
  std::vector<float> out(32);
  dequantize(*a, u8p(bytes), bytes.size(), out.data(), "metadata.gguf");
  CHECK(std::vector<float>(out.begin(), out.begin() + 4) == std::vector<float>{0, 1, 2, 3});
  dequantize(*b, u8p(bytes), bytes.size(), out.data(), "metadata.gguf");
  for (int k = 0; k < 32; ++k) CHECK(out[std::size_t(k)] == doctest::Approx(-1.0 + 2.0 * k / 31).epsilon(0.01));
}

TEST_CASE("gguf: the SmolLM2 file is read as llama.cpp wrote it") {
  // scripts/fetch_models.sh puts it there (scripts/test.sh runs it first): missing fails, never skips.
  const std::string path = std::string(NEXUS_MODELS_DIR) + "/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  REQUIRE_MESSAGE(std::filesystem::exists(path), path, " is missing: run scripts/fetch_models.sh");
  const auto file = MappedFile::open(path);
  const auto f = parse_gguf(file->data(), file->size(), path);
  CHECK(f.version == 3);
  CHECK(f.alignment == 32);
  CHECK(f.data_offset == 1785664);
  CHECK(f.metadata().size() == 33);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_uint("llama.block_count") == 30);
  CHECK(f.get_uint("llama.embedding_length") == 576);
  CHECK(f.get_uint("llama.attention.head_count") == 9);
  CHECK(f.get_uint("llama.attention.head_count_kv") == 3);
  CHECK(f.get_float("llama.rope.freq_base") > 0);
  CHECK(f.get_string("tokenizer.ggml.model") == "gpt2");
  const auto tokens = f.get_strings("tokenizer.ggml.tokens");
  CHECK(tokens.size() == 49152);
  CHECK(f.get_strings("tokenizer.ggml.merges").size() == 48900);
  CHECK(f.get_ints("tokenizer.ggml.token_type").size() == 49152);
  CHECK(f.get_uint("tokenizer.ggml.bos_token_id") < tokens.size());

  std::map<std::string, int> by_type;
  for (const auto& t : f.tensors()) ++by_type[gguf_type_name(t.type)];
  CHECK(f.tensors().size() == 272);
  CHECK(by_type == std::map<std::string, int>{{"F32", 61}, {"Q4_1", 210}, {"Q8_0", 1}});
  const GgufTensor* embd = f.tensor("token_embd.weight");
  REQUIRE(embd);
  CHECK(embd->ne == std::vector<int64_t>{576, 49152});
  CHECK(gguf_type_name(embd->type) == "Q8_0");
  CHECK(embd->offset == f.data_offset);
  CHECK(embd->bytes == std::size_t(576 / 32 * 34 * 49152));

  // A norm (F32: its bytes as they are) and a Q4_1 projection of plausible magnitude.
  const GgufTensor* norm = f.tensor("blk.0.attn_norm.weight");
  const GgufTensor* q = f.tensor("blk.0.attn_q.weight");
  REQUIRE((norm && q));
  std::vector<float> out(std::size_t(q->numel()));
  dequantize(*norm, file->data(), file->size(), out.data(), path);
  CHECK(std::memcmp(out.data(), file->data() + norm->offset, 576 * 4) == 0);
  dequantize(*q, file->data(), file->size(), out.data(), path);
  double mean_abs = 0;
  for (const float v : out) mean_abs += std::fabs(v) / double(out.size());
  CHECK(std::isfinite(mean_abs));
  CHECK((mean_abs > 1e-3 && mean_abs < 1.0));
}

TEST_CASE("gguf: every truncation of a valid file is an error naming the file, never a read past it") {
  for (const char* stem : {"metadata.gguf", "q4_k.gguf"}) {
    CAPTURE(stem);
    const std::string full = read_fixture(stem);
    const auto f = parse_gguf(u8p(full), full.size(), stem);
    std::size_t end = 0;  // where the last tensor ends; the writer's padding after it is optional
    for (const auto& t : f.tensors()) end = std::max(end, t.offset + t.bytes);
    for (std::size_t n = 0; n < full.size(); ++n) {
      CAPTURE(n);
      const std::string err = parse_error(full.substr(0, n));  // an exact-size copy: ASan sees overreads
      if (n < 4)
        CHECK(has(err, "not a GGUF file"));
      else if (n < end)
        CHECK(has(err, "truncated"));
      else
        CHECK(err.empty());
    }
  }
}

TEST_CASE("gguf: a file that is not little-endian GGUF version 3 is refused, saying which") {
  Tiny f;
  CHECK(parse_error(f.bytes()).empty());
  std::string bytes = f.bytes();
  bytes[3] = 'G';
  CHECK(has(parse_error(bytes), "not a GGUF file (no GGUF magic)"));
  CHECK(has(parse_error(""), "not a GGUF file"));
  f.version = 2;
  CHECK(has(parse_error(f.bytes()), "GGUF version 2; NEXUS reads version 3"));
  f.version = 1;
  CHECK(has(parse_error(f.bytes()), "GGUF version 1; NEXUS reads version 3"));
  f.version = 4;
  CHECK(has(parse_error(f.bytes()), "unknown GGUF version 4"));
  f.version = 0x03000000;  // 3 written big-endian
  CHECK(has(parse_error(f.bytes()), "big-endian GGUF file"));
}

TEST_CASE("gguf: counts and lengths beyond the file are refused before anything is allocated") {
  Tiny f;
  f.n_tensors = uint64_t(1) << 63;
  CHECK(has(parse_error(f.bytes()), "more than 65536 (kMaxGgufTensors)"));
  f = Tiny{};
  f.n_keys = uint64_t(1) << 40;
  CHECK(has(parse_error(f.bytes()), "(kMaxGgufKeys)"));
  f = Tiny{};
  f.n_keys = 60000;  // within the limit, but 60,000 keys cannot fit in the bytes left
  CHECK(has(parse_error(f.bytes()), "truncated: the header claims 60000 metadata keys"));

  // Strings: a key, a value and an array element longer than the file.
  CHECK(has(error_with_key(Writer().u64(uint64_t(1) << 62).b + "abc"), "metadata key 0 is 4611686018427387904 bytes long"));
  CHECK(has(error_with_key(kv("k", 8, Writer().u64(1000).b + "short")), "the value of key 'k' is 1000 bytes long, the file has"));
  CHECK(has(error_with_key(kv("k", 9, Writer().u32(8).u64(1).u64(uint64_t(-1)).b)), "element 0 of key 'k' is"));
  // A string within the file but over kMaxGgufStringBytes.
  CHECK(has(error_with_key(kv("k", 8, Writer().str(std::string(kMaxGgufStringBytes + 1, 'x')).b)), "kMaxGgufStringBytes"));
  // Arrays whose length cannot fit in the bytes left, for each kind of element.
  for (const uint32_t element : {0u, 4u, 8u, 9u, 12u}) {
    CAPTURE(element);
    CHECK(has(error_with_key(kv("k", 9, Writer().u32(element).u64(uint64_t(1) << 61).b)), "claims an array of 2305843009213693952"));
  }
  // Nesting: arrays of arrays are fine, one level more is not.
  const std::string seven = Writer().u32(5).u64(1).u32(7).b;        // an array's body: [7], int32
  const std::string nested = Writer().u32(9).u64(1).b + seven;       // [[7]]
  CHECK(error_with_key(kv("k", 9, nested)).empty());
  CHECK(has(error_with_key(kv("k", 9, Writer().u32(9).u64(1).b + nested)), "nests arrays more than 2 deep (kMaxGgufArrayDepth)"));
  Writer many;
  many.u32(9).u64(kMaxGgufNestedArrays + 1);
  for (uint64_t n = 0; n <= kMaxGgufNestedArrays; ++n) many.u32(0).u64(0);
  CHECK(has(error_with_key(kv("k", 9, many.b)), "(kMaxGgufNestedArrays)"));
  // Types and values GGUF does not define, and duplicated keys.
  CHECK(has(error_with_key(kv("k", 13, "")), "metadata key 'k' has value type 13, which GGUF does not define"));
  CHECK(has(error_with_key(kv("k", 9, Writer().u32(99).u64(0).b)), "value type 99"));
  CHECK(has(error_with_key(kv("k", 7, "\x02")), "holds the bool 2"));
  f = Tiny{};
  f.keys = {kv_u32("k", 1), kv_u32("k", 2)};
  CHECK(has(parse_error(f.bytes()), "metadata key 'k' appears twice"));
}

TEST_CASE("gguf: general.alignment must be a uint32 power of two, and moves the data section") {
  Tiny f;
  f.keys = {kv_u32("general.alignment", 64)};
  f.alignment = 64;
  f.tensors[0].offset = 64;
  f.data_bytes = 96;
  std::string bytes = f.bytes();
  const auto ok = parse_gguf(u8p(bytes), bytes.size(), "x.gguf");
  CHECK(ok.alignment == 64);
  CHECK(ok.data_offset % 64 == 0);
  CHECK(ok.tensors()[0].offset == ok.data_offset + 64);
  f.tensors[0].offset = 32;
  CHECK(has(parse_error(f.bytes()), "not a multiple of the alignment 64"));
  for (const uint32_t a : {0u, 3u, 48u, 131072u}) {
    CAPTURE(a);
    f.keys = {kv_u32("general.alignment", a)};
    CHECK(has(parse_error(f.bytes()), "must be a power of two up to 65536"));
  }
  f.keys = {kv("general.alignment", 10, Writer().u64(32).b)};
  CHECK(has(parse_error(f.bytes()), "general.alignment is a uint64; it must be a uint32"));
}

TEST_CASE("gguf: tensor shapes, types, sizes and offsets are checked against the file") {
  CHECK(error_with_tensor(TensorInfo{}).empty());
  TensorInfo t;
  t.ne = {};
  CHECK(has(error_with_tensor(t), "tensor 't' has 0 dimensions; GGUF tensors have 1 to 4"));
  t.ne = {1, 1, 1, 1, 8};
  CHECK(has(error_with_tensor(t), "has 5 dimensions"));
  t.ne = {8, 0};
  CHECK(has(error_with_tensor(t), "dimension 1 of 0 elements"));
  t.ne = {uint64_t(1) << 63};
  CHECK(has(error_with_tensor(t), "dimension 0 of 9223372036854775808 elements"));
  t.ne = {uint64_t(1) << 32, uint64_t(1) << 32};  // 2^64: wraps to 0 unchecked
  CHECK(has(error_with_tensor(t), "more than 2^40 elements (kMaxGgufElements)"));
  t.ne = {33};
  t.type = 2;  // Q4_0
  CHECK(has(error_with_tensor(t), "rows of 33 elements, not a multiple of Q4_0's block of 32"));
  for (const uint32_t type : {4u, 31u, 77u}) {
    t.ne = {32};
    t.type = type;
    CHECK(has(error_with_tensor(t), "has type " + std::to_string(type) + ", which ggml does not define"));
  }
  // Sizes and offsets: the bytes must be inside the file, aligned, and not another tensor's.
  t = TensorInfo{};
  t.ne = {9};  // 36 bytes of F32, the file has 32
  CHECK(has(error_with_tensor(t), "truncated: tensor 't' (36 bytes at offset 0 of the data section) ends past"));
  t.ne = {8};
  t.offset = 32;
  CHECK(has(error_with_tensor(t), "ends past the end of the file"));
  t.offset = uint64_t(1) << 63;  // aligned, far past the end (and offset + bytes would not overflow)
  CHECK(has(error_with_tensor(t), "ends past the end of the file"));
  t.offset = 4;
  CHECK(has(error_with_tensor(t, 64), "starts at offset 4 of the data section, not a multiple of the alignment 32"));
  Tiny f;
  f.tensors = {TensorInfo{"a", {16}, 0, 0}, TensorInfo{"b", {8}, 0, 32}};
  f.data_bytes = 64;
  CHECK(has(parse_error(f.bytes()), "tensors 'a' and 'b' overlap"));
  f.tensors[1].offset = 64;
  f.data_bytes = 96;
  CHECK(parse_error(f.bytes()).empty());
  f.tensors[1].name = "a";
  CHECK(has(parse_error(f.bytes()), "tensor 'a' appears twice"));
  // Names: at most 64 bytes, the spec's limit.
  t = TensorInfo{};
  t.name = std::string(64, 'n');
  CHECK(error_with_tensor(t).empty());
  t.name += 'n';
  CHECK(has(error_with_tensor(t), "65 bytes long, more than 64 (kMaxGgufTensorNameBytes)"));
}

TEST_CASE("gguf: a tensor of a type NEXUS does not dequantise is described, and dequantize names the type") {
  const std::string bytes = read_fixture("q5_k.gguf");
  const auto f = parse_gguf(u8p(bytes), bytes.size(), "q5_k.gguf");
  const GgufTensor* t = f.tensor("t");
  REQUIRE(t);
  CHECK(gguf_type_name(t->type) == "Q5_K");
  CHECK(t->bytes == 176);
  CHECK_FALSE(gguf_can_dequantize(t->type));
  std::vector<float> out(256);
  std::string err;
  try {
    dequantize(*t, u8p(bytes), bytes.size(), out.data(), "q5_k.gguf");
  } catch (const std::runtime_error& e) {
    err = e.what();
  }
  CHECK(err == "'q5_k.gguf': tensor 't' has type Q5_K, which NEXUS cannot read (it reads F32, F16, BF16, Q8_0, "
               "Q4_0, Q4_1, Q4_K, Q6_K)");

  // dequantize checks the tensor against the bytes it is given, whoever made the GgufTensor.
  const std::string q4 = read_fixture("q4_k.gguf");
  GgufTensor doctored = *parse_gguf(u8p(q4), q4.size(), "q4_k.gguf").tensor("t");
  doctored.offset = q4.size() - 100;
  out.resize(1024);
  CHECK_THROWS_WITH_AS(dequantize(doctored, u8p(q4), q4.size(), out.data(), "q4_k.gguf"),
                       doctest::Contains("does not describe bytes of this file"), std::runtime_error);
  doctored.ne = {256, 2};  // half the elements for the same bytes
  doctored.offset = 128;
  CHECK_THROWS_WITH_AS(dequantize(doctored, u8p(q4), q4.size(), out.data(), "q4_k.gguf"),
                       doctest::Contains("does not describe bytes"), std::runtime_error);
  doctored.ne = {100, 2};
  CHECK_THROWS_WITH_AS(dequantize(doctored, u8p(q4), q4.size(), out.data(), "q4_k.gguf"),
                       doctest::Contains("invalid shape [100, 2] for Q4_K"), std::runtime_error);
}

TEST_CASE("gguf: ggml type ids are named as gguf-py names them, unknown ids by number") {
  CHECK(gguf_type_name(0) == "F32");
  CHECK(gguf_type_name(3) == "Q4_1");
  CHECK(gguf_type_name(12) == "Q4_K");
  CHECK(gguf_type_name(16) == "IQ2_XXS");
  CHECK(gguf_type_name(30) == "BF16");
  CHECK(gguf_type_name(41) == "Q1_0");
  CHECK(gguf_type_name(4) == "type 4");
  CHECK(gguf_type_name(77) == "type 77");
  CHECK(gguf_type_name(0xffffffffu) == "type 4294967295");
  CHECK(gguf_value_type_name(GgufValueType::Float64) == "float64");
  CHECK(gguf_value_type_name(GgufValueType(13)) == "value type 13");
}
