// Byte-level BPE tokenizer (GPT-2, Llama 3, Qwen2, SmolLM2 and their relatives) that reproduces
// Hugging Face `tokenizers` id for id, read from a tokenizer.json or from the vocabulary a GGUF
// file carries. Torch-free; the design note is at the top of src/bpe.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nexus::support {

// Bounds on what a tokenizer source may hold. Real tokenizer.json files are 2-12 MB with
// 49,152-151,646 tokens (merges one fewer than the tokens, or so) of at most a few hundred bytes.
constexpr std::uintmax_t kMaxTokenizerJsonBytes = std::uintmax_t(64) << 20;
constexpr std::size_t kMaxBpeVocabSize = 4194304;  // tokens, and one past the highest id
constexpr std::size_t kMaxBpeMerges = 4194304;
constexpr std::size_t kMaxBpeTokenBytes = 4096;  // one token's text
constexpr std::size_t kMaxBpeAddedTokens = 65536;

// GGUF's tokenizer.ggml.token_type values.
enum class BpeTokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

// A vocabulary as GGUF metadata holds it (tokenizer.ggml.model "gpt2").
struct BpeVocab {
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens: byte-level text, id = position
  std::vector<std::string> merges;   // tokenizer.ggml.merges: "a b", rank = position
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type (BpeTokenType); empty: all normal
  std::string pre;                   // tokenizer.ggml.pre: llama.cpp's pre-tokenizer name
  bool add_bos = false;              // tokenizer.ggml.add_bos_token
  bool add_eos = false;              // tokenizer.ggml.add_eos_token
  int32_t bos_id = -1, eos_id = -1;  // tokenizer.ggml.bos_token_id / eos_token_id; -1: none
  std::string origin;                // what errors name (the GGUF file)
};

class BpeTokenizer {
 public:
  // A Hugging Face tokenizer.json (at most kMaxTokenizerJsonBytes). Throws std::runtime_error
  // naming the file for anything it cannot reproduce exactly (see the design note).
  static BpeTokenizer from_tokenizer_json(const std::string& path);
  // The same from the file's text; `origin` is what errors name.
  static BpeTokenizer from_tokenizer_json_text(const std::string& json, const std::string& origin);
  // A GGUF vocabulary. Control and user-defined tokens are matched in the raw text as added
  // tokens; `pre` picks the pre-tokenizer (known_pre_names()); add_bos puts bos_id first.
  static BpeTokenizer from_vocab(BpeVocab vocab);
  // The tokenizer.ggml.pre names from_vocab accepts.
  static std::vector<std::string> known_pre_names();

  // Token ids of `utf8` (invalid UTF-8 is repaired first: each maximal invalid subsequence
  // becomes U+FFFD, as Python's errors="replace" decodes it). `add_special`: the tokens the
  // post-processor puts around the text (Llama 3's BOS), as add_special_tokens=True does.
  // Thread-safe. Throws std::length_error for more than 1 GiB of text.
  std::vector<int32_t> encode(const std::string& utf8, bool add_special) const;
  // The text of `ids` (byte-level tokens back to bytes, added tokens as written); for debugging.
  std::string decode(const std::vector<int32_t>& ids) const;

  // One past the highest id of any token (vocabulary and added tokens).
  std::size_t vocab_size() const;
  int32_t bos_id() const;  // -1 if none
  int32_t eos_id() const;  // -1 if none
  // The token's text as the vocabulary holds it (byte-level form; added tokens as written);
  // empty for an id no token has. Throws std::out_of_range outside [0, vocab_size()).
  std::string token(int32_t id) const;
  int32_t token_id(const std::string& token) const;  // -1 if absent
  // The normalizer, pre-tokenizer and post-processor in words, e.g. for a teacher's fingerprint.
  std::string describe() const;

  struct Impl;

 private:
  explicit BpeTokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace nexus::support
