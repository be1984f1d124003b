// BERT encoder (Hugging Face BertModel) in libtorch: embeddings + N post-LayerNorm transformer
// layers. Parameters map onto the Hugging Face tensor names.
//
// Two paths through the same parameters. In eval mode (the default; hf_encoder serves it) forward
// runs prepared inference weights: Q, K and V fused, pre-packed for oneDNN on the CPU, no autograd.
// In training mode (`nexus distill`'s student) it runs the parameters themselves with autograd and
// the config's dropout, as Hugging Face's BertModel.train() does. Switching modes re-prepares the
// inference weights on the next eval forward, so weights changed by training are always used.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <map>
#include <string>
#include <vector>

#include "nexus/support/bert_config.hpp"

namespace nexus_hf {

class BertLayerImpl : public torch::nn::Module {
 public:
  BertLayerImpl(const BertConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& additive_mask);
  // Hugging Face names (relative to "encoder.layer.N.") of this layer's parameters.
  std::map<std::string, torch::Tensor> hf_parameters();
  // Builds the inference weights from the parameters: Q, K and V fused into one matrix and, on
  // the CPU, every matrix pre-packed for oneDNN (far faster than a generic BLAS). Call again
  // after the parameters change or move.
  void prepare(bool use_mkldnn);

 private:
  torch::Tensor linear(const torch::Tensor& x, std::size_t i) const;
  torch::Tensor forward_train(const torch::Tensor& x, const torch::Tensor& additive_mask);

  int64_t heads_, head_dim_;
  double hidden_dropout_, attention_dropout_;
  std::string act_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr}, attn_out_{nullptr}, inter_{nullptr}, out_{nullptr};
  torch::nn::LayerNorm attn_norm_{nullptr}, out_norm_{nullptr};
  std::vector<torch::Tensor> fused_;  // weight, bias of: qkv, attention output, intermediate, output
  bool mkldnn_ = false;
};
TORCH_MODULE(BertLayer);

class BertModelImpl : public torch::nn::Module {
 public:
  explicit BertModelImpl(const BertConfig& c);
  // Hidden states after `layers` encoder layers (0 = embeddings output), [B, L, H].
  // ids, mask: [B, L] int64 (mask 1 = token, 0 = padding).
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask, int64_t layers);
  const BertConfig& config() const { return config_; }
  // Every parameter under its Hugging Face name (embeddings.*, encoder.layer.N.*).
  std::map<std::string, torch::Tensor> hf_parameters();
  // Copies `tensors` (Hugging Face names, optional "bert." prefix) into the parameters. Throws,
  // listing every missing, unexpected or mis-shaped tensor, unless all match. `source` names the
  // file in messages.
  void load_hf_state(const std::map<std::string, torch::Tensor>& tensors, const std::string& source);
  // Random initialisation like Hugging Face's (normal(0, 0.02), LayerNorm 1/0) from a private
  // generator, so it neither reads nor advances the global seed.
  void init_random(uint64_t seed);
  // Prepares every layer's inference weights for the device the parameters are on; forward()
  // calls it when needed (after loading, init_random() or to()).
  void prepare();
  // Training mode runs autograd over the parameters; leaving it re-prepares the inference weights.
  void train(bool on = true) override;

 private:
  BertConfig config_;
  torch::nn::Embedding word_{nullptr}, position_{nullptr}, token_type_{nullptr};
  torch::nn::LayerNorm emb_norm_{nullptr};
  std::vector<BertLayer> layers_;
  bool prepared_ = false;
  c10::Device prepared_device_{c10::kCPU};
};
TORCH_MODULE(BertModel);

}  // namespace nexus_hf
