#include "nexus/base/base64.hpp"

#include <array>
#include <cstdint>

namespace nexus {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> decoding_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[uint8_t(kAlphabet[i])] = int8_t(i);
  return t;
}
constexpr auto kDecode = decoding_table();

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t quad = 0;
  int have = 0, padding = 0;
  for (const char ch : text) {
    if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') continue;
    if (ch == '=') {
      if (have < 2 || ++padding + have > 4) return std::nullopt;
      continue;
    }
    const int v = kDecode[uint8_t(ch)];
    if (v < 0 || padding) return std::nullopt;  // outside the alphabet, or data after '='
    quad = quad << 6 | uint32_t(v);
    if (++have == 4) {
      out += char(quad >> 16);
      out += char(quad >> 8 & 0xFF);
      out += char(quad & 0xFF);
      quad = 0;
      have = 0;
    }
  }
  if (have == 0) return padding ? std::nullopt : std::optional<std::string>(out);
  if (have + padding != 4) return std::nullopt;
  if (have == 2) {
    if (quad & 0xF) return std::nullopt;  // non-canonical: bits below the last byte
    out += char(quad >> 4);
  } else {
    if (quad & 0x3) return std::nullopt;
    out += char(quad >> 10);
    out += char(quad >> 2 & 0xFF);
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[v >> s & 63];
  }
  if (const size_t rest = bytes.size() - i) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += rest == 2 ? kAlphabet[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace nexus
