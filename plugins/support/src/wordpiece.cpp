#include "nexus/support/wordpiece.hpp"

#include <nexus/text.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "unicode.hpp"

namespace nexus::support {
namespace fs = std::filesystem;

namespace {

// Both files are read whole; a model folder is data, so their size is checked first.
void check_size(const fs::path& file, std::uintmax_t limit, const char* limit_name) {
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (!ec && size > limit)
    throw std::runtime_error("'" + file.string() + "' has " + std::to_string(size) + " bytes, more than " +
                             std::to_string(limit) + " (" + limit_name + ")");
}

}  // namespace

WordPieceTokenizer::WordPieceTokenizer(const std::vector<std::string>& vocab, TokenizerConfig config)
    : vocab_(vocab), config_(std::move(config)) {
  ids_.reserve(vocab_.size());
  for (std::size_t i = 0; i < vocab_.size(); ++i) ids_[vocab_[i]] = int64_t(i);  // later duplicates win, as in HF
  const auto need = [&](const std::string& tok) {
    const auto id = token_id(tok);
    if (id < 0) throw std::runtime_error("vocabulary has no special token '" + tok + "'");
    return id;
  };
  unk_id_ = need(config_.unk_token);
  cls_id_ = need(config_.cls_token);
  sep_id_ = need(config_.sep_token);
  pad_id_ = need(config_.pad_token);
}

WordPieceTokenizer WordPieceTokenizer::from_folder(const std::string& folder) {
  const auto vocab_path = fs::path(folder) / "vocab.txt";
  check_size(vocab_path, kMaxVocabFileBytes, "kMaxVocabFileBytes");
  std::ifstream in(vocab_path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read vocabulary '" + vocab_path.string() + "'");
  std::vector<std::string> vocab;
  for (std::string line; std::getline(in, line);) vocab.push_back(line);  // HF strips only "\n"
  if (vocab.empty()) throw std::runtime_error("vocabulary '" + vocab_path.string() + "' is empty");

  TokenizerConfig cfg;
  const auto cfg_path = fs::path(folder) / "tokenizer_config.json";
  if (fs::exists(cfg_path)) {
    check_size(cfg_path, kMaxTokenizerConfigBytes, "kMaxTokenizerConfigBytes");
    std::ifstream cin(cfg_path);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(cin);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("cannot parse '" + cfg_path.string() + "': " + e.what());
    }
    if (j.contains("do_lower_case") && j["do_lower_case"].is_boolean()) cfg.lowercase = j["do_lower_case"];
    if (j.contains("strip_accents") && j["strip_accents"].is_boolean()) cfg.strip_accents = j["strip_accents"] ? 1 : 0;
    if (j.contains("tokenize_chinese_chars") && j["tokenize_chinese_chars"].is_boolean())
      cfg.tokenize_chinese_chars = j["tokenize_chinese_chars"];
    const auto token = [&](const char* key, std::string* out) {
      if (!j.contains(key)) return;
      const auto& v = j[key];
      if (v.is_string()) *out = v.get<std::string>();
      else if (v.is_object() && v.contains("content") && v["content"].is_string()) *out = v["content"].get<std::string>();
    };
    token("unk_token", &cfg.unk_token);
    token("cls_token", &cfg.cls_token);
    token("sep_token", &cfg.sep_token);
    token("pad_token", &cfg.pad_token);
  }
  return WordPieceTokenizer(vocab, cfg);
}

int64_t WordPieceTokenizer::token_id(const std::string& token) const {
  const auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

std::vector<std::u32string> WordPieceTokenizer::basic_tokenize(const std::string& text) const {
  // Clean (drop NUL, U+FFFD and control characters; whitespace becomes ' ') and put spaces
  // around CJK characters.
  std::u32string clean;
  const auto in = utf8_to_utf32(text);
  clean.reserve(in.size());
  for (const char32_t c : in) {
    if (c == 0 || c == 0xFFFD || unicode::is_control(c)) continue;
    if (unicode::is_whitespace(c)) {
      clean += U' ';
    } else if (config_.tokenize_chinese_chars && unicode::is_cjk(c)) {
      clean += U' ';
      clean += c;
      clean += U' ';
    } else {
      clean += c;
    }
  }
  std::vector<std::u32string> words;
  const bool strip = config_.strips_accents();
  std::size_t i = 0;
  while (i < clean.size()) {
    while (i < clean.size() && unicode::is_split_space(clean[i])) ++i;
    std::size_t j = i;
    while (j < clean.size() && !unicode::is_split_space(clean[j])) ++j;
    if (j == i) break;
    std::u32string word = clean.substr(i, j - i);
    i = j;
    if (config_.lowercase) word = unicode::lower(word);
    if (strip) word = unicode::strip_accents(word);
    // Punctuation splitting: each punctuation character is a word of its own.
    std::u32string cur;
    for (const char32_t c : word) {
      if (unicode::is_punctuation(c)) {
        if (!cur.empty()) words.push_back(std::move(cur));
        cur.clear();
        words.emplace_back(1, c);
      } else if (unicode::is_split_space(c)) {  // lower-casing never creates spaces, but be safe
        if (!cur.empty()) words.push_back(std::move(cur));
        cur.clear();
      } else {
        cur += c;
      }
    }
    if (!cur.empty()) words.push_back(std::move(cur));
  }
  return words;
}

void WordPieceTokenizer::wordpiece(const std::u32string& word, std::vector<int64_t>* ids,
                                   std::vector<std::string>* pieces) const {
  const auto emit = [&](int64_t id) {
    if (ids) ids->push_back(id);
    if (pieces) pieces->push_back(vocab_[std::size_t(id)]);
  };
  if (int64_t(word.size()) > config_.max_input_chars_per_word) return emit(unk_id_);
  // Byte offset of every code point, so candidate pieces are substrings of one UTF-8 string.
  const std::string utf8 = utf32_to_utf8(word);
  std::vector<std::size_t> offset(word.size() + 1, 0);
  for (std::size_t k = 0, b = 0; k < word.size(); ++k) {
    offset[k] = b;
    const char32_t c = word[k];
    b += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    offset[k + 1] = b;
  }
  std::vector<int64_t> found;
  std::size_t start = 0;
  std::string candidate;
  while (start < word.size()) {
    std::size_t end = word.size();
    int64_t id = -1;
    while (start < end) {
      candidate.assign(start > 0 ? "##" : "");
      candidate.append(utf8, offset[start], offset[end] - offset[start]);
      id = token_id(candidate);
      if (id >= 0) break;
      --end;
    }
    if (id < 0) return emit(unk_id_);
    found.push_back(id);
    start = end;
  }
  for (const auto id : found) emit(id);
}

std::vector<int64_t> WordPieceTokenizer::encode(const std::string& text, int64_t max_length) const {
  if (max_length < 2) throw std::invalid_argument("max_length must be at least 2 ([CLS] and [SEP])");
  std::vector<int64_t> ids{cls_id_};
  for (const auto& word : basic_tokenize(text)) {
    wordpiece(word, &ids, nullptr);
    if (int64_t(ids.size()) >= max_length - 1) break;
  }
  if (int64_t(ids.size()) > max_length - 1) ids.resize(std::size_t(max_length - 1));
  ids.push_back(sep_id_);
  return ids;
}

std::vector<std::string> WordPieceTokenizer::tokenize(const std::string& text) const {
  std::vector<std::string> pieces;
  for (const auto& word : basic_tokenize(text)) wordpiece(word, nullptr, &pieces);
  return pieces;
}

}  // namespace nexus::support
