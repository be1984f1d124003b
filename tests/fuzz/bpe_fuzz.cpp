// libFuzzer harness: the byte-level BPE tokenizer (support::BpeTokenizer). The first byte picks
// what the rest is: with its top bit set, a tokenizer.json (std::runtime_error is the expected
// answer; an accepted one must encode a fixed text into ids of its vocabulary); otherwise text,
// encoded with a small fixed vocabulary under the pre-tokenizer (flags % 4: gpt-2, llama-bpe,
// qwen2, smollm). Any text encodes; ids lie in the vocabulary; and without Qwen2's NFC, decoding
// gives back the text after UTF-8 repair (byte-level BPE loses nothing).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../plugins/support/src/bpe_pretokenize.hpp"
#include "nexus/support/bpe.hpp"

namespace {

using nexus::support::BpeTokenizer;

BpeTokenizer make(const std::string& pre) {
  nexus::support::BpeVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(nexus::support::bpe::byte_char(uint8_t(b)));
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"i", "n"}, {"Ġ", "a"}, {"e", "r"}, {"Ġ", "Ġ"}, {"ĠĠ", "ĠĠ"},
      {"in", "g"}, {"Ġa", "n"}, {"Ġan", "d"}, {"o", "u"}, {"Ċ", "Ċ"}, {"1", "2"}, {"12", "3"}, {"'", "s"}};
  for (const auto& [a, b] : merges) {
    v.merges.push_back(a + " " + b);
    v.tokens.push_back(a + b);
  }
  v.token_types.assign(v.tokens.size(), 1);
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>"}) {
    v.tokens.push_back(special);
    v.token_types.push_back(std::string(special) == "<tool>" ? 4 : 3);
  }
  v.pre = pre;
  v.add_bos = true;
  v.bos_id = int32_t(v.tokens.size()) - 3;
  v.origin = "fuzz vocabulary";
  return BpeTokenizer::from_vocab(v);
}

void check_ids(const BpeTokenizer& tok, const std::vector<int32_t>& ids) {
  for (const auto id : ids)
    if (id < 0 || std::size_t(id) >= tok.vocab_size()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const std::string input(reinterpret_cast<const char*>(data + 1), size - 1);
  if (flags & 0x80) {
    try {
      const auto tok = BpeTokenizer::from_tokenizer_json_text(input, "tokenizer.json");
      check_ids(tok, tok.encode("Hello world, it's 12345 <|endoftext|> caf\xC3\xA9\n\n  x", true));
    } catch (const std::runtime_error&) {
    }
    return 0;
  }
  static const BpeTokenizer tokenizers[4] = {make("gpt-2"), make("llama-bpe"), make("qwen2"), make("smollm")};
  const auto& tok = tokenizers[flags % 4];
  const auto ids = tok.encode(input, (flags & 4) != 0);
  check_ids(tok, ids);
  if (!input.empty() && ids.empty()) __builtin_trap();
  if (flags % 4 != 2) {
    const auto plain = tok.encode(input, false);
    if (tok.decode(plain) != nexus::support::bpe::repair_utf8(input)) __builtin_trap();
  }
  return 0;
}
