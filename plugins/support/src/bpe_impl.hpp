// Internals of BpeTokenizer shared by bpe.cpp (encoding) and bpe_load.cpp (reading
// tokenizer.json and GGUF vocabularies). Internal to nexus_plugin_parsers.
#pragma once

#include <algorithm>
#include <array>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bpe_pretokenize.hpp"
#include "nexus/support/bpe.hpp"

namespace nexus::support {
namespace bpe {

// The word cache: at most this many words (HF keeps 10,000), each at most this long; a few MB.
constexpr std::size_t kCacheCapacity = 65536;
constexpr std::size_t kCacheMaxWordBytes = 128;

struct Stage {
  enum Kind { kSplit, kDigits, kByteLevel } kind;
  bpe::SplitRegex regex = bpe::SplitRegex::Gpt2;
  bool flag = false;       // Digits: individual_digits; ByteLevel: add_prefix_space
  bool use_regex = false;  // ByteLevel
};

struct AddedToken {
  std::string content;
  int32_t id;
};

// Added tokens by first byte, longest first, for leftmost-longest matching.
struct AddedMatcher {
  std::array<std::vector<AddedToken>, 256> by_byte;
  bool empty = true;

  void add(std::string content, int32_t id) {
    if (content.empty()) return;  // HF skips empty added tokens too
    by_byte[static_cast<unsigned char>(content[0])].push_back({std::move(content), id});
    empty = false;
  }
  void sort() {
    for (auto& list : by_byte)
      std::stable_sort(list.begin(), list.end(),
                       [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  }
  // Calls text(piece) for the text between matches and token(id) for each match, in order.
  template <class Text, class Token>
  void split(std::string_view s, const Text& text, const Token& token) const {
    std::size_t start = 0;
    for (std::size_t i = 0; !empty && i < s.size(); ++i) {
      for (const auto& t : by_byte[static_cast<unsigned char>(s[i])]) {
        if (s.compare(i, t.content.size(), t.content) != 0) continue;
        if (i > start) text(s.substr(start, i - start));
        token(t.id);
        start = i + t.content.size();
        i = start - 1;
        break;
      }
    }
    if (start < s.size()) text(s.substr(start));
  }
};

struct Merge {  // a merge rule: its rank and the token it makes
  int32_t rank, id;
};

}  // namespace bpe

struct BpeTokenizer::Impl {
  std::string origin;
  // The BPE model.
  std::unordered_map<std::string, int32_t> vocab;  // the model's tokens (not added ones)
  std::vector<std::string> tokens;                 // id -> text, model and added tokens
  std::vector<bool> is_added;                      // id -> an added token (decode writes it as is)
  std::unordered_map<std::string, int32_t> added;  // added tokens' text -> id
  std::unordered_map<uint64_t, bpe::Merge> merges; // (left id, right id) -> rank, merged id
  std::array<int32_t, 256> byte_ids{};             // each byte's byte-level character, or -1
  int32_t unk_id = -1;
  bool fuse_unk = false, ignore_merges = false;
  // Text processing.
  bool nfc = false;
  std::vector<bpe::Stage> stages;
  bpe::AddedMatcher raw_added, normalized_added;
  std::vector<int32_t> prefix, suffix;
  int32_t bos = -1, eos = -1;
  // Word cache.
  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("tokenizer '" + origin + "': " + what);
  }
  void set_token(int64_t id, const std::string& text, bool is_added_token);
  void add_merge(const std::string& left, const std::string& right, std::size_t rank);
  // Byte ids, the BOS and EOS ids, and the checks every source needs; call last.
  void finish();
  void pre_tokenize(std::string_view piece, std::vector<int32_t>* out) const;
  void word(std::string_view w, std::vector<int32_t>* out) const;
  std::vector<int32_t> merge_word(std::string_view w) const;
};

}  // namespace nexus::support
