// Pre-tokenizer regexes of byte-level BPE tokenizers, matched by hand.
//
// std::regex has no \p{L} or \p{N}, and NEXUS takes no regex library, so each of the three
// patterns real tokenizer.json files use (GPT-2's, Llama 3's, Qwen2's) is a small matcher that
// follows the regex engine's semantics exactly: at each position the alternatives are tried in
// order, the first that matches wins, quantifiers are greedy and backtrack. Every character is
// a letter (\p{L}), a number (\p{N}), a space (\s) or "other", and each pattern has an
// alternative for each class, so the matches tile the text and no gaps arise; the code still
// keeps gaps as pieces, as the Isolated split behaviour does. The one backtracking subtlety is
// `\s+(?!\S)`: a run of spaces followed by a non-space gives back its last space, which then
// starts the next piece (" word" in GPT-2, "\tword" in Llama 3).
#include "bpe_pretokenize.hpp"

#include <nexus/text.hpp>

#include <array>

#include "unicode.hpp"

namespace nexus::support::bpe {
namespace {

enum Class : uint8_t { kOther, kLetter, kNumber, kSpace };

Class classify(char32_t c) {
  if (unicode::is_letter(c)) return kLetter;
  if (unicode::is_number(c)) return kNumber;
  if (unicode::is_regex_space(c)) return kSpace;
  return kOther;
}

struct Char {
  char32_t cp;
  Class cls;
  uint32_t offset;  // byte offset in the text
};

// Decodes valid UTF-8 text[span] into `chars`, plus a sentinel holding the end offset.
void decode(const std::string& text, Span span, std::vector<Char>* chars) {
  static const auto ascii = [] {
    std::array<Class, 128> t{};
    for (char32_t c = 0; c < 128; ++c) t[c] = classify(c);
    return t;
  }();
  chars->clear();
  for (uint32_t i = span.begin; i < span.end;) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      chars->push_back({b, ascii[b], i});
      ++i;
      continue;
    }
    const auto ch = decode_utf8(text, i);
    const uint32_t len = ch.length ? uint32_t(ch.length) : 1;  // never 0: the text was repaired
    chars->push_back({ch.code_point, classify(ch.code_point), i});
    i += len;
  }
  chars->push_back({0, kOther, span.end});
}

std::size_t run_of(const std::vector<Char>& c, std::size_t p, std::size_t n, Class cls) {
  while (p < n && c[p].cls == cls) ++p;
  return p;
}

// 's 't 're 've 'm 'll 'd at p, case-sensitive or (Llama 3, Qwen2) not; returns the end or p.
std::size_t contraction(const std::vector<Char>& c, std::size_t p, std::size_t n, bool fold) {
  if (c[p].cp != U'\'' || p + 1 >= n) return p;
  // (?i) in Oniguruma folds with Unicode case folding: S and U+017F (long s) match 's'.
  const auto low = [&](char32_t x) -> char32_t {
    if (!fold) return x;
    if (x >= U'A' && x <= U'Z') return x + 32;
    return x == 0x17F ? U's' : x;
  };
  const char32_t a = low(c[p + 1].cp);
  if (a == U's' || a == U't' || a == U'm' || a == U'd') return p + 2;
  if (p + 2 >= n) return p;
  const char32_t b = low(c[p + 2].cp);
  if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) return p + 3;
  return p;
}

