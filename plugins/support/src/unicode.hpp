// Character classes and case/accent mappings BertTokenizer relies on, and the classes and NFC the
// byte-level BPE tokenizer relies on, over the generated tables (scripts/gen_unicode_tables.py,
// whose docstring notes the Unicode-version risk against Hugging Face `tokenizers`).
#pragma once

#include <string>

namespace nexus::support::unicode {

bool is_control(char32_t c);      // BertTokenizer._is_control (category C*, except \t \n \r)
bool is_whitespace(char32_t c);   // BertTokenizer._is_whitespace (space, \t \n \r, Zs)
bool is_punctuation(char32_t c);  // BertTokenizer._is_punctuation (ASCII symbols, P*)
bool is_cjk(char32_t c);          // BertTokenizer._is_chinese_char
bool is_split_space(char32_t c);  // what Python's str.split() splits on after cleaning
// Python's str.lower() applied to each character on its own (full case mapping, no final-sigma
// context), which is what BertTokenizer ends up doing: PreTrainedTokenizer.tokenize lower-cases
// the text one character at a time before BasicTokenizer sees it.
std::u32string lower(const std::u32string& s);
// NFD, then drop Mn marks (BertTokenizer._run_strip_accents).
std::u32string strip_accents(const std::u32string& s);

bool is_letter(char32_t c);       // \p{L}: category L*
// \p{N}: category N*; also Rust's char::is_numeric, except for 13 digits new in Unicode 17.
bool is_number(char32_t c);
// \s as Oniguruma (the regex engine of `tokenizers`) defines it for Unicode: \t \n \v \f \r,
// U+0085, and categories Zs, Zl, Zp; the same set as the White_Space property.
bool is_regex_space(char32_t c);
// Unicode Normalization Form C (canonical decomposition, canonical ordering, canonical
// composition), for Qwen2's normalizer.
std::u32string nfc(const std::u32string& s);

}  // namespace nexus::support::unicode
