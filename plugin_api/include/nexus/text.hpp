// Small text helpers shared by the host and plugins: header-only and torch-free.
#pragma once

#include <cstddef>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

namespace nexus {

// "a, b, c": each item as text (strings as they are, numbers through std::to_string), `sep`
// between items. Empty for no items; callers that print "none" or "-" say so themselves.
template <class Range>
std::string join(const Range& items, const std::string& sep = ", ") {
  std::string out;
  bool first = true;
  for (const auto& item : items) {
    if (!first) out += sep;
    first = false;
    if constexpr (std::is_arithmetic_v<std::decay_t<decltype(item)>>) out += std::to_string(item);
    else out += item;
  }
  return out;
}

// join(items, sep), or `none` when there are no items ("-", "none").
template <class Range>
std::string join_or(const Range& items, const std::string& none, const std::string& sep = ", ") {
  return std::begin(items) == std::end(items) ? none : join(items, sep);
}

// Whether `x` is one of `items`.
inline bool contains(const std::vector<std::string>& items, const std::string& x) {
  for (const auto& item : items)
    if (item == x) return true;
  return false;
}

// Without the leading and trailing spaces, tabs and newlines.
inline std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\n");
  return s.substr(b, e - b + 1);
}

// The UTF-8 character that starts at byte `i` of `s`: its code point and length in bytes. Any
// invalid sequence (a stray continuation byte, a truncated or overlong form, a UTF-16 surrogate,
// a code point past U+10FFFF) has length 0: callers replace it (U+FFFD) or report it.
struct Utf8Char {
  char32_t code_point = 0;
  std::size_t length = 0;
};
inline Utf8Char decode_utf8(const std::string& s, std::size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const unsigned char b = p[i];
  if (b < 0x80) return {b, 1};
  const std::size_t len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
  if (len == 0 || i + len > s.size()) return {};
  char32_t c = b & (0x7F >> len);
  for (std::size_t k = 1; k < len; ++k) {
    if ((p[i + k] & 0xC0) != 0x80) return {};
    c = (c << 6) | (p[i + k] & 0x3F);
  }
  static const char32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < kMin[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return {};
  return {c, len};
}

// Decoded text; each byte of an invalid sequence becomes U+FFFD.
inline std::u32string utf8_to_utf32(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto ch = decode_utf8(s, i);
    out += ch.length ? ch.code_point : char32_t(0xFFFD);
    i += ch.length ? ch.length : 1;
  }
  return out;
}

inline std::string utf32_to_utf8(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (const char32_t c : s) {
    if (c < 0x80) {
      out += char(c);
    } else if (c < 0x800) {
      out += char(0xC0 | (c >> 6));
      out += char(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += char(0xE0 | (c >> 12));
      out += char(0x80 | ((c >> 6) & 0x3F));
      out += char(0x80 | (c & 0x3F));
    } else {
      out += char(0xF0 | (c >> 18));
      out += char(0x80 | ((c >> 12) & 0x3F));
      out += char(0x80 | ((c >> 6) & 0x3F));
      out += char(0x80 | (c & 0x3F));
    }
  }
  return out;
}

}  // namespace nexus
