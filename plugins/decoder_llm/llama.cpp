#include "llama.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include <nexus/support/cpu_kernels.hpp>

namespace nexus_llm {

namespace {
std::string layer_prefix(int64_t i) { return "model.layers." + std::to_string(i) + "."; }
}  // namespace

LlamaModel::LlamaModel(const LlamaConfig& config, int64_t deepest) : config_(config), deepest_(deepest) {
  config_.validate("decoder_llm config");
  if (deepest < 0 || deepest > config.num_layers)
    throw std::invalid_argument("hidden state " + std::to_string(deepest) + " does not exist: the model has states 0 to " +
                                std::to_string(config.num_layers));
  layers_kept_ = std::min(deepest, config.num_layers);
}

std::map<std::string, std::vector<int64_t>> LlamaModel::needed_tensors() const {
  std::map<std::string, std::vector<int64_t>> out;
  for (auto& [name, shape] : config_.tensor_shapes()) {
    if (name == "model.norm.weight" && deepest_ < config_.num_layers) continue;
    if (name.rfind("model.layers.", 0) == 0) {
      const auto index = std::stoll(name.substr(13, name.find('.', 13) - 13));
      if (index >= layers_kept_) continue;
    }
    out.emplace(name, shape);
  }
  return out;
}

void LlamaModel::load(std::map<std::string, at::Tensor> tensors, const std::string& source) {
  std::vector<std::string> missing, mismatched;
  std::map<std::string, at::Tensor> weights;
  for (auto& [name, shape] : needed_tensors()) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      missing.push_back(name);
      continue;
    }
    if (it->second.sizes() != at::IntArrayRef(shape)) {
      std::ostringstream s;
      s << name << " (file " << it->second.sizes() << ", config " << at::IntArrayRef(shape) << ")";
      mismatched.push_back(s.str());
      continue;
    }
    weights[name] = it->second.to(at::kFloat);
  }
  if (!missing.empty() || !mismatched.empty()) {
    std::string msg = "weights in '" + source + "' do not fit the model config:";
    const auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (std::size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
      return v.size() > 8 ? s + ", ... (" + std::to_string(v.size() - 8) + " more)" : s;
    };
    if (!missing.empty()) msg += " missing " + std::to_string(missing.size()) + " tensor(s): " + list(missing) + ";";
    if (!mismatched.empty()) msg += " wrong shape: " + list(mismatched) + ";";
    msg.pop_back();
    throw std::runtime_error(msg);
  }
  fuse(std::move(weights));
}

void LlamaModel::init_random(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  std::map<std::string, at::Tensor> weights;
  for (auto& [name, shape] : needed_tensors()) {
    const bool norm = name.find("norm") != std::string::npos;
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    weights[name] = norm ? at::ones(shape) : bias ? at::full(shape, 0.01) : at::normal(0.0, 0.02, shape, gen);
  }
  fuse(std::move(weights));
}

