// WordPiece tokenizer that reproduces Hugging Face's BertTokenizer / BertTokenizerFast:
// text cleaning, CJK characters as separate words, lower-casing and accent stripping,
// punctuation splitting, greedy longest-match-first WordPiece with "##" continuations,
// [CLS] ... [SEP] and truncation. Unicode facts come from the generated unicode_tables.hpp (ICU is
// not needed).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace nexus::support {

// from_folder reads these files whole. BERT's vocab.txt is 232 kB, a multilingual one a few MB;
// tokenizer_config.json is a few hundred bytes.
constexpr std::uintmax_t kMaxVocabFileBytes = std::uintmax_t(64) << 20;
constexpr std::uintmax_t kMaxTokenizerConfigBytes = std::uintmax_t(1) << 20;

struct TokenizerConfig {
  bool lowercase = true;
  int strip_accents = -1;  // -1: follow `lowercase` (BertTokenizer's strip_accents=None), 0: no, 1: yes
  bool tokenize_chinese_chars = true;
  std::string unk_token = "[UNK]", cls_token = "[CLS]", sep_token = "[SEP]", pad_token = "[PAD]";
  int64_t max_input_chars_per_word = 100;
  bool strips_accents() const { return strip_accents < 0 ? lowercase : strip_accents == 1; }
};

class WordPieceTokenizer {
 public:
  // `vocab`: one token per entry, id = position (vocab.txt order).
  WordPieceTokenizer(const std::vector<std::string>& vocab, TokenizerConfig config);
  // Reads <folder>/vocab.txt and, if present, <folder>/tokenizer_config.json.
  static WordPieceTokenizer from_folder(const std::string& folder);

  // The ids of [CLS] tokens... [SEP], at most max_length of them (max_length >= 2).
  std::vector<int64_t> encode(const std::string& text, int64_t max_length) const;
  // Word pieces of `text` without special tokens or truncation.
  std::vector<std::string> tokenize(const std::string& text) const;
  // Words after cleaning, lower-casing, accent stripping and punctuation splitting (UTF-32).
  std::vector<std::u32string> basic_tokenize(const std::string& text) const;

  const TokenizerConfig& config() const { return config_; }
  int64_t vocab_size() const { return int64_t(vocab_.size()); }
  int64_t pad_id() const { return pad_id_; }
  int64_t token_id(const std::string& token) const;  // -1 if absent

 private:
  void wordpiece(const std::u32string& word, std::vector<int64_t>* ids, std::vector<std::string>* pieces) const;

  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int64_t> ids_;
  TokenizerConfig config_;
  int64_t unk_id_ = 0, cls_id_ = 0, sep_id_ = 0, pad_id_ = 0;
};

}  // namespace nexus::support
