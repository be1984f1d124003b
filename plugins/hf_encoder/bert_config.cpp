#include "bert_config.hpp"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace nexus_hf {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// An integer field, read strictly: a float, a string or a value outside [min, max] is an error
// naming the field and its limit, before anything is sized from it.
int64_t bounded(const nlohmann::json& j, const char* key, int64_t min, int64_t max, const char* limit,
                const std::string& path, const int64_t* fallback = nullptr) {
  const auto it = j.find(key);
  if (it == j.end()) {
    if (fallback) return *fallback;
    throw std::runtime_error("model config '" + path + "': '" + key + "' is missing");
  }
  // JSON reads every non-negative integer as unsigned, so both bounds apply to either kind.
  const bool in_range =
      it->is_number_unsigned()  ? it->get<uint64_t>() <= uint64_t(max) && int64_t(it->get<uint64_t>()) >= min
      : it->is_number_integer() ? it->get<int64_t>() >= min && it->get<int64_t>() <= max
                                : false;
  if (!in_range)
    throw std::runtime_error("model config '" + path + "': '" + key + "' must be an integer in [" + std::to_string(min) +
                             ", " + std::to_string(max) + "]" + (limit[0] ? std::string(" (") + limit + ")" : "") +
                             ", got " + it->dump().substr(0, 40));
  return it->get<int64_t>();
}

std::string text_field(const nlohmann::json& j, const char* key, const std::string& fallback, const std::string& path) {
  const auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (!it->is_string())
    throw std::runtime_error("model config '" + path + "': '" + key + "' must be a string, got " + it->dump().substr(0, 40));
  return it->get<std::string>();
}

}  // namespace

BertConfig BertConfig::from_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read model config '" + path + "'");
  std::string text(kMaxModelConfigBytes + 1, '\0');
  in.read(text.data(), std::streamsize(text.size()));
  text.resize(std::size_t(in.gcount()));
  if (text.size() > kMaxModelConfigBytes)
    throw std::runtime_error("model config '" + path + "' is larger than " + std::to_string(kMaxModelConfigBytes) +
                             " bytes (kMaxModelConfigBytes); a config.json is a few hundred");
  return from_json_text(text, path);
}

BertConfig BertConfig::from_json_text(const std::string& text, const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("cannot parse model config '" + path + "': " + e.what());
  }
  if (!j.is_object()) throw std::runtime_error("model config '" + path + "' is not a JSON object");
  const auto model_type = text_field(j, "model_type", "bert", path);
  if (model_type != "bert")
    throw std::runtime_error("model config '" + path + "' has model_type '" + model_type.substr(0, 40) +
                             "'; hf_encoder runs BERT models only");
  const auto pos_type = text_field(j, "position_embedding_type", "absolute", path);
  if (pos_type != "absolute")
    throw std::runtime_error("model config '" + path + "': position_embedding_type '" + pos_type.substr(0, 40) +
                             "' is not supported");
  BertConfig c;
  c.vocab_size = bounded(j, "vocab_size", 1, kMaxVocabSize, "kMaxVocabSize", path);
  c.hidden_size = bounded(j, "hidden_size", 1, kMaxHiddenSize, "kMaxHiddenSize", path);
  c.num_layers = bounded(j, "num_hidden_layers", 0, kMaxLayers, "kMaxLayers", path);
  c.num_heads = bounded(j, "num_attention_heads", 1, kMaxHeads, "kMaxHeads", path);
  c.intermediate_size = bounded(j, "intermediate_size", 1, kMaxIntermediateSize, "kMaxIntermediateSize", path);
  const int64_t positions = 512, types = 2, pad = 0;
  c.max_position_embeddings = bounded(j, "max_position_embeddings", 1, kMaxPositions, "kMaxPositions", path, &positions);
  c.type_vocab_size = bounded(j, "type_vocab_size", 1, kMaxTypeVocabSize, "kMaxTypeVocabSize", path, &types);
  c.pad_token_id = bounded(j, "pad_token_id", 0, c.vocab_size - 1, "", path, &pad);
  if (const auto eps = j.find("layer_norm_eps"); eps != j.end()) {
    if (!eps->is_number() || !(eps->get<double>() > 0 && eps->get<double>() < 1))
      throw std::runtime_error("model config '" + path + "': 'layer_norm_eps' must be a number in (0, 1), got " +
                               eps->dump().substr(0, 40));
    c.layer_norm_eps = eps->get<double>();
  }
  c.hidden_act = text_field(j, "hidden_act", "gelu", path);
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
