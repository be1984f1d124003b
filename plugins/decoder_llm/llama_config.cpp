#include "llama_config.hpp"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "nexus/support/json_fields.hpp"

namespace nexus_llm {

using nexus::support::json_bool;
using nexus::support::json_int;
using nexus::support::json_number;
using nexus::support::json_string;

namespace {

std::string architecture_of(const nlohmann::json& j, const std::string& context) {
  const auto model_type = json_string(j, "model_type", "", context);
  if (model_type == "llama" || model_type == "mistral") return "llama";
  if (model_type == "qwen2") return "qwen2";
  throw std::runtime_error(context + " has model_type '" + model_type.substr(0, 40) +
                           "'; decoder_llm runs llama, mistral and qwen2 (dense) models");
}

RopeScaling rope_scaling_of(const nlohmann::json& j, const std::string& context) {
  RopeScaling r;
  const auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return r;
  if (!it->is_object()) throw std::runtime_error(context + ": 'rope_scaling' must be an object or null");
  const std::string where = context + " rope_scaling";
  // transformers reads "rope_type", older configs "type".
  r.type = json_string(*it, "rope_type", json_string(*it, "type", "default", where), where);
  if (r.type == "default") {
    r.type = "none";
    return r;
  }
  if (r.type != "linear" && r.type != "llama3")
    throw std::runtime_error(context + ": rope_scaling type '" + r.type.substr(0, 40) +
                             "' is not supported (decoder_llm implements linear and llama3)");
  r.factor = json_number(*it, "factor", 0, 1e6, where, 0);
  if (r.factor == 0) throw std::runtime_error(where + ": 'factor' is missing");
  if (r.type == "llama3") {
    r.low_freq_factor = json_number(*it, "low_freq_factor", 0, 1e6, where, r.low_freq_factor);
    r.high_freq_factor = json_number(*it, "high_freq_factor", 0, 1e6, where, r.high_freq_factor);
    r.original_max_position_embeddings =
        json_int(*it, "original_max_position_embeddings", 1, kMaxPositions, "kMaxPositions", where);
    if (!(r.high_freq_factor > r.low_freq_factor))
      throw std::runtime_error(where + ": 'high_freq_factor' must be larger than 'low_freq_factor'");
  }
  return r;
}

}  // namespace

LlamaConfig LlamaConfig::from_json_file(const std::string& path) {
  return from_json_text(
      nexus::support::read_small_file(path, kMaxModelConfigBytes, "kMaxModelConfigBytes", "model config"), path);
}

LlamaConfig LlamaConfig::from_json_text(const std::string& text, const std::string& path) {
  const std::string context = "model config '" + path + "'";
  const auto j = nexus::support::parse_json_object(text, context);
  LlamaConfig c;
  c.architecture = architecture_of(j, context);
  c.vocab_size = json_int(j, "vocab_size", 1, kMaxVocabSize, "kMaxVocabSize", context);
  c.hidden_size = json_int(j, "hidden_size", 1, kMaxHiddenSize, "kMaxHiddenSize", context);
  c.intermediate_size = json_int(j, "intermediate_size", 1, kMaxIntermediateSize, "kMaxIntermediateSize", context);
  c.num_layers = json_int(j, "num_hidden_layers", 1, kMaxLayers, "kMaxLayers", context);
  c.num_heads = json_int(j, "num_attention_heads", 1, kMaxHeads, "kMaxHeads", context);
  c.num_kv_heads = json_int(j, "num_key_value_heads", 1, kMaxHeads, "kMaxHeads", context, &c.num_heads);
  const int64_t head_dim = c.hidden_size / c.num_heads;
  c.head_dim = json_int(j, "head_dim", 2, kMaxHeadDim, "kMaxHeadDim", context, &head_dim);
  const int64_t positions = 4096;
  c.max_position_embeddings = json_int(j, "max_position_embeddings", 1, kMaxPositions, "kMaxPositions", context, &positions);
  c.rms_norm_eps = json_number(j, "rms_norm_eps", 0, 1, context, c.rms_norm_eps);
  c.rope_theta = json_number(j, "rope_theta", 0, 1e12, context, c.rope_theta);
  c.rope_scaling = rope_scaling_of(j, context);
  const auto act = json_string(j, "hidden_act", "silu", context);
  if (act != "silu") throw std::runtime_error(context + ": hidden_act '" + act.substr(0, 40) + "' is not supported (silu only)");
  // Qwen2 always has Q, K and V biases (its config has no key for them); Llama's attention_bias
  // adds them to Q, K, V and O.
  c.attention_bias = c.architecture == "qwen2" || json_bool(j, "attention_bias", false, context);
  c.output_bias = c.architecture == "llama" && c.attention_bias;
  if (json_bool(j, "mlp_bias", false, context)) throw std::runtime_error(context + ": mlp_bias is not supported");
  if (c.architecture == "qwen2" && json_bool(j, "use_sliding_window", false, context))
    throw std::runtime_error(context + ": use_sliding_window is not supported");
  c.validate(context);
  return c;
}

void LlamaConfig::validate(const std::string& source) const {
  const auto fail = [&](const std::string& what) { return std::runtime_error(source + ": " + what); };
  if (vocab_size < 1 || vocab_size > kMaxVocabSize) throw fail("vocab size out of range (kMaxVocabSize)");
  if (hidden_size < 1 || hidden_size > kMaxHiddenSize) throw fail("hidden size out of range (kMaxHiddenSize)");
  if (intermediate_size < 1 || intermediate_size > kMaxIntermediateSize) throw fail("intermediate size out of range");
  if (num_layers < 1 || num_layers > kMaxLayers) throw fail("layer count out of range (kMaxLayers)");
  if (num_heads < 1 || num_heads > kMaxHeads || num_kv_heads < 1 || num_kv_heads > kMaxHeads)
    throw fail("head counts out of range (kMaxHeads)");
  if (num_heads % num_kv_heads != 0)
    throw fail("num_attention_heads (" + std::to_string(num_heads) + ") must be a multiple of num_key_value_heads (" +
               std::to_string(num_kv_heads) + ")");
  if (head_dim < 2 || head_dim > kMaxHeadDim || head_dim % 2 != 0) throw fail("head_dim must be even, in [2, 1024]");
  if (!(rms_norm_eps > 0 && rms_norm_eps < 1)) throw fail("rms_norm_eps must be in (0, 1)");
  if (!(rope_theta > 0)) throw fail("rope_theta must be positive");
  if (max_position_embeddings < 1 || max_position_embeddings > kMaxPositions) throw fail("positions out of range");
}

std::map<std::string, std::vector<int64_t>> LlamaConfig::tensor_shapes() const {
  std::map<std::string, std::vector<int64_t>> s;
  const int64_t q = num_heads * head_dim, kv = num_kv_heads * head_dim;
  s["model.embed_tokens.weight"] = {vocab_size, hidden_size};
  s["model.norm.weight"] = {hidden_size};
  for (int64_t i = 0; i < num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    s[p + "input_layernorm.weight"] = {hidden_size};
    s[p + "post_attention_layernorm.weight"] = {hidden_size};
    s[p + "self_attn.q_proj.weight"] = {q, hidden_size};
    s[p + "self_attn.k_proj.weight"] = {kv, hidden_size};
    s[p + "self_attn.v_proj.weight"] = {kv, hidden_size};
    s[p + "self_attn.o_proj.weight"] = {hidden_size, q};
    if (attention_bias) {
      s[p + "self_attn.q_proj.bias"] = {q};
      s[p + "self_attn.k_proj.bias"] = {kv};
      s[p + "self_attn.v_proj.bias"] = {kv};
    }
    if (output_bias) s[p + "self_attn.o_proj.bias"] = {hidden_size};
    s[p + "mlp.gate_proj.weight"] = {intermediate_size, hidden_size};
    s[p + "mlp.up_proj.weight"] = {intermediate_size, hidden_size};
    s[p + "mlp.down_proj.weight"] = {hidden_size, intermediate_size};
  }
  return s;
}

}  // namespace nexus_llm
