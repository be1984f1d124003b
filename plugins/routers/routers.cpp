// Routers: dense softmax gating, sparse top-k gating, independent sigmoid gates and a
// task/modality-conditioned gate over towers.
#include <nexus/plugin_api.hpp>

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <limits>
#include <string>

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

// Softmax over masked logits (unavailable towers at -inf). A row where nothing is available gets
// all-zero weights and a zero gradient: a plain softmax would give NaN there, and NaN gradients
// would poison the gate's parameters for the whole batch.
torch::Tensor safe_softmax(const torch::Tensor& logits) {
  const auto any = logits.isfinite().any(1, true);
  return torch::softmax(logits.masked_fill(any.logical_not(), 0.0), 1) * any;
}

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
    if (k_ == 1) {
      // One survivor gets weight exactly 1, which has no gradient: the gate would never learn.
      // Straight-through: the value stays one-hot, the gradient is the full softmax's.
      const auto soft = safe_softmax(logits);
      w = w + (soft - soft.detach());  // bracketed: exactly w in value
    }
    return {w, logits, w > 0};
  }

 private:
  int64_t k_;
};

// The k largest logits of each row kept, the rest at -inf.
torch::Tensor keep_top_k(const torch::Tensor& logits, int64_t k) {
  auto top = logits.topk(k, 1);
  return torch::full_like(logits, -std::numeric_limits<float>::infinity()).scatter(1, std::get<1>(top), std::get<0>(top));
}

// Independent per-tower gates: each tower is switched on by its own evidence, so several can be
// fully on at once, or none; the towers do not compete for a fixed budget as under a softmax.
// normalize=true divides by the sum (+ epsilon) when the fused vector's scale must not depend on
// how many gates are open.
class SigmoidRouter : public LinearGate {
 public:
  explicit SigmoidRouter(const nexus::Options& o)
      : LinearGate("SigmoidRouter", o), normalize_(o.get_bool("normalize")), epsilon_(o.get_double("epsilon")) {
    if (epsilon_ <= 0) throw nexus::OptionError("option 'epsilon' must be > 0");
  }
  nexus::RouterOutput forward(const torch::Tensor& x, const torch::Tensor& available) override {
    auto logits = masked_logits(x, available);
    auto w = torch::sigmoid(logits);  // exactly 0 at -inf
    if (normalize_) w = w / (w.sum(1, true) + epsilon_);
    return {w, logits, available.defined() ? available : torch::ones_like(w, torch::kBool)};
  }

  void self_test() override {
    nexus::Router::self_test();
    if (n_ < 2) return;
    torch::NoGradGuard no_grad;
    const auto x = torch::randn({4, in_features()});
    auto avail = torch::ones({4, n_}, torch::kBool);
    const auto all = forward(x, {}).weights;
    avail.select(1, 0).fill_(false);
    const auto masked = forward(x, avail).weights;
    if (normalize_) {
      if ((all.sum(1) - 1).abs().max().item<double>() > 1e-3)
        throw std::runtime_error("normalize=true but the weights do not sum to 1");
    } else if (!torch::allclose(all.slice(1, 1), masked.slice(1, 1))) {
      // Independence is the point of this router: masking one tower must leave the others alone.
      throw std::runtime_error("masking tower 0 changed the other towers' sigmoid gates");
    }
  }

 private:
  bool normalize_;
  double epsilon_;
};

// Task- or modality-conditioned gate. The host appends a one-hot context vector (task or
// modality id) as the last n_context columns of the router input:
//   logits = (f(features) + context . table) / temperature
// with f linear (hidden=0) or a one-hidden-layer MLP, and a learned [n_context, n_experts] table
// of per-context biases. The context columns are used as mixing weights over the table's rows:
// a one-hot selects one row, all-zero adds nothing, and any other values (a probe's random input,
// a mixture of tasks) still give finite, differentiable logits. The table starts at zero, so an
// untrained router is exactly a plain softmax (or top-k) router over the features: the context
// only matters once training has found it useful.
class ConditionedRouter : public nexus::Router {
 public:
  explicit ConditionedRouter(const nexus::Options& o)
      : nexus::Router("ConditionedRouter"), d_in_(o.get_int("d_in")), n_(o.get_int("n_experts")),
        n_context_(o.get_int("n_context")), k_(o.get_int("top_k")), temperature_(o.get_double("temperature")) {
    if (n_ < 1) throw nexus::OptionError("option 'n_experts' must be >= 1");
    if (n_context_ < 1) throw nexus::OptionError("option 'n_context' must be >= 1");
    if (d_in_ - n_context_ < 1)
      throw nexus::OptionError("option 'd_in' (" + std::to_string(d_in_) + ") must include the n_context=" +
                               std::to_string(n_context_) + " context columns and at least one feature column");
    if (k_ < 0 || k_ > n_)
      throw nexus::OptionError("option 'top_k' must be in [0, n_experts=" + std::to_string(n_) + "] (0 = dense), got " +
                               std::to_string(k_));
    if (temperature_ <= 0) throw nexus::OptionError("option 'temperature' must be > 0");
    const int64_t hidden = o.get_int("hidden");
    if (hidden < 0) throw nexus::OptionError("option 'hidden' must be >= 0 (0 = linear gate)");
    const int64_t features = d_in_ - n_context_;
    if (hidden == 0) {
      gate_ = register_module("gate", torch::nn::Sequential(torch::nn::Linear(features, n_)));
    } else {
      gate_ = register_module("gate", torch::nn::Sequential(torch::nn::Linear(features, hidden), torch::nn::GELU(),
                                                            torch::nn::Linear(hidden, n_)));
    }
    table_ = register_parameter("context_bias", torch::zeros({n_context_, n_}));
  }
  int64_t num_experts() const override { return n_; }
  int64_t in_features() const override { return d_in_; }
  int64_t top_k() const override { return k_ == 0 ? n_ : k_; }

