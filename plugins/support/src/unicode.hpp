// Character classes and case/accent mappings BertTokenizer relies on, over the generated tables.
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

}  // namespace nexus::support::unicode
