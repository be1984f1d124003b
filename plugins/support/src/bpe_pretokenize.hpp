// The text side of the byte-level BPE tokenizer (bpe.cpp): UTF-8 repair, the pre-tokenizer
// splits of Hugging Face `tokenizers` that byte-level models use, and the GPT-2 byte-to-unicode
// mapping. Internal to nexus_plugin_parsers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nexus::support::bpe {

// Valid UTF-8 for `s`: each maximal invalid subsequence (Unicode's "maximal subpart" practice)
// becomes U+FFFD, which is what Python's bytes.decode("utf-8", errors="replace") and Rust's
// String::from_utf8_lossy produce.
std::string repair_utf8(std::string_view s);

// Canonical composition (NFC) of valid UTF-8.
std::string nfc_utf8(const std::string& s);

// The three split regexes real byte-level tokenizers use, matched by hand (see bpe_pretokenize.cpp).
enum class SplitRegex { Gpt2, Llama3, Qwen2 };
// The exact pattern string of a regex as tokenizer.json writes it.
const char* regex_pattern(SplitRegex regex);
const char* regex_name(SplitRegex regex);

// A byte range [begin, end) of the text being pre-tokenized.
struct Span {
  uint32_t begin, end;
};

// Appends the pieces of text[span] as a Split(regex, behavior Isolated) pre-tokenizer makes
// them: the regex's matches and the gaps between them, without empty pieces.
void split_regex(SplitRegex regex, const std::string& text, Span span, std::vector<Span>* out);
// The Digits pre-tokenizer: numeric characters (Rust's char::is_numeric) isolated, one each or
// as runs.
void split_digits(bool individual, const std::string& text, Span span, std::vector<Span>* out);

// GPT-2's bytes_to_unicode: the UTF-8 text of the character each byte stands for.
const std::string& byte_char(uint8_t byte);
// The inverse: the byte a byte-level character stands for, or -1.
int char_byte(char32_t c);

}  // namespace nexus::support::bpe
