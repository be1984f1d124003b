// The byte-level BPE vocabulary a GGUF file carries (llama.cpp's tokenizer.ggml.* keys), for
// BpeTokenizer::from_vocab. Kept apart from both the GGUF reader and the tokenizer: neither needs
// the other.
#pragma once

#include <string>

#include "nexus/support/bpe.hpp"
#include "nexus/support/gguf.hpp"

namespace nexus::support {

// Throws naming the file when the vocabulary is not byte-level BPE (tokenizer.ggml.model "gpt2"),
// e.g. SentencePiece ("llama"), or when a key has the wrong type.
BpeVocab gguf_bpe_vocab(const GgufFile& g);
// sha256 of everything in `v` that shapes tokenization: a teacher's fingerprint includes it.
std::string bpe_vocab_digest(const BpeVocab& v);

}  // namespace nexus::support
