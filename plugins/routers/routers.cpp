// Routers: dense softmax gating and sparse top-k gating over towers.
#include <nexus/plugin_api.hpp>

#include <torch/nn/modules/linear.h>

#include <limits>

namespace {

// Logits from a linear gate, with unavailable towers pushed to -inf so they get no weight.
class LinearGate : public nexus::Router {
 public:
  LinearGate(const char* name, const nexus::Options& o)
      : nexus::Router(name), n_(o.get_int("n_experts")), temperature_(o.get_double("temperature")) {
    if (n_ < 1) throw nexus::OptionError("option 'n_experts' must be >= 1");
    if (temperature_ <= 0) throw nexus::OptionError("option 'temperature' must be > 0");
    gate_ = register_module("gate", torch::nn::Linear(o.get_int("d_in"), n_));
  }
  int64_t num_experts() const override { return n_; }
  int64_t in_features() const override { return gate_->options.in_features(); }

 protected:
  torch::Tensor masked_logits(const torch::Tensor& x, const torch::Tensor& available) {
    auto logits = gate_->forward(x) / temperature_;
    if (available.defined())
      logits = logits.masked_fill(available.logical_not(), -std::numeric_limits<float>::infinity());
    return logits;
  }
  int64_t n_;
  double temperature_;
  torch::nn::Linear gate_{nullptr};
};

class SoftmaxRouter : public LinearGate {
 public:
  explicit SoftmaxRouter(const nexus::Options& o) : LinearGate("SoftmaxRouter", o) {}
  nexus::RouterOutput forward(const torch::Tensor& x, const torch::Tensor& available) override {
    auto logits = masked_logits(x, available);
    auto w = torch::softmax(logits, 1);
    return {w, logits, available.defined() ? available : torch::ones_like(w, torch::kBool)};
  }
};

// Keeps the k largest logits per input and renormalises over them; only those towers run.
class TopKRouter : public LinearGate {
 public:
  explicit TopKRouter(const nexus::Options& o) : LinearGate("TopKRouter", o), k_(o.get_int("k")) {
    if (k_ < 1 || k_ > n_)
      throw nexus::OptionError("option 'k' must be in [1, n_experts=" + std::to_string(n_) + "], got " + std::to_string(k_));
  }
  int64_t top_k() const override { return k_; }
  nexus::RouterOutput forward(const torch::Tensor& x, const torch::Tensor& available) override {
    auto logits = masked_logits(x, available);
    auto top = logits.topk(k_, 1);
    auto kept = torch::full_like(logits, -std::numeric_limits<float>::infinity()).scatter(1, std::get<1>(top), std::get<0>(top));
    auto w = torch::softmax(kept, 1).nan_to_num(0.0);  // a row with nothing available stays all-zero
    return {w, logits, w > 0};
  }

 private:
  int64_t k_;
};

}  // namespace

NEXUS_PLUGIN_BEGIN("nexus_routers", "1.0.0")
NEXUS_ROUTER(SoftmaxRouter, "softmax", "Dense softmax gate over all towers",
             "d_in:int!,n_experts:int!,temperature:float=1", "d_in=8;n_experts=3")
NEXUS_ROUTER(TopKRouter, "topk", "Sparse top-k gate: only the k chosen towers run",
             "d_in:int!,n_experts:int!,k:int=1,temperature:float=1", "d_in=8;n_experts=3;k=2")
NEXUS_PLUGIN_END()
