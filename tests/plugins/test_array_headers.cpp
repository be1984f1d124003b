// .npy and safetensors headers (plugins/support/array_headers.hpp): hostile headers are errors
// naming the file, decided before anything is allocated, never a loop, a wrap-around or a read
// past the file; read_npy and read_safetensors go through the same parsers.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "nexus/support/array_headers.hpp"
#include "nexus/support/arrays.hpp"
#include "test_support.hpp"

using namespace nexus::support;

namespace {

// A version-1 .npy file: header `dict` (padded as NumPy pads it) and `data`.
std::string npy_bytes(const std::string& dict, const std::string& data = "") {
  std::string h = dict;
  h += std::string((64 - (10 + h.size() + 1) % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += char(h.size() & 0xff);
  out += char(h.size() >> 8);
  return out + h + data;
}

// A safetensors file whose header is `text` as written (it need not be what json would dump).
std::string raw_safetensors_bytes(const std::string& text, std::size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((uint64_t(text.size()) >> (8 * i)) & 0xff);
  return out + text + std::string(data_bytes, '\0');
}

std::string safetensors_bytes(const nlohmann::json& header, std::size_t data_bytes) {
  return raw_safetensors_bytes(header.dump(), data_bytes);
}

// What read_npy / read_safetensors say about `bytes` written to a file ("" if they accept it).
std::string npy_error(const std::string& bytes, const nexus::test::TempDir& dir) {
  const auto path = (dir.path / "a.npy").string();
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
  try {
    read_npy(MappedFile::open(path), Storage::Copy);
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
    return e.what();
  }
  return "";
}

std::string safetensors_error(const std::string& bytes, const nexus::test::TempDir& dir) {
  const auto path = (dir.path / "a.safetensors").string();
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
  try {
    read_safetensors(MappedFile::open(path), Storage::Copy);
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("safetensors file '" + path + "'") != std::string::npos);
    return e.what();
  }
  return "";
}

const std::string kDict = "{'descr': '<f4', 'fortran_order': False, 'shape': ";

}  // namespace

TEST_CASE(".npy: well-formed headers are read as NumPy writes them") {
  nexus::test::TempDir dir;
  CHECK(npy_error(npy_bytes(kDict + "(3, 4), }", std::string(48, '\0')), dir).empty());
  CHECK(npy_error(npy_bytes(kDict + "(5,), }", std::string(20, '\0')), dir).empty());
  CHECK(npy_error(npy_bytes(kDict + "(), }", std::string(4, '\0')), dir).empty());
  CHECK(npy_error(npy_bytes(kDict + "(0, 3), }"), dir).empty());
  CHECK(npy_error(npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (2L, 3L)}", std::string(6, '\0')), dir).empty());
  const auto bytes = npy_bytes(kDict + "(3, 4), }", std::string(48, '\0'));
  const auto h = parse_npy_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "x.npy");
  CHECK(h.shape == std::vector<int64_t>{3, 4});
  CHECK(h.dtype == DType::F32);
  CHECK(h.data_offset == bytes.size() - 48);
  CHECK(h.data_offset % 64 == 0);  // NumPy pads the header to a multiple of 64 bytes
  CHECK(h.data_bytes == 48);
}

TEST_CASE(".npy: a shape without its parentheses or not closed is an error, not an endless loop") {
  nexus::test::TempDir dir;
  // "12, }": the old reader looked for the ',' that ends the value, and its item loop then
  // wrapped around to the start of the value forever, pushing dimensions until memory ran out.
  for (const char* shape : {"12, }", "3, 4, }", "(3, 4", "(3, 4, ", "(", "(3 4)", "(3,, 4)", "(-3, 4)", "(3, x)"}) {
    CAPTURE(shape);
    const auto err = npy_error(npy_bytes(kDict + shape), dir);
    CHECK(err.find("corrupt .npy header") != std::string::npos);
  }
}

TEST_CASE(".npy: shapes whose size overflows, too many dimensions, headers past the file") {
  nexus::test::TempDir dir;
  // 2**62 * 8 elements of 4 bytes wraps around 64 bits to 0: the old check compared 0 with 0.
  auto err = npy_error(npy_bytes(kDict + "(4611686018427387904, 8), }"), dir);
  CHECK(err.find("more elements than any array can hold") != std::string::npos);
  err = npy_error(npy_bytes(kDict + "(99999999999999999999, 1), }"), dir);
  CHECK(err.find("dimension too large") != std::string::npos);
  std::string many = "(";
  for (int i = 0; i < 100; ++i) many += "1, ";
  err = npy_error(npy_bytes(kDict + many + "), }", std::string(4, '\0')), dir);
  CHECK(err.find("kMaxArrayDims") != std::string::npos);
  // A header length beyond the file, and beyond kMaxNpyHeaderBytes (format 2.0's 4-byte length).
  std::string bytes = npy_bytes(kDict + "(1,), }", std::string(4, '\0'));
  bytes[8] = '\xff';
  bytes[9] = '\x7f';
  CHECK(npy_error(bytes, dir).find("truncated .npy header") != std::string::npos);
  std::string v2 = "\x93NUMPY\x02";
  v2 += std::string(1, '\0') + "\xff\xff\xff\x7f" + "{}";
  CHECK(npy_error(v2, dir).find("kMaxNpyHeaderBytes") != std::string::npos);
  // Data that does not match the shape.
  CHECK(npy_error(npy_bytes(kDict + "(3, 4), }", std::string(47, '\0')), dir).find("needs 48") != std::string::npos);
  CHECK(npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", std::string(4, '\0')), dir)
            .find("Fortran order") != std::string::npos);
}

TEST_CASE("safetensors: counts, shapes and offsets are checked against the file") {
  nexus::test::TempDir dir;
  const auto entry = [](const char* dtype, nlohmann::json shape, uint64_t begin, uint64_t end) {
    return nlohmann::json{{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, end}}};
  };
  CHECK(safetensors_error(safetensors_bytes({{"a", entry("F32", {2, 3}, 0, 24)}, {"b", entry("I64", {1}, 24, 32)},
                                             {"__metadata__", {{"format", "pt"}}}},
                                            32),
                          dir)
            .empty());
  // (2**62, 8) F32 needs 2**67 bytes: wrapped around, the old check saw 0 == 0 and accepted it.
  auto err = safetensors_error(safetensors_bytes({{"a", entry("F32", {uint64_t(1) << 62, 8}, 0, 0)}}, 0), dir);
  CHECK(err.find("more elements than any tensor can hold") != std::string::npos);
  err = safetensors_error(safetensors_bytes({{"a", entry("F32", {-1, 4}, 0, 0)}}, 0), dir);
  CHECK(err.find("out of range") != std::string::npos);
  nlohmann::json many = nlohmann::json::array();
  for (int i = 0; i < 100; ++i) many.push_back(1);
  err = safetensors_error(safetensors_bytes({{"a", entry("F32", many, 0, 4)}}, 4), dir);
  CHECK(err.find("kMaxArrayDims") != std::string::npos);
  // Overlapping tensors, offsets past the data, begin after end.
  err = safetensors_error(safetensors_bytes({{"a", entry("F32", {2}, 0, 8)}, {"b", entry("F32", {2}, 4, 12)}}, 12), dir);
  CHECK(err.find("overlap") != std::string::npos);
  err = safetensors_error(safetensors_bytes({{"a", entry("F32", {2}, 8, 16)}}, 12), dir);
  CHECK(err.find("truncated") != std::string::npos);
  err = safetensors_error(safetensors_bytes({{"a", entry("F32", {0}, 8, 4)}}, 12), dir);
  CHECK(err.find("begin 8 > end 4") != std::string::npos);
  // A header length beyond the file, and one beyond kMaxSafetensorsHeaderBytes.
  std::string bytes = safetensors_bytes({{"a", entry("F32", {1}, 0, 4)}}, 4);
  bytes[2] = '\x01';
  CHECK(safetensors_error(bytes, dir).find("header claims") != std::string::npos);
  std::string huge(8, '\0');
  huge[3] = '\x02';  // 32 MiB
  huge += "{}" + std::string((std::size_t(32) << 20) - 2, ' ');
  CHECK(safetensors_error(huge, dir).find("kMaxSafetensorsHeaderBytes") != std::string::npos);
  // A dtype nested 300,000 arrays deep is named by its kind: printing it whole recursed once per
  // level, and overflowed the stack.
  const std::string deep = std::string(300000, '[') + std::string(300000, ']');
  err = safetensors_error(raw_safetensors_bytes(R"({"a": {"dtype": )" + deep + R"(, "shape": [1], "data_offsets": [0, 4]}})", 4), dir);
  CHECK(err.find("unsupported dtype an array") != std::string::npos);
  // Entries of the wrong JSON type are errors, not exceptions of another kind.
  for (const nlohmann::json& bad : {nlohmann::json{{"a", 5}}, nlohmann::json{{"a", {{"dtype", 1}, {"shape", {1}}, {"data_offsets", {0, 4}}}}},
                                    nlohmann::json{{"a", {{"dtype", "F32"}, {"shape", {1.5}}, {"data_offsets", {0, 4}}}}},
                                    nlohmann::json{{"a", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0}}}}}}) {
    CAPTURE(bad.dump());
    CHECK(!safetensors_error(safetensors_bytes(bad, 4), dir).empty());
  }
}
