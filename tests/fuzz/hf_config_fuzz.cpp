// libFuzzer harness: a Hugging Face config.json through hf_encoder's checks, then against a
// weights header that fits the all-MiniLM-L6-v2 shapes. std::runtime_error is the expected answer
// to bad input; a config the checks accept must describe a model no larger than the weights.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "nexus/support/bert_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nexus_hf::BertConfig config;
  try {
    config = nexus_hf::BertConfig::from_json_text(text, "config.json");
  } catch (const std::runtime_error&) {
    return 0;
  }
  // What the checks promise of an accepted config: every size inside its limit, heads divide the
  // width, and no product of the sizes overflows.
  using namespace nexus_hf;
  const auto& c = config;
  if (c.vocab_size < 1 || c.vocab_size > kMaxVocabSize || c.hidden_size < 1 || c.hidden_size > kMaxHiddenSize ||
      c.num_layers < 0 || c.num_layers > kMaxLayers || c.num_heads < 1 || c.num_heads > kMaxHeads ||
      c.intermediate_size < 1 || c.intermediate_size > kMaxIntermediateSize || c.max_position_embeddings < 1 ||
      c.max_position_embeddings > kMaxPositions || c.type_vocab_size < 1 || c.type_vocab_size > kMaxTypeVocabSize ||
      c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size || c.hidden_size % c.num_heads != 0 ||
      !(c.layer_norm_eps > 0 && c.layer_norm_eps < 1))
    __builtin_trap();
  if (config.parameter_count() < 0) __builtin_trap();
  // A file of 22.7 M values whose embeddings are those of all-MiniLM-L6-v2.
  std::vector<nexus::support::SafetensorsEntry> weights(2);
  weights[0].name = "embeddings.word_embeddings.weight";
  weights[0].shape = {30522, 384};
  weights[1].name = "encoder.rest";
  weights[1].shape = {22713216 - 30522 * 384};
  try {
    nexus_hf::check_weights_fit(config, weights, "model.safetensors");
    if (config.parameter_count() > 22713216) __builtin_trap();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
