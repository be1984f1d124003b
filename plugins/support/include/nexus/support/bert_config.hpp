// A Hugging Face BERT config.json, read and checked without libtorch (the fuzz harnesses run it
// under sanitizers): every size is bounded, and checked against the weights file's tensor shapes
// before the model allocates anything, so a config cannot make the plugin allocate without bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nexus/support/array_headers.hpp"

namespace nexus_hf {

// Far above any BERT (base: 30522 tokens, 768 wide, 12 layers of 12 heads, 3072 intermediate,
// 512 positions, 2 token types), yet small enough that no product of them overflows int64.
constexpr int64_t kMaxVocabSize = int64_t(1) << 22;
constexpr int64_t kMaxHiddenSize = int64_t(1) << 16;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxIntermediateSize = int64_t(1) << 18;
constexpr int64_t kMaxPositions = int64_t(1) << 20;
constexpr int64_t kMaxTypeVocabSize = 1024;
// config.json is a few hundred bytes; it is read whole before parsing.
constexpr std::size_t kMaxModelConfigBytes = std::size_t(1) << 20;

struct BertConfig {
  int64_t vocab_size = 30522, hidden_size = 768, num_layers = 12, num_heads = 12, intermediate_size = 3072;
  int64_t max_position_embeddings = 512, type_vocab_size = 2, pad_token_id = 0;
  double layer_norm_eps = 1e-12;
  std::string hidden_act = "gelu";  // gelu (erf), gelu_new / gelu_pytorch_tanh (tanh), relu
  // Dropout in training mode (hidden_dropout_prob, attention_probs_dropout_prob); inference
  // ignores them.
  double hidden_dropout = 0.1, attention_dropout = 0.1;
  // Reads config.json of a Hugging Face model folder; throws for non-BERT architectures it cannot
  // run and for values outside the limits above.
  static BertConfig from_json_file(const std::string& path);
  // The same from the file's text; `path` names it in messages.
  static BertConfig from_json_text(const std::string& text, const std::string& path);
  // Parameters the model holds (embeddings and layers; at least what load_hf_state fills).
  int64_t parameter_count() const;
};

// Throws unless the weights file (its safetensors header) can hold this model: the embeddings'
// shapes match the config and the file has at least as many values as the model has parameters.
// Run before the model is built: a model's size comes from its config, the file's from its bytes.
void check_weights_fit(const BertConfig& config, const std::vector<nexus::support::SafetensorsEntry>& tensors,
                       const std::string& weights_path);

}  // namespace nexus_hf