  nexus::RouterOutput forward(const torch::Tensor& x, const torch::Tensor& available) override {
    if (x.dim() != 2 || x.size(1) != d_in_)
      throw std::invalid_argument("conditioned router: input must be [B, d_in=" + std::to_string(d_in_) +
                                  "] (features followed by " + std::to_string(n_context_) + " context columns), got " +
                                  std::to_string(x.dim()) + "-d with " + std::to_string(x.size(-1)) + " columns");
    const int64_t features = d_in_ - n_context_;
    auto logits = (gate_->forward(x.narrow(1, 0, features)) + x.narrow(1, features, n_context_).matmul(table_)) / temperature_;
    if (available.defined())
      logits = logits.masked_fill(available.logical_not(), -std::numeric_limits<float>::infinity());
    if (k_ == 0 || k_ == n_) {
      auto w = safe_softmax(logits);
      return {w, logits, available.defined() ? available : torch::ones_like(w, torch::kBool)};
    }
    auto w = safe_softmax(keep_top_k(logits, k_));
    return {w, logits, w > 0};
  }

  void self_test() override {
    nexus::Router::self_test();  // random "context" columns included
    // A one-hot context must reach exactly its own row of the table.
    const int64_t features = d_in_ - n_context_, b = 3, ctx = n_context_ - 1;
    auto x = torch::zeros({b, d_in_});
    x.narrow(1, 0, features).normal_();
    x.select(1, features + ctx).fill_(1.0);
    forward(x, {}).logits.sum().backward();  // logits: the weights of a k=1 router are constant
    const auto g = table_.grad();
    if (!g.defined() || g[ctx].abs().sum().item<double>() == 0.0)
      throw std::runtime_error("no gradient reached the table row of the given context");
    if (n_context_ > 1 && g.narrow(0, 0, ctx).abs().sum().item<double>() != 0.0)
      throw std::runtime_error("a one-hot context moved the table rows of other contexts");
    zero_grad();
  }

 private:
  int64_t d_in_, n_, n_context_, k_;
  double temperature_;
  torch::nn::Sequential gate_{nullptr};
  torch::Tensor table_;
};

}  // namespace

NEXUS_PLUGIN_BEGIN("nexus_routers", "1.1.0")
NEXUS_ROUTER(SoftmaxRouter, "softmax", "Dense softmax gate over all towers",
             "d_in:int!,n_experts:int!,temperature:float=1", "d_in=8;n_experts=3")
NEXUS_ROUTER(TopKRouter, "topk", "Sparse top-k gate: only the k chosen towers run",
             "d_in:int!,n_experts:int!,k:int=1,temperature:float=1", "d_in=8;n_experts=3;k=2")
NEXUS_ROUTER(SigmoidRouter, "sigmoid", "Independent per-tower sigmoid gates (optionally normalised to sum 1)",
             "d_in:int!,n_experts:int!,normalize:bool=false,epsilon:float=1e-6,temperature:float=1",
             "d_in=8;n_experts=3")
NEXUS_ROUTER(ConditionedRouter, "conditioned",
             "Task/modality-conditioned gate: features plus a learned per-context bias (last n_context input columns)",
             "d_in:int!,n_experts:int!,n_context:int!,hidden:int=0,top_k:int=0,temperature:float=1",
             "d_in=10;n_experts=3;n_context=2;top_k=2")
NEXUS_PLUGIN_END()
