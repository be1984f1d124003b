#include "nexus/support/bert_config.hpp"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "nexus/support/array_headers.hpp"
#include "nexus/support/json_fields.hpp"

namespace nexus_hf {

using nexus::support::json_int;
using nexus::support::json_number;
using nexus::support::json_string;
using nexus::support::parse_json_object;
using nexus::support::read_small_file;
using nexus::support::shape_text;

BertConfig BertConfig::from_json_file(const std::string& path) {
  return from_json_text(read_small_file(path, kMaxModelConfigBytes, "kMaxModelConfigBytes", "model config"), path);
}

BertConfig BertConfig::from_json_text(const std::string& text, const std::string& path) {
  const std::string context = "model config '" + path + "'";
  const auto j = parse_json_object(text, context);
  const auto model_type = json_string(j, "model_type", "bert", context);
  if (model_type != "bert")
    throw std::runtime_error("model config '" + path + "' has model_type '" + model_type.substr(0, 40) +
                             "'; hf_encoder runs BERT models only");
  const auto pos_type = json_string(j, "position_embedding_type", "absolute", context);
  if (pos_type != "absolute")
    throw std::runtime_error("model config '" + path + "': position_embedding_type '" + pos_type.substr(0, 40) +
                             "' is not supported");
  BertConfig c;
  c.vocab_size = json_int(j, "vocab_size", 1, kMaxVocabSize, "kMaxVocabSize", context);
  c.hidden_size = json_int(j, "hidden_size", 1, kMaxHiddenSize, "kMaxHiddenSize", context);
  c.num_layers = json_int(j, "num_hidden_layers", 0, kMaxLayers, "kMaxLayers", context);
  c.num_heads = json_int(j, "num_attention_heads", 1, kMaxHeads, "kMaxHeads", context);
  c.intermediate_size = json_int(j, "intermediate_size", 1, kMaxIntermediateSize, "kMaxIntermediateSize", context);
  const int64_t positions = 512, types = 2, pad = 0;
  c.max_position_embeddings = json_int(j, "max_position_embeddings", 1, kMaxPositions, "kMaxPositions", context, &positions);
  c.type_vocab_size = json_int(j, "type_vocab_size", 1, kMaxTypeVocabSize, "kMaxTypeVocabSize", context, &types);
  c.pad_token_id = json_int(j, "pad_token_id", 0, c.vocab_size - 1, "", context, &pad);
  c.layer_norm_eps = json_number(j, "layer_norm_eps", 0, 1, context, c.layer_norm_eps);
  c.hidden_act = json_string(j, "hidden_act", "gelu", context);
  c.hidden_dropout = json_number(j, "hidden_dropout_prob", 0, 1, context, c.hidden_dropout);
  c.attention_dropout = json_number(j, "attention_probs_dropout_prob", 0, 1, context, c.attention_dropout);
  if (c.hidden_act != "gelu" && c.hidden_act != "gelu_new" && c.hidden_act != "gelu_pytorch_tanh" && c.hidden_act != "relu")
    throw std::runtime_error("model config '" + path + "': hidden_act '" + c.hidden_act.substr(0, 40) + "' is not supported");
  if (c.hidden_size % c.num_heads != 0)
    throw std::runtime_error("model config '" + path + "': hidden_size must be a positive multiple of num_attention_heads");
  return c;
}

int64_t BertConfig::parameter_count() const {
  const int64_t h = hidden_size, i = intermediate_size;
  // Q, K, V and the attention output (h x h + h each), the feed-forward pair, two LayerNorms.
  const int64_t per_layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h;
  return (vocab_size + max_position_embeddings + type_vocab_size) * h + 2 * h + num_layers * per_layer;
}

void check_weights_fit(const BertConfig& c, const std::vector<nexus::support::SafetensorsEntry>& tensors,
                       const std::string& weights_path) {
  const auto fail = [&](const std::string& what) {
    return std::runtime_error("weights in '" + weights_path + "' do not fit the model config: " + what);
  };
  const std::pair<const char*, std::vector<int64_t>> embeddings[] = {
      {"embeddings.word_embeddings.weight", {c.vocab_size, c.hidden_size}},
      {"embeddings.position_embeddings.weight", {c.max_position_embeddings, c.hidden_size}},
      {"embeddings.token_type_embeddings.weight", {c.type_vocab_size, c.hidden_size}}};
  int64_t values = 0;  // bounded by the file's size, which the header parser checked
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (const auto d : t.shape) n *= d;
    values += n;
    const std::string name = t.name.rfind("bert.", 0) == 0 ? t.name.substr(5) : t.name;
    for (const auto& [expected_name, shape] : embeddings)
      if (name == expected_name && t.shape != shape)
        throw fail(t.name + " is " + shape_text(t.shape) + ", the config asks for " + shape_text(shape));
  }
  if (c.parameter_count() > values)
    throw fail("the config asks for " + std::to_string(c.parameter_count()) + " parameters (" +
               std::to_string(c.num_layers) + " layers, hidden_size " + std::to_string(c.hidden_size) +
               ", intermediate_size " + std::to_string(c.intermediate_size) + ", vocab_size " +
               std::to_string(c.vocab_size) + "), the file holds " + std::to_string(values) + " values");
}

}  // namespace nexus_hf