// `\s+(?!\S)|\s+` at a space p: the whole run at the end of the text; else the run less its last
// space when that leaves at least one; else the single space.
std::size_t trailing_spaces(const std::vector<Char>& c, std::size_t p, std::size_t n) {
  const std::size_t e = run_of(c, p, n, kSpace);
  if (e == n) return n;
  return e - p >= 2 ? e - 1 : e;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::size_t match_gpt2(const std::vector<Char>& c, std::size_t p, std::size_t n) {
  if (const std::size_t e = contraction(c, p, n, false); e != p) return e;
  // The three " ?class+" alternatives: an optional U+0020, then a run of one class.
  const std::size_t k = c[p].cp == U' ' && p + 1 < n && c[p + 1].cls != kSpace ? p + 1 : p;
  if (c[k].cls != kSpace) return run_of(c, k, n, c[k].cls);
  return trailing_spaces(c, p, n);
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
std::size_t match_llama3(const std::vector<Char>& c, std::size_t p, std::size_t n, std::size_t max_digits) {
  if (const std::size_t e = contraction(c, p, n, true); e != p) return e;
  const auto newline = [&](std::size_t i) { return c[i].cp == U'\r' || c[i].cp == U'\n'; };
  const Class cls = c[p].cls;
  if (cls != kLetter && cls != kNumber && !newline(p) && p + 1 < n && c[p + 1].cls == kLetter)
    return run_of(c, p + 1, n, kLetter);
  if (cls == kLetter) return run_of(c, p, n, kLetter);
  if (cls == kNumber) {
    std::size_t e = p;
    while (e < n && e - p < max_digits && c[e].cls == kNumber) ++e;
    return e;
  }
  const std::size_t k = c[p].cp == U' ' && p + 1 < n && c[p + 1].cls == kOther ? p + 1 : p;
  if (c[k].cls == kOther) {
    std::size_t e = run_of(c, k, n, kOther);
    while (e < n && newline(e)) ++e;
    return e;
  }
  // \s*[\r\n]+: the greedy \s* gives back down to the last \r or \n of the space run.
  const std::size_t e = run_of(c, p, n, kSpace);
  for (std::size_t q = e; q > p; --q)
    if (newline(q - 1)) return q;
  return trailing_spaces(c, p, n);
}

}  // namespace

const char* regex_pattern(SplitRegex regex) {
  switch (regex) {
    case SplitRegex::Gpt2:
      return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
    case SplitRegex::Llama3:
      return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    case SplitRegex::Qwen2:
      return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  }
  return "";
}

const char* regex_name(SplitRegex regex) {
  switch (regex) {
    case SplitRegex::Gpt2: return "GPT-2";
    case SplitRegex::Llama3: return "Llama 3";
    case SplitRegex::Qwen2: return "Qwen2";
  }
  return "";
}

void split_regex(SplitRegex regex, const std::string& text, Span span, std::vector<Span>* out) {
  thread_local std::vector<Char> chars;
  decode(text, span, &chars);
  const std::size_t n = chars.size() - 1;
  for (std::size_t p = 0; p < n;) {
    std::size_t e = regex == SplitRegex::Gpt2     ? match_gpt2(chars, p, n)
                    : regex == SplitRegex::Llama3 ? match_llama3(chars, p, n, 3)
                                                  : match_llama3(chars, p, n, 1);
    if (e == p) e = p + 1;  // unreachable (every class has an alternative); a gap of one character
    out->push_back({chars[p].offset, chars[e].offset});
    p = e;
  }
}

void split_digits(bool individual, const std::string& text, Span span, std::vector<Span>* out) {
  thread_local std::vector<Char> chars;
  decode(text, span, &chars);
  const std::size_t n = chars.size() - 1;
  for (std::size_t p = 0; p < n;) {
    std::size_t e = p + 1;
    const bool digit = chars[p].cls == kNumber;
    if (!digit || !individual)
      while (e < n && (chars[e].cls == kNumber) == digit) ++e;
    out->push_back({chars[p].offset, chars[e].offset});
    p = e;
  }
}

std::string repair_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      out += char(b);
      ++i;
      continue;
    }
    // Length and the range of the second byte, per the Unicode table of well-formed sequences.
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) len = 2;
    else if (b == 0xE0) len = 3, lo = 0xA0;
    else if (b == 0xED) len = 3, hi = 0x9F;
    else if (b >= 0xE1 && b <= 0xEF) len = 3;
    else if (b == 0xF0) len = 4, lo = 0x90;
    else if (b == 0xF4) len = 4, hi = 0x8F;
    else if (b >= 0xF1 && b <= 0xF3) len = 4;
    std::size_t j = i + 1;
    if (len && j < n && p[j] >= lo && p[j] <= hi) {
      ++j;
      while (j < i + len && j < n && p[j] >= 0x80 && p[j] <= 0xBF) ++j;
    }
    if (len && j == i + len) out.append(s.substr(i, len));
    else out += "\xEF\xBF\xBD";  // U+FFFD for the lead byte and the continuation bytes it took
    i = j;
  }
  return out;
}

std::string nfc_utf8(const std::string& s) {
  for (const char c : s)
    if (static_cast<unsigned char>(c) >= 0xCC) return utf32_to_utf8(unicode::nfc(utf8_to_utf32(s)));
  return s;  // every character is below U+0300 (lead bytes up to 0xCB), which NFC leaves alone
}

const std::string& byte_char(uint8_t byte) {
  static const auto table = [] {
    std::array<std::string, 256> t;
    char32_t next = 256;  // bytes that are not printable map to U+0100 onwards, in byte order
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      t[b] = utf32_to_utf8(std::u32string(1, printable ? char32_t(b) : next++));
    }
    return t;
  }();
  return table[byte];
}

int char_byte(char32_t c) {
  static const auto table = [] {
    std::array<int, 324> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[utf8_to_utf32(byte_char(uint8_t(b)))[0]] = b;
    return t;
  }();
  return c < table.size() ? table[c] : -1;
}

}  // namespace nexus::support::bpe
