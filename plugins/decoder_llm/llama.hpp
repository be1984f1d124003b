// A Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM2) in libtorch, for features only: one
// forward pass over whole sequences, no KV cache, no generation, no language-model head.
// RMSNorm, rotary position embeddings (Hugging Face's half-split layout, the config's theta and
// linear or llama3 frequency scaling), grouped-query attention with a causal mask, SwiGLU MLP, and
// Qwen2's Q/K/V biases. Weights arrive under their Hugging Face names whatever file they came from
// (GGUF tensors are renamed and un-permuted by the loader).
//
// Only the layers up to the deepest requested state are kept and run: asking for layer 12 of a
// 30-layer model neither loads nor computes layers 13 to 30.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <map>
#include <string>
#include <vector>

#include "llama_config.hpp"

namespace nexus_llm {

class LlamaModel {
 public:
  // `deepest`: the deepest hidden state any caller will ask for, in transformers' numbering of
  // output_hidden_states (0 = token embeddings, i = after layer i, num_layers = after the final
  // norm). Layers past it are not built.
  LlamaModel(const LlamaConfig& config, int64_t deepest);

  // Every tensor the kept layers need, with its shape (a subset of config.tensor_shapes()).
  std::map<std::string, std::vector<int64_t>> needed_tensors() const;
  // Takes the tensors named by needed_tensors() (float32; others in `tensors` are ignored). Throws
  // listing every missing or mis-shaped tensor; `source` names the file(s) in messages.
  void load(std::map<std::string, at::Tensor> tensors, const std::string& source);
  // Random weights (normal(0, 0.02), norms 1, biases 0.01) from a private generator, for tests.
  void init_random(uint64_t seed);

  // The hidden states `states` (each in [0, deepest]) for right-padded ids [B, L] (int64); rows
  // may be shorter than L (their padding positions hold garbage, which callers mask out). Each is
  // [B, L, hidden] float32.
  std::vector<at::Tensor> forward(const at::Tensor& ids, const std::vector<int64_t>& states);

  // Compute dtype (kFloat or kBFloat16) and device; the weights are converted and re-prepared.
  void to(const c10::Device& device, c10::ScalarType dtype);
  const LlamaConfig& config() const { return config_; }
  int64_t deepest() const { return deepest_; }

 private:
  struct Layer {
    at::Tensor attn_norm, mlp_norm;
    at::Tensor qkv_w, qkv_b, o_w, o_b, gate_up_w, down_w;  // Q, K, V fused; gate and up fused
  };
  void fuse(std::map<std::string, at::Tensor> weights);
  void prepare();
  at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const;
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) const;
  at::Tensor layer_forward(const Layer& layer, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                           const at::Tensor& causal) const;
  at::Tensor rope_inverse_frequencies() const;

  LlamaConfig config_;
  int64_t deepest_ = 0, layers_kept_ = 0;
  // The weights fused and float32 as loaded (the only full copy), and what prepare() made of them
  // for the device and dtype: the same tensors for float32 on the CPU without oneDNN.
  at::Tensor source_embed_, source_final_norm_;
  std::vector<Layer> source_layers_;
  at::Tensor embed_, final_norm_;
  std::vector<Layer> layers_;
  c10::Device device_{c10::kCPU};
  c10::ScalarType dtype_ = c10::kFloat;
  bool mkldnn_ = false, prepared_ = false;
};

}  // namespace nexus_llm
