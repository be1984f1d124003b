#include "nexus/support/gguf_vocab.hpp"

#include <nexus/sha256.hpp>

#include <stdexcept>

namespace nexus::support {

BpeVocab gguf_bpe_vocab(const GgufFile& g) {
  const auto model = g.get_string("tokenizer.ggml.model");
  if (model != "gpt2")
    throw std::runtime_error("'" + g.name() + "' has a '" + model.substr(0, 40) +
                             "' tokenizer; NEXUS reads byte-level BPE vocabularies (tokenizer.ggml.model 'gpt2'), "
                             "not SentencePiece ('llama')");
  BpeVocab v;
  v.origin = g.name();
  v.tokens = g.get_strings("tokenizer.ggml.tokens");
  v.merges = g.get_strings("tokenizer.ggml.merges");
  if (g.find("tokenizer.ggml.token_type"))
    for (auto t : g.get_ints("tokenizer.ggml.token_type")) {
      if (t < 0 || t > 6) throw std::runtime_error("'" + g.name() + "': token type " + std::to_string(t) + " is not one GGUF defines");
      v.token_types.push_back(int32_t(t));
    }
  v.pre = g.find("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "default";
  v.add_bos = g.find("tokenizer.ggml.add_bos_token") && g.get_bool("tokenizer.ggml.add_bos_token");
  v.add_eos = g.find("tokenizer.ggml.add_eos_token") && g.get_bool("tokenizer.ggml.add_eos_token");
  const auto id = [&](const char* key) {
    if (!g.find(key)) return int32_t(-1);
    const auto i = g.get_uint(key);
    if (i >= v.tokens.size())
      throw std::runtime_error("'" + g.name() + "': " + key + " " + std::to_string(i) + " is not a token id (" +
                               std::to_string(v.tokens.size()) + " tokens)");
    return int32_t(i);
  };
  v.bos_id = id("tokenizer.ggml.bos_token_id");
  v.eos_id = id("tokenizer.ggml.eos_token_id");
  return v;
}

std::string bpe_vocab_digest(const BpeVocab& v) {
  std::string all = "pre=" + v.pre + ";bos=" + std::to_string(v.add_bos ? v.bos_id : -1) +
                    ";eos=" + std::to_string(v.add_eos ? v.eos_id : -1) + "\n";
  for (std::size_t i = 0; i < v.tokens.size(); ++i)
    all += v.tokens[i] + "\t" + (i < v.token_types.size() ? std::to_string(v.token_types[i]) : "1") + "\n";
  all += "merges\n";
  for (const auto& m : v.merges) all += m + "\n";
  return nexus::sha256_hex(all);
}

}  // namespace nexus::support
