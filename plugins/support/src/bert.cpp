#include "nexus/support/bert.hpp"

#include <nexus/support/cpu_kernels.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/activation.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

namespace nexus_hf {

BertLayerImpl::BertLayerImpl(const BertConfig& c)
    : heads_(c.num_heads), head_dim_(c.hidden_size / c.num_heads), hidden_dropout_(c.hidden_dropout),
      attention_dropout_(c.attention_dropout), act_(c.hidden_act) {
  const auto h = c.hidden_size;
  const auto ln = torch::nn::LayerNormOptions({h}).eps(c.layer_norm_eps);
  query_ = register_module("query", torch::nn::Linear(h, h));
  key_ = register_module("key", torch::nn::Linear(h, h));
  value_ = register_module("value", torch::nn::Linear(h, h));
  attn_out_ = register_module("attn_out", torch::nn::Linear(h, h));
  attn_norm_ = register_module("attn_norm", torch::nn::LayerNorm(ln));
  inter_ = register_module("intermediate", torch::nn::Linear(h, c.intermediate_size));
  out_ = register_module("out", torch::nn::Linear(c.intermediate_size, h));
  out_norm_ = register_module("out_norm", torch::nn::LayerNorm(ln));
}

void BertLayerImpl::prepare(bool use_mkldnn) {
  torch::NoGradGuard no_grad;
  fused_ = {torch::cat({query_->weight, key_->weight, value_->weight}), torch::cat({query_->bias, key_->bias, value_->bias}),
            attn_out_->weight, attn_out_->bias, inter_->weight, inter_->bias, out_->weight, out_->bias};
  mkldnn_ = use_mkldnn;
  for (auto& t : fused_) t = nexus::support::pack_for_linear(t, use_mkldnn);
}

torch::Tensor BertLayerImpl::linear(const torch::Tensor& x, std::size_t i) const {
  return nexus::support::linear(x, fused_[2 * i], fused_[2 * i + 1], mkldnn_);
}

namespace {
torch::Tensor activation(const torch::Tensor& x, const std::string& act) {
  if (act == "gelu") return torch::gelu(x);
  if (act == "relu") return torch::relu(x);
  return torch::gelu(x, "tanh");
}
}  // namespace

torch::Tensor BertLayerImpl::forward_train(const torch::Tensor& x, const torch::Tensor& additive_mask) {
  const auto b = x.size(0), l = x.size(1), h = x.size(2);
  const auto split = [&](const torch::Tensor& t) { return t.view({b, l, heads_, head_dim_}).transpose(1, 2); };
  auto q = split(query_->forward(x)), k = split(key_->forward(x)), v = split(value_->forward(x));
  auto scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(double(head_dim_)) + additive_mask;
  auto probs = torch::dropout(torch::softmax(scores, -1), attention_dropout_, true);
  auto ctx = torch::matmul(probs, v).transpose(1, 2).reshape({b, l, h});
  auto y = attn_norm_->forward(torch::dropout(attn_out_->forward(ctx), hidden_dropout_, true) + x);
  auto mid = activation(inter_->forward(y), act_);
  return out_norm_->forward(torch::dropout(out_->forward(mid), hidden_dropout_, true) + y);
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& additive_mask) {
  if (is_training()) return forward_train(x, additive_mask);
  const auto b = x.size(0), l = x.size(1), h = x.size(2);
  auto qkv = linear(x, 0).view({b, l, 3, heads_, head_dim_}).permute({2, 0, 3, 1, 4});  // [3, B, heads, L, d]
  auto q = qkv[0], k = qkv[1], v = qkv[2];
  auto scores = nexus::support::bmm_nt(q, k, mkldnn_);
  scores.div_(std::sqrt(double(head_dim_))).add_(additive_mask);
  auto probs = torch::softmax(scores, -1);
  auto ctx = nexus::support::bmm_nt(probs, v.transpose(-1, -2), mkldnn_);
  ctx = ctx.transpose(1, 2).reshape({b, l, h});
  auto y = attn_norm_->forward(linear(ctx, 1).add_(x));
  auto mid = activation(linear(y, 2), act_);
  return out_norm_->forward(linear(mid, 3).add_(y));
}

std::map<std::string, torch::Tensor> BertLayerImpl::hf_parameters() {
  std::map<std::string, torch::Tensor> p;
  const auto lin = [&](const std::string& name, torch::nn::Linear& m) {
    p[name + ".weight"] = m->weight;
    p[name + ".bias"] = m->bias;
  };
  const auto norm = [&](const std::string& name, torch::nn::LayerNorm& m) {
    p[name + ".weight"] = m->weight;
    p[name + ".bias"] = m->bias;
  };
  lin("attention.self.query", query_);
  lin("attention.self.key", key_);
  lin("attention.self.value", value_);
  lin("attention.output.dense", attn_out_);
  norm("attention.output.LayerNorm", attn_norm_);
  lin("intermediate.dense", inter_);
  lin("output.dense", out_);
  norm("output.LayerNorm", out_norm_);
  return p;
}

BertModelImpl::BertModelImpl(const BertConfig& c) : config_(c) {
  const auto h = c.hidden_size;
  word_ = register_module("word_embeddings", torch::nn::Embedding(c.vocab_size, h));
  position_ = register_module("position_embeddings", torch::nn::Embedding(c.max_position_embeddings, h));
  token_type_ = register_module("token_type_embeddings", torch::nn::Embedding(c.type_vocab_size, h));
  emb_norm_ = register_module("embeddings_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({h}).eps(c.layer_norm_eps)));
  for (int64_t i = 0; i < c.num_layers; ++i)
    layers_.push_back(register_module("layer" + std::to_string(i), BertLayer(c)));
  eval();
}

torch::Tensor BertModelImpl::forward(const torch::Tensor& ids, const torch::Tensor& mask, int64_t layers) {
  const auto l = ids.size(1);
  if (l > config_.max_position_embeddings)
    throw std::invalid_argument("sequence of " + std::to_string(l) + " tokens is longer than the model's " +
                                std::to_string(config_.max_position_embeddings) + " positions");
  const bool training = is_training();
  if (!training && (!prepared_ || prepared_device_ != word_->weight.device())) prepare();
  auto pos = torch::arange(l, ids.options());
  // token_type 0 everywhere: its embedding row is one vector added to every position.
  auto x = word_->forward(ids) + position_->forward(pos).unsqueeze(0) + token_type_->weight[0];
  x = emb_norm_->forward(x);
  if (training) x = torch::dropout(x, config_.hidden_dropout, true);
  // Additive mask as in Hugging Face: 0 for tokens, the dtype's lowest value for padding.
  auto additive = (1.0 - mask.to(x.scalar_type())).mul_(std::numeric_limits<float>::lowest()).view({ids.size(0), 1, 1, l});
  for (int64_t i = 0; i < layers && i < int64_t(layers_.size()); ++i) x = layers_[std::size_t(i)]->forward(x, additive);
  return x;
}

std::map<std::string, torch::Tensor> BertModelImpl::hf_parameters() {
  std::map<std::string, torch::Tensor> p;
  p["embeddings.word_embeddings.weight"] = word_->weight;
  p["embeddings.position_embeddings.weight"] = position_->weight;
  p["embeddings.token_type_embeddings.weight"] = token_type_->weight;
  p["embeddings.LayerNorm.weight"] = emb_norm_->weight;
  p["embeddings.LayerNorm.bias"] = emb_norm_->bias;
  for (std::size_t i = 0; i < layers_.size(); ++i)
    for (auto& [name, t] : layers_[i]->hf_parameters()) p["encoder.layer." + std::to_string(i) + "." + name] = t;
  return p;
}

void BertModelImpl::load_hf_state(const std::map<std::string, torch::Tensor>& tensors, const std::string& source) {
  // Tensors a BertModel checkpoint may carry that this encoder does not use.
  const auto ignorable = [](const std::string& n) {
    return n == "embeddings.position_ids" || n.rfind("pooler.", 0) == 0 || n.rfind("cls.", 0) == 0;
  };
  const auto strip = [](const std::string& n) { return n.rfind("bert.", 0) == 0 ? n.substr(5) : n; };
  std::map<std::string, const torch::Tensor*> by_name;
  std::vector<std::string> unexpected, missing, mismatched;
  for (const auto& [name, t] : tensors) by_name[strip(name)] = &t;
  auto params = hf_parameters();
  torch::NoGradGuard no_grad;
  for (auto& [name, param] : params) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      missing.push_back(name);
      continue;
    }
    const auto& src = *it->second;
    if (src.sizes() != param.sizes()) {
      std::ostringstream s;
      s << name << " (file " << src.sizes() << ", model " << param.sizes() << ")";
      mismatched.push_back(s.str());
    } else {
      param.copy_(src.to(param.scalar_type()));
    }
  }
  for (const auto& [name, _] : by_name)
    if (!params.count(name) && !ignorable(name)) unexpected.push_back(name);
  prepared_ = false;
  if (missing.empty() && unexpected.empty() && mismatched.empty()) return;
  const auto list = [](const std::vector<std::string>& v) {
    std::string s;
    const std::size_t shown = std::min<std::size_t>(v.size(), 12);
    for (std::size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > shown) s += ", ... (" + std::to_string(v.size() - shown) + " more)";
    return s;
  };
  std::string msg = "weights in '" + source + "' do not fit this BERT config:";
  if (!missing.empty()) msg += " missing " + std::to_string(missing.size()) + " tensor(s): " + list(missing) + ";";
  if (!unexpected.empty()) msg += " unexpected " + std::to_string(unexpected.size()) + " tensor(s): " + list(unexpected) + ";";
  if (!mismatched.empty()) msg += " wrong shape: " + list(mismatched) + ";";
  msg.pop_back();
  throw std::runtime_error(msg);
}

void BertModelImpl::train(bool on) {
  torch::nn::Module::train(on);
  prepared_ = false;
}

void BertModelImpl::prepare() {
  const auto device = word_->weight.device();
  const bool use_mkldnn = nexus::support::use_mkldnn(device, word_->weight.scalar_type());
  for (auto& layer : layers_) layer->prepare(use_mkldnn);
  prepared_ = true;
  prepared_device_ = device;
}

void BertModelImpl::init_random(uint64_t seed) {
  prepared_ = false;
  auto gen = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : hf_parameters()) {
    const bool is_norm = name.find("LayerNorm") != std::string::npos;
    const bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    if (is_bias) p.zero_();
    else if (is_norm) p.fill_(1.0);
    else p.copy_(at::normal(0.0, 0.02, p.sizes(), gen));
  }
}

}  // namespace nexus_hf
