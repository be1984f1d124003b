// Router: per-input gating weights over N towers (experts), computed fresh for every input.
#pragma once

#include <torch/nn/module.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace nexus {

struct RouterOutput {
  torch::Tensor weights;   // [B, N], >= 0; rows sum to 1 for softmax-style routers
  torch::Tensor logits;    // [B, N] pre-gate scores (for z-loss / load-balancing); may be undefined
  torch::Tensor selected;  // [B, N] bool: towers that must run for each input (all true if dense)
};

struct RoutingStats {
  int64_t samples = 0;
  std::vector<double> mean_weight;  // per tower
  std::vector<double> load;         // per tower: fraction of inputs that selected it
  double entropy = 0.0;             // mean per-input entropy of the weights (nats)
};

class Router : public torch::nn::Module {
 public:
  explicit Router(const std::string& name) : torch::nn::Module(name) {}

  virtual int64_t num_experts() const = 0;
  virtual int64_t in_features() const = 0;
  // How many towers run per input (num_experts() for dense routers).
  virtual int64_t top_k() const { return num_experts(); }

  // x: [B, in_features()]. available: optional [B, N] bool; towers marked false (e.g. a text
  // teacher for an image input) must get weight 0 and not be selected.
  virtual RouterOutput forward(const torch::Tensor& x, const torch::Tensor& available) = 0;

  // What hosts call: forward() plus routing statistics, so every router reports them.
  RouterOutput route(const torch::Tensor& x, const torch::Tensor& available = {}) {
    auto out = forward(x, available);
    record(out);
    return out;
  }

  RoutingStats stats() const {
    RoutingStats s;
    s.samples = samples_;
    if (samples_ == 0) return s;
    auto w = (weight_sum_ / double(samples_)).to(torch::kCPU).to(torch::kDouble).contiguous();
    auto l = (load_sum_ / double(samples_)).to(torch::kCPU).to(torch::kDouble).contiguous();
    s.mean_weight.assign(w.data_ptr<double>(), w.data_ptr<double>() + w.numel());
    s.load.assign(l.data_ptr<double>(), l.data_ptr<double>() + l.numel());
    s.entropy = entropy_sum_.item<double>() / double(samples_);
    return s;
  }
  void reset_stats() {
    samples_ = 0;
    weight_sum_ = load_sum_ = entropy_sum_ = torch::Tensor();
  }

  // Run by the registry's probe: shapes, non-negative finite weights, normalisation, top-k.
  virtual void self_test() {
    const int64_t n = num_experts(), b = 5;
    auto out = route(torch::randn({b, in_features()}));
    if (out.weights.dim() != 2 || out.weights.size(0) != b || out.weights.size(1) != n)
      throw std::runtime_error("route() weights have the wrong shape, expected [5, " + std::to_string(n) + "]");
    if (!out.weights.isfinite().all().item<bool>() || (out.weights < 0).any().item<bool>())
      throw std::runtime_error("route() weights must be finite and >= 0");
    auto picked = (out.weights > 0).sum(1).max().item<int64_t>();
    if (picked > top_k())
      throw std::runtime_error("route() gave weight to " + std::to_string(picked) + " towers, top_k() is " +
                               std::to_string(top_k()));
    if (n > 1) {  // a tower marked unavailable must get nothing
      auto avail = torch::ones({b, n}, torch::kBool);
      avail.select(1, 0).fill_(false);
      auto masked = forward(torch::randn({b, in_features()}), avail);
      if (masked.weights.select(1, 0).abs().sum().item<double>() != 0.0)
        throw std::runtime_error("route() gave weight to a tower marked unavailable");
    }
    reset_stats();
  }

 private:
  void record(const RouterOutput& out) {
    torch::NoGradGuard no_grad;
    auto w = out.weights.detach().to(torch::kFloat);
    auto sel = out.selected.defined() ? out.selected.to(torch::kFloat) : (w > 0).to(torch::kFloat);
    auto ent = -(w * (w + 1e-12).log()).sum(1).sum();
    if (samples_ == 0) {
      weight_sum_ = w.sum(0);
      load_sum_ = sel.sum(0);
      entropy_sum_ = ent;
    } else {
      weight_sum_ += w.sum(0);
      load_sum_ += sel.sum(0);
      entropy_sum_ += ent;
    }
    samples_ += w.size(0);
  }

  int64_t samples_ = 0;
  torch::Tensor weight_sum_, load_sum_, entropy_sum_;
};

}  // namespace nexus
