// libFuzzer harness: the WordPiece tokenizer hf_encoder uses. The input is a flags byte, then a
// vocabulary (one token a line) and, after a "\n--\n" line, the text to encode; without that line
// the whole input is text for a small fixed vocabulary.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "nexus/support/wordpiece.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::string input(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<std::string> vocab{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "##s", "a", "##b", "un", "##aff", "##able"};
  std::string text = input;
  if (const auto sep = input.find("\n--\n"); sep != std::string::npos) {
    text = input.substr(sep + 4);
    std::size_t start = 0;
    while (start <= sep) {
      const auto nl = input.find('\n', start);
      const auto end = nl == std::string::npos || nl > sep ? sep : nl;
      vocab.push_back(input.substr(start, end - start));
      start = end + 1;
    }
  }
  nexus::support::TokenizerConfig config;
  config.lowercase = flags & 1;
  config.strip_accents = (flags >> 1) % 3 - 1;
  config.tokenize_chinese_chars = flags & 8;
  const int64_t max_length = 2 + (flags >> 4);
  const nexus::support::WordPieceTokenizer tokenizer(vocab, config);
  const auto ids = tokenizer.encode(text, max_length);
  if (ids.size() < 2 || int64_t(ids.size()) > max_length) __builtin_trap();
  for (const auto id : ids)
    if (id < 0 || id >= tokenizer.vocab_size()) __builtin_trap();
  (void)tokenizer.tokenize(text);
  return 0;
}
