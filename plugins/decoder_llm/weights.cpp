#include "weights.hpp"

#include <ATen/ATen.h>
#include <nexus/sha256.hpp>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include <nexus/support/array_headers.hpp>
#include <nexus/support/arrays.hpp>
#include <nexus/support/gguf.hpp>
#include <nexus/support/gguf_vocab.hpp>
#include <nexus/support/json_fields.hpp>
#include <nexus/support/mapped_file.hpp>

namespace nexus_llm {

namespace fs = std::filesystem;
using nexus::support::GgufFile;
using nexus::support::MappedFile;
using nexus::support::shape_text;

namespace {

constexpr std::size_t kMaxIndexBytes = std::size_t(16) << 20;  // model.safetensors.index.json

// ---- GGUF -------------------------------------------------------------------------------------

LlamaConfig config_from_gguf(const GgufFile& g, const std::string& name) {
  LlamaConfig c;
  const auto arch = g.get_string("general.architecture");
  if (arch != "llama" && arch != "qwen2")
    throw std::runtime_error("'" + name + "' holds a '" + arch.substr(0, 40) +
                             "' model; decoder_llm runs llama (Llama, Mistral, SmolLM2) and qwen2");
  c.architecture = arch;
  const std::string a = arch + ".";
  const auto count = [&](const std::string& key, int64_t max) {
    const auto v = g.get_uint(a + key);
    if (v < 1 || v > uint64_t(max)) throw std::runtime_error("'" + name + "': " + a + key + " = " + std::to_string(v) + " is out of range");
    return int64_t(v);
  };
  const auto count_or = [&](const std::string& key, int64_t max, int64_t fallback) {
    return g.find(a + key) ? count(key, max) : fallback;
  };
  c.hidden_size = count("embedding_length", kMaxHiddenSize);
  c.intermediate_size = count("feed_forward_length", kMaxIntermediateSize);
  c.num_layers = count("block_count", kMaxLayers);
  c.num_heads = count("attention.head_count", kMaxHeads);
  c.num_kv_heads = count_or("attention.head_count_kv", kMaxHeads, c.num_heads);
  c.head_dim = count_or("attention.key_length", kMaxHeadDim, count_or("rope.dimension_count", kMaxHeadDim, c.hidden_size / c.num_heads));
  c.max_position_embeddings = count_or("context_length", kMaxPositions, 4096);
  const auto tokens = g.get_strings("tokenizer.ggml.tokens");
  c.vocab_size = count_or("vocab_size", kMaxVocabSize, int64_t(tokens.size()));
  c.rms_norm_eps = g.get_float(a + "attention.layer_norm_rms_epsilon");
  c.rope_theta = g.find(a + "rope.freq_base") ? g.get_float(a + "rope.freq_base") : 10000.0;
  const auto scaling = g.find(a + "rope.scaling.type") ? g.get_string(a + "rope.scaling.type") : std::string("none");
  if (scaling == "linear") {
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = g.get_float(a + "rope.scaling.factor");
  } else if (scaling != "none") {
    throw std::runtime_error("'" + name + "': rope scaling '" + scaling.substr(0, 40) + "' is not supported (linear only)");
  }
  c.attention_bias = arch == "qwen2" || g.tensor("blk.0.attn_q.bias") != nullptr;
  c.output_bias = arch == "llama" && g.tensor("blk.0.attn_output.bias") != nullptr;
  c.validate("'" + name + "'");
  return c;
}

// blk.N.attn_q.weight -> model.layers.N.self_attn.q_proj.weight; "" for names the model has no use for.
std::string hf_name(const std::string& gguf) {
  static const std::map<std::string, std::string> global = {{"token_embd.weight", "model.embed_tokens.weight"},
                                                            {"output_norm.weight", "model.norm.weight"}};
  static const std::map<std::string, std::string> in_block = {
      {"attn_norm.weight", "input_layernorm.weight"},       {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},         {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.weight", "self_attn.k_proj.weight"},         {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.weight", "self_attn.v_proj.weight"},         {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_output.weight", "self_attn.o_proj.weight"},    {"attn_output.bias", "self_attn.o_proj.bias"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},          {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"}};
  if (auto it = global.find(gguf); it != global.end()) return it->second;
  if (gguf.rfind("blk.", 0) != 0) return "";
  const auto dot = gguf.find('.', 4);
  if (dot == std::string::npos) return "";
  const auto index = gguf.substr(4, dot - 4);
  if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos) return "";
  auto it = in_block.find(gguf.substr(dot + 1));
  return it == in_block.end() ? "" : "model.layers." + index + "." + it->second;
}

// llama.cpp's converter reorders each head's rows of Q and K from [half 0 | half 1] to
// interleaved pairs (0, d/2, 1, d/2 + 1, ...); this puts them back. Works on weights [n*d, in]
// and biases [n*d].
at::Tensor unpermute_rows(const at::Tensor& t, int64_t heads) {
  const auto rows = t.size(0);
  auto shape = t.sizes().vec();
  std::vector<int64_t> split = {heads, rows / heads / 2, 2};
  split.insert(split.end(), shape.begin() + 1, shape.end());
  return t.reshape(split).transpose(1, 2).reshape(shape).contiguous();
}

void load_gguf(LoadedDecoder& d, const std::string& path, const WantedTensors& wanted) {
  const auto file = MappedFile::open(path);
  const auto g = nexus::support::parse_gguf(file->data(), file->size(), path);
  d.config = config_from_gguf(g, path);
  if (const auto* factors = g.tensor("rope_freqs.weight")) {
    if (factors->numel() != d.config.head_dim / 2)
      throw std::runtime_error("'" + path + "': rope_freqs.weight has " + std::to_string(factors->numel()) +
                               " values, the model's heads need " + std::to_string(d.config.head_dim / 2));
    std::vector<float> f(std::size_t(factors->numel()));
    nexus::support::dequantize(*factors, file->data(), file->size(), f.data(), path);
    d.config.rope_freq_factors.assign(f.begin(), f.end());
  }
  auto vocab = nexus::support::gguf_bpe_vocab(g);
  d.tokenizer_hash = nexus::support::bpe_vocab_digest(vocab);
  d.tokenizer = std::make_unique<nexus::support::BpeTokenizer>(nexus::support::BpeTokenizer::from_vocab(std::move(vocab)));
  const auto need = wanted(d.config);
  std::map<std::string, const nexus::support::GgufTensor*> by_hf;
  for (const auto& t : g.tensors())
    if (auto n = hf_name(t.name); !n.empty()) by_hf[n] = &t;
  // Every shape first: nothing is allocated for a file that does not fit.
  for (const auto& [name, shape] : need) {
    auto it = by_hf.find(name);
    if (it == by_hf.end()) throw std::runtime_error("'" + path + "' has no tensor for " + name);
    std::vector<int64_t> torch_shape(it->second->ne.rbegin(), it->second->ne.rend());
    if (torch_shape != shape)
      throw std::runtime_error("'" + path + "': tensor '" + it->second->name + "' is " + shape_text(torch_shape) +
                               ", the model config needs " + shape_text(shape));
  }
  for (const auto& [name, shape] : need) {
    const auto& t = *by_hf.at(name);
    auto out = at::empty(shape, at::kFloat);
    nexus::support::dequantize(t, file->data(), file->size(), out.data_ptr<float>(), path);
    if (d.config.architecture == "llama") {
      if (name.find("self_attn.q_proj.") != std::string::npos) out = unpermute_rows(out, d.config.num_heads);
      if (name.find("self_attn.k_proj.") != std::string::npos) out = unpermute_rows(out, d.config.num_kv_heads);
    }
    d.tensors[name] = out;
  }
  d.weights_hash = nexus::sha256_file(path);
}

// ---- Hugging Face folder ----------------------------------------------------------------------

// The safetensors files of a folder: model.safetensors, or the shards its index names.
std::vector<std::string> weight_files(const fs::path& dir) {
  if (fs::exists(dir / "model.safetensors")) return {(dir / "model.safetensors").string()};
  const auto index_path = (dir / "model.safetensors.index.json").string();
  if (!fs::exists(index_path))
    throw std::runtime_error("decoder_llm: '" + dir.string() + "' has neither model.safetensors nor model.safetensors.index.json");
  const auto index = nexus::support::parse_json_object(
      nexus::support::read_small_file(index_path, kMaxIndexBytes, "kMaxIndexBytes", "safetensors index"),
      "safetensors index '" + index_path + "'");
  const auto map = index.find("weight_map");
  if (map == index.end() || !map->is_object())
    throw std::runtime_error("safetensors index '" + index_path + "' has no weight_map object");
  std::set<std::string> files;
  for (const auto& [tensor, file] : map->items()) {
    if (!file.is_string()) throw std::runtime_error("safetensors index '" + index_path + "': '" + tensor + "' names no file");
    const auto f = file.get<std::string>();
    // Names come from a file: they must stay inside the folder.
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
      throw std::runtime_error("safetensors index '" + index_path + "' names a file outside the folder: '" + f.substr(0, 80) + "'");
    files.insert((dir / f).string());
  }
  return {files.begin(), files.end()};
}

void load_folder(LoadedDecoder& d, const fs::path& dir, const WantedTensors& wanted) {
  for (const char* f : {"config.json", "tokenizer.json"})
    if (!fs::exists(dir / f))
      throw std::runtime_error("decoder_llm: '" + dir.string() + "' is not a Hugging Face model folder (no " + f + ")");
  d.config = LlamaConfig::from_json_file((dir / "config.json").string());
  const auto tokenizer_path = (dir / "tokenizer.json").string();
  d.tokenizer = std::make_unique<nexus::support::BpeTokenizer>(nexus::support::BpeTokenizer::from_tokenizer_json(tokenizer_path));
  const auto need = wanted(d.config);
  std::string hashes;
  for (const auto& path : weight_files(dir)) {
    const auto file = MappedFile::open(path);
    bool used = false;
    for (const auto& e : nexus::support::parse_safetensors_header(file->data(), file->size(), path)) {
      auto it = need.find(e.name);
      if (it == need.end()) continue;
      if (e.shape != it->second)
        throw std::runtime_error("weights in '" + path + "': tensor '" + e.name + "' is " + shape_text(e.shape) +
                                 ", the model config needs " + shape_text(it->second));
      used = true;
    }
    if (used)
      for (auto& [name, t] : nexus::support::read_safetensors(file, nexus::support::Storage::View))
        if (need.count(name))  // a copy either way: the mapping is closed when this function returns
          d.tensors[name] = t.scalar_type() == at::kFloat ? t.clone() : t.to(at::kFloat);
    hashes += nexus::sha256_file(path);
  }
  for (const auto& [name, shape] : need)
    if (!d.tensors.count(name)) throw std::runtime_error("decoder_llm: '" + dir.string() + "' has no tensor " + name);
  d.weights_hash = nexus::sha256_hex(hashes);
  d.tokenizer_hash = nexus::sha256_file(tokenizer_path);
}

}  // namespace

LoadedDecoder load_decoder(const std::string& path, const WantedTensors& wanted) {
  LoadedDecoder d;
  if (fs::is_directory(path)) load_folder(d, path, wanted);
  else if (fs::is_regular_file(path)) load_gguf(d, path, wanted);
  else throw std::runtime_error("decoder_llm: '" + path + "' is neither a model folder nor a GGUF file (run scripts/fetch_models.sh?)");
  return d;
}

}  // namespace nexus_llm
