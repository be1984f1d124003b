// Where a decoder's weights and vocabulary come from: a Hugging Face folder (config.json,
// model.safetensors or sharded safetensors with model.safetensors.index.json, tokenizer.json) or a
// GGUF file (llama.cpp's format: metadata, vocabulary and quantised tensors in one file). Both end
// as the same thing: a LlamaConfig, float32 tensors under Hugging Face names, and a tokenizer.
//
// GGUF specifics handled here: tensor names (blk.N.attn_q.weight -> model.layers.N.self_attn.
// q_proj.weight), ggml's dimension order (ne[0] is the row), dequantisation at load, and for the
// llama architecture the Q/K row permutation llama.cpp's converter applies (it interleaves the two
// rotary halves of each head; transformers keeps them split): undone so that one model serves both.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nexus/support/bpe.hpp>

#include "llama_config.hpp"

namespace nexus_llm {

struct LoadedDecoder {
  LlamaConfig config;
  std::map<std::string, at::Tensor> tensors;  // Hugging Face names, float32; only those asked for
  std::unique_ptr<nexus::support::BpeTokenizer> tokenizer;
  std::string weights_hash, tokenizer_hash;    // sha256 of the weight file(s) and the vocabulary
};

// The tensors a model of a given config needs, with their shapes (LlamaModel::needed_tensors).
using WantedTensors = std::function<std::map<std::string, std::vector<int64_t>>(const LlamaConfig&)>;
// Reads the config and the vocabulary, then the tensors `wanted` asks for, each checked against its
// shape before it is converted or dequantised. `path`: a folder or a .gguf file.
LoadedDecoder load_decoder(const std::string& path, const WantedTensors& wanted);

}  // namespace nexus_llm
