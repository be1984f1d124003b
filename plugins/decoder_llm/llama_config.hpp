// The shape of a Llama-family decoder (Llama 2/3, Mistral, Qwen2/2.5, SmolLM2), read without
// libtorch from a Hugging Face config.json or from a GGUF file's metadata, and checked against
// sane limits and against the weight files before the model allocates anything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace nexus_llm {

// Far above any model this plugin is for (Llama 3 405B: 128256 tokens, 16384 wide, 126 layers,
// 128 heads, 53248 intermediate, 131072 positions), small enough that no product overflows int64.
constexpr int64_t kMaxVocabSize = int64_t(1) << 22;
constexpr int64_t kMaxHiddenSize = int64_t(1) << 16;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxIntermediateSize = int64_t(1) << 18;
constexpr int64_t kMaxPositions = int64_t(1) << 22;
constexpr std::size_t kMaxModelConfigBytes = std::size_t(1) << 20;

// RoPE frequency scaling as Hugging Face's rope_scaling (only what this plugin implements).
struct RopeScaling {
  std::string type = "none";  // none, linear, llama3
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;       // llama3
  int64_t original_max_position_embeddings = 8192;             // llama3
};

struct LlamaConfig {
  std::string architecture = "llama";  // llama or qwen2 (Qwen2 has Q, K and V biases)
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0;
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, max_position_embeddings = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // Per-frequency divisors (head_dim / 2 of them) as GGUF files store Llama 3.1's scaling (the
  // rope_freqs tensor); empty when absent.
  std::vector<double> rope_freq_factors;
  bool attention_bias = false;  // Q, K, V (and for Llama's attention_bias also O) biases
  bool output_bias = false;

  // config.json of a Hugging Face folder (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM);
  // `path` names the file in messages.
  static LlamaConfig from_json_file(const std::string& path);
  static LlamaConfig from_json_text(const std::string& text, const std::string& path);
  // Checks the relations between the sizes (heads divide, head_dim even, ...) and the limits.
  void validate(const std::string& source) const;
  // Every tensor the model needs, under its Hugging Face name, with its shape [out, in] / [n].
  std::map<std::string, std::vector<int64_t>> tensor_shapes() const;
};

}  // namespace nexus_llm
