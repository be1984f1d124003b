#include "unicode.hpp"

#include <algorithm>
#include <iterator>

#include "unicode_tables.hpp"

namespace nexus::support::unicode {
namespace {

template <std::size_t N>
bool in_ranges(const CodeRange (&table)[N], char32_t c) {
  const auto it = std::upper_bound(std::begin(table), std::end(table), uint32_t(c),
                                   [](uint32_t v, const CodeRange& r) { return v < r.first; });
  return it != std::begin(table) && uint32_t(c) <= std::prev(it)->last;
}

template <std::size_t N>
const CodeMap* find(const CodeMap (&table)[N], char32_t c) {
  const auto it = std::lower_bound(std::begin(table), std::end(table), uint32_t(c),
                                   [](const CodeMap& m, uint32_t v) { return m.cp < v; });
  return it != std::end(table) && it->cp == uint32_t(c) ? it : nullptr;
}

}  // namespace

bool is_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  return in_ranges(kControl, c);
}

bool is_whitespace(char32_t c) {
  return c == U' ' || c == U'\t' || c == U'\n' || c == U'\r' || in_ranges(kWhitespace, c);
}

bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  return in_ranges(kPunctuation, c);
}

bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_split_space(char32_t c) {
  // After cleaning only these remain of what str.split() treats as whitespace (Zs became ' ';
  // \t \n \r \x0b \x0c \x1c-\x1f \x85 are gone or spaces): U+2028 (Zl) and U+2029 (Zp).
  return c == U' ' || c == 0x2028 || c == 0x2029;
}

std::u32string lower(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (const char32_t c : s) {
    if (c < 0x80) {
      out += (c >= U'A' && c <= U'Z') ? char32_t(c + 32) : c;
    } else if (const auto* m = find(kLower, c)) {
      for (int k = 0; k < m->n; ++k) out += char32_t(m->to[k]);
    } else {
      out += c;
    }
  }
  return out;
}

std::u32string strip_accents(const std::u32string& s) {
  constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
  constexpr char32_t kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = 11172;
  std::u32string out;
  out.reserve(s.size());
  for (const char32_t c : s) {
    if (c < 0x80) {
      out += c;
    } else if (c >= kSBase && c < kSBase + kSCount) {  // Hangul syllable: algorithmic decomposition
      const char32_t i = c - kSBase;
      out += char32_t(kLBase + i / kNCount);
      out += char32_t(kVBase + (i % kNCount) / kTCount);
      if (i % kTCount) out += char32_t(kTBase + i % kTCount);
    } else if (in_ranges(kNonspacingMark, c)) {
      continue;
    } else if (const auto* m = find(kStripAccents, c)) {
      for (int k = 0; k < m->n; ++k) out += char32_t(m->to[k]);
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace nexus::support::unicode
