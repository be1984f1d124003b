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

uint8_t combining_class(char32_t c) {
  if (c < 0x300) return 0;
  const auto it = std::upper_bound(std::begin(kCombiningClass), std::end(kCombiningClass), uint32_t(c),
                                   [](uint32_t v, const CodeRangeValue& r) { return v < r.first; });
  return it != std::begin(kCombiningClass) && uint32_t(c) <= std::prev(it)->last ? std::prev(it)->value : 0;
}

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = 11172;

// Full canonical decomposition of one character, appended to `out`.
void decompose(char32_t c, std::u32string* out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t i = c - kSBase;
    *out += char32_t(kLBase + i / kNCount);
    *out += char32_t(kVBase + (i % kNCount) / kTCount);
    if (i % kTCount) *out += char32_t(kTBase + i % kTCount);
    return;
  }
  const auto* it = c < 0xC0 ? std::end(kDecomposition)  // nothing below U+00C0 decomposes canonically
                            : std::lower_bound(std::begin(kDecomposition), std::end(kDecomposition), uint32_t(c),
                                               [](const CodeSpan& m, uint32_t v) { return m.cp < v; });
  if (it == std::end(kDecomposition) || it->cp != uint32_t(c)) {
    *out += c;
    return;
  }
  for (int k = 0; k < it->n; ++k) *out += char32_t(kDecompositionData[it->offset + k]);
}

// The primary composite of a starter and the character after it, or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto it = std::lower_bound(std::begin(kComposition), std::end(kComposition), std::make_pair(a, b),
                                   [](const CodePair& p, const std::pair<char32_t, char32_t>& v) {
                                     return p.first != v.first ? p.first < v.first : p.second < v.second;
                                   });
  return it != std::end(kComposition) && it->first == a && it->second == b ? char32_t(it->composite) : 0;
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

bool is_letter(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= U'a' && (c | 0x20) <= U'z';
  return in_ranges(kLetter, c);
}

bool is_number(char32_t c) {
  if (c < 0x80) return c >= U'0' && c <= U'9';
  return in_ranges(kNumber, c);
}

bool is_regex_space(char32_t c) {
  if (c < 0x80) return c == U' ' || (c >= U'\t' && c <= U'\r');
  return c == 0x85 || c == 0x2028 || c == 0x2029 || in_ranges(kWhitespace, c);
}

std::u32string nfc(const std::u32string& s) {
  // Text below U+0300 never changes under NFC unless a combining mark follows it.
  bool simple = true;
  for (const char32_t c : s) simple = simple && c < 0x300;
  if (simple) return s;
  std::u32string d;
  d.reserve(s.size() + 8);
  for (const char32_t c : s) decompose(c, &d);
  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  for (std::size_t i = 1; i < d.size(); ++i) {
    const uint8_t cc = combining_class(d[i]);
    if (cc == 0) continue;
    for (std::size_t j = i; j > 0 && combining_class(d[j - 1]) > cc; --j) std::swap(d[j], d[j - 1]);
  }
  // Canonical composition: each character joins the last starter unless a character between
  // them blocks it (a starter, or a mark of the same or a higher class).
  std::u32string out;
  out.reserve(d.size());
  std::size_t starter = std::u32string::npos;
  int last_cc = -1;  // class of the last character kept after the starter; -1: none yet
  for (const char32_t c : d) {
    const uint8_t cc = combining_class(c);
    const bool blocked = last_cc == 0 || (last_cc > 0 && last_cc >= cc);
    if (starter != std::u32string::npos && !blocked) {
      if (const char32_t composite = compose(out[starter], c)) {
        out[starter] = composite;
        continue;
      }
    }
    if (cc == 0) {
      starter = out.size();
      last_cc = -1;
    } else {
      last_cc = cc;
    }
    out += c;
  }
  return out;
}

}  // namespace nexus::support::unicode
