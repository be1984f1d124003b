// libFuzzer harness: a decoder LLM's Hugging Face config.json through decoder_llm's reader
// (LlamaConfig::from_json_text), then the tensor list the model would ask the weight files for.
// std::runtime_error is the expected answer to bad input; a config the reader accepts must keep
// every promise validate() makes, since LlamaModel and the loaders size things from it unchecked.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "../../plugins/decoder_llm/llama_config.hpp"

namespace {

bool in(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

void check_accepted(const nexus_llm::LlamaConfig& c) {
  using namespace nexus_llm;
  if (!in(c.vocab_size, 1, kMaxVocabSize) || !in(c.hidden_size, 1, kMaxHiddenSize) ||
      !in(c.intermediate_size, 1, kMaxIntermediateSize) || !in(c.num_layers, 1, kMaxLayers) ||
      !in(c.num_heads, 1, kMaxHeads) || !in(c.num_kv_heads, 1, kMaxHeads) || c.num_heads % c.num_kv_heads != 0 ||
      !in(c.head_dim, 2, kMaxHeadDim) || c.head_dim % 2 != 0 || !in(c.max_position_embeddings, 1, kMaxPositions))
    __builtin_trap();
  if (!(c.rms_norm_eps > 0 && c.rms_norm_eps < 1) || !(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) __builtin_trap();
  if (c.architecture != "llama" && c.architecture != "qwen2") __builtin_trap();
  if ((c.architecture == "qwen2" && (!c.attention_bias || c.output_bias)) || (c.output_bias && !c.attention_bias))
    __builtin_trap();
  // RoPE divides by the factors and by their difference (LlamaModel::rope_inverse_frequencies).
  const auto& r = c.rope_scaling;
  if (r.type != "none" && r.type != "linear" && r.type != "llama3") __builtin_trap();
  if (!(r.factor > 0) || !std::isfinite(r.factor)) __builtin_trap();
  if (r.type == "llama3" && (!(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor) ||
                             !std::isfinite(r.high_freq_factor) || !in(r.original_max_position_embeddings, 1, kMaxPositions)))
    __builtin_trap();
  if (!c.rope_freq_factors.empty()) __builtin_trap();  // only GGUF files carry them
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nexus_llm::LlamaConfig config;
  try {
    config = nexus_llm::LlamaConfig::from_json_text(text, "config.json");
  } catch (const std::runtime_error&) {
    return 0;
  }
  check_accepted(config);
  // The tensors the loaders check the weight files against: every dimension positive, and the
  // whole model's element count (what the files must hold) without overflow.
  const auto shapes = config.tensor_shapes();
  if (shapes.size() != std::size_t(2 + config.num_layers * (9 + (config.attention_bias ? 3 : 0) + config.output_bias)))
    __builtin_trap();
  int64_t total = 0;
  for (const auto& [name, shape] : shapes) {
    int64_t n = 1;
    for (const auto d : shape)
      if (d < 1 || __builtin_mul_overflow(n, d, &n)) __builtin_trap();
    if (__builtin_add_overflow(total, n, &total)) __builtin_trap();
  }
  return 0;
}