// Fuses Q, K, V (and gate, up) so each layer does three large products instead of six. Each
// per-name tensor is released once fused, so a model never holds its weights twice.
void LlamaModel::fuse(std::map<std::string, at::Tensor> weights) {
  const auto take = [&](const std::string& name) {
    auto node = weights.extract(name);
    return node.empty() ? at::Tensor() : std::move(node.mapped());
  };
  const auto fused = [&](std::initializer_list<std::string> names) {
    std::vector<at::Tensor> parts;
    for (const auto& n : names) parts.push_back(take(n));
    return at::cat(parts);
  };
  source_embed_ = take("model.embed_tokens.weight");
  source_final_norm_ = take("model.norm.weight");
  source_layers_.clear();
  for (int64_t i = 0; i < layers_kept_; ++i) {
    const auto p = layer_prefix(i);
    Layer l;
    l.attn_norm = take(p + "input_layernorm.weight");
    l.mlp_norm = take(p + "post_attention_layernorm.weight");
    l.qkv_w = fused({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"});
    if (config_.attention_bias)
      l.qkv_b = fused({p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"});
    l.o_w = take(p + "self_attn.o_proj.weight");
    if (config_.output_bias) l.o_b = take(p + "self_attn.o_proj.bias");
    l.gate_up_w = fused({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"});
    l.down_w = take(p + "mlp.down_proj.weight");
    source_layers_.push_back(std::move(l));
  }
  embed_ = final_norm_ = at::Tensor();
  layers_.clear();
  prepared_ = false;
}

void LlamaModel::to(const c10::Device& device, c10::ScalarType dtype) {
  if (dtype != at::kFloat && dtype != at::kBFloat16) throw std::invalid_argument("decoder_llm computes in float32 or bfloat16");
  device_ = device;
  dtype_ = dtype;
  prepared_ = false;
}

// Converts the fused weights to the device and dtype and packs them for oneDNN when it applies.
// A float32 oneDNN copy is exact, so the dense source is dropped once packed (the model holds its
// linear weights once) and rebuilt from the packed copy if the model is moved again.
void LlamaModel::prepare() {
  if (!source_embed_.defined()) throw std::logic_error("decoder_llm: the model has no weights (load() first)");
  static constexpr at::Tensor Layer::*kLinear[] = {&Layer::qkv_w, &Layer::qkv_b, &Layer::o_w,
                                                    &Layer::o_b,   &Layer::gate_up_w, &Layer::down_w};
  for (std::size_t i = 0; i < layers_.size() && i < source_layers_.size(); ++i)
    for (auto field : kLinear)
      if (!(source_layers_[i].*field).defined() && (layers_[i].*field).defined())
        source_layers_[i].*field = (layers_[i].*field).to_dense();
  mkldnn_ = nexus::support::use_mkldnn(device_, dtype_);
  const auto opts = at::TensorOptions().dtype(dtype_).device(device_);
  const auto w = [&](const at::Tensor& t) { return t.defined() ? t.to(opts) : t; };
  embed_ = w(source_embed_);
  final_norm_ = deepest_ == config_.num_layers ? w(source_final_norm_) : at::Tensor();
  layers_.clear();
  for (auto& s : source_layers_) {
    Layer l;
    l.attn_norm = w(s.attn_norm);
    l.mlp_norm = w(s.mlp_norm);
    for (auto field : kLinear) {
      if (!(s.*field).defined()) continue;
      l.*field = nexus::support::pack_for_linear(w(s.*field), mkldnn_);
      if ((l.*field).is_mkldnn() && dtype_ == at::kFloat) s.*field = at::Tensor();
    }
    layers_.push_back(std::move(l));
  }
  prepared_ = true;
}

at::Tensor LlamaModel::linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const {
  return nexus::support::linear(x, w, b, mkldnn_);
}

// As transformers' LlamaRMSNorm: the mean square in float32 whatever the compute dtype.
at::Tensor LlamaModel::rms_norm(const at::Tensor& x, const at::Tensor& weight) const {
  auto x32 = x.to(at::kFloat);
  auto normed = x32 * at::rsqrt(x32.pow(2).mean(-1, true).add_(config_.rms_norm_eps));
  return weight * normed.to(x.scalar_type());
}

// transformers' inverse frequencies, with its linear and llama3 scaling (float64 here, float32 out).
at::Tensor LlamaModel::rope_inverse_frequencies() const {
  const auto d = config_.head_dim;
  auto inv = 1.0 / at::pow(config_.rope_theta, at::arange(0, d, 2, at::kDouble) / double(d));
  const auto& r = config_.rope_scaling;
  if (r.type == "linear") inv = inv / r.factor;
  if (r.type == "llama3") {
    const double low_wavelen = double(r.original_max_position_embeddings) / r.low_freq_factor;
    const double high_wavelen = double(r.original_max_position_embeddings) / r.high_freq_factor;
    auto wavelen = 2 * M_PI / inv;
    auto scaled = at::where(wavelen > low_wavelen, inv / r.factor, inv);
    auto smooth = (double(r.original_max_position_embeddings) / wavelen - r.low_freq_factor) /
                  (r.high_freq_factor - r.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
    auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv = at::where(medium, smoothed, scaled);
  }
  if (!config_.rope_freq_factors.empty())
    inv = inv / at::tensor(config_.rope_freq_factors, at::TensorOptions().dtype(at::kDouble));
  return inv.to(at::kFloat);
}

namespace {
at::Tensor rotate_half(const at::Tensor& x) {
  const auto half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}
}  // namespace

at::Tensor LlamaModel::layer_forward(const Layer& layer, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                     const at::Tensor& causal) const {
  const auto b = x.size(0), l = x.size(1);
  const auto nh = config_.num_heads, nkv = config_.num_kv_heads, hd = config_.head_dim;
  auto h = rms_norm(x, layer.attn_norm);
  auto qkv = linear(h, layer.qkv_w, layer.qkv_b);
  auto q = qkv.narrow(-1, 0, nh * hd).view({b, l, nh, hd}).transpose(1, 2);
  auto k = qkv.narrow(-1, nh * hd, nkv * hd).view({b, l, nkv, hd}).transpose(1, 2);
  auto v = qkv.narrow(-1, (nh + nkv) * hd, nkv * hd).view({b, l, nkv, hd}).transpose(1, 2);
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  if (nkv != nh) {  // grouped-query attention: each K/V head serves nh / nkv query heads
    k = k.repeat_interleave(nh / nkv, 1);
    v = v.repeat_interleave(nh / nkv, 1);
  }
  auto scores = nexus::support::bmm_nt(q.contiguous(), k.contiguous(), mkldnn_);
  scores.mul_(1.0 / std::sqrt(double(hd))).add_(causal);
  auto probs = at::softmax(scores.to(at::kFloat), -1).to(q.scalar_type());
  auto ctx = nexus::support::bmm_nt(probs, v.transpose(-1, -2).contiguous(), mkldnn_);
  ctx = ctx.transpose(1, 2).reshape({b, l, nh * hd});
  auto y = x + linear(ctx, layer.o_w, layer.o_b);
  auto gate_up = linear(rms_norm(y, layer.mlp_norm), layer.gate_up_w, at::Tensor());
  const auto inter = config_.intermediate_size;
  auto act = at::silu(gate_up.narrow(-1, 0, inter)) * gate_up.narrow(-1, inter, inter);
  return y + linear(act, layer.down_w, at::Tensor());
}

std::vector<at::Tensor> LlamaModel::forward(const at::Tensor& ids, const std::vector<int64_t>& states) {
  for (auto s : states)
    if (s < 0 || s > deepest_)
      throw std::invalid_argument("hidden state " + std::to_string(s) + " was not kept (deepest " + std::to_string(deepest_) + ")");
  if (!prepared_) prepare();
  c10::InferenceMode guard;
  const auto l = ids.size(1);
  auto x = at::embedding(embed_, ids.to(device_));
  // Right padding: a real token's keys are all real tokens before it, so the causal mask alone
  // keeps padding out of every position that is pooled.
  auto causal = at::full({l, l}, -std::numeric_limits<float>::infinity(), x.options()).triu_(1);
  auto positions = at::arange(l, at::TensorOptions().dtype(at::kFloat).device(device_));
  auto freqs = at::outer(positions, rope_inverse_frequencies().to(device_));
  auto emb = at::cat({freqs, freqs}, -1);
  auto cos = emb.cos().to(x.scalar_type()), sin = emb.sin().to(x.scalar_type());
  std::vector<at::Tensor> out(states.size());
  const auto keep = [&](int64_t index, const at::Tensor& t) {
    for (std::size_t i = 0; i < states.size(); ++i)
      if (states[i] == index) out[i] = t.to(at::kFloat);
  };
  keep(0, x);
  for (int64_t i = 0; i < layers_kept_; ++i) {
    x = layer_forward(layers_[std::size_t(i)], x, cos, sin, causal);
    // transformers' last hidden state is after the final norm; the others are the residual stream.
    if (i + 1 < config_.num_layers) keep(i + 1, x);
  }
  if (deepest_ == config_.num_layers) keep(config_.num_layers, rms_norm(x, final_norm_));
  return out;
}

}  // namespace nexus_llm
