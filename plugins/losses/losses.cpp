// Task and feature losses (mean squared error, cosine distance, cross-entropy, distillation KL) and
// router losses (Switch load balancing, ST-MoE z-loss, routing entropy). Every term is meant to be
// minimised: the host adds weight(step) * term.
#include <nexus/plugin_api.hpp>

#include <torch/nn/functional/loss.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace {

class MseLoss : public nexus::Loss {
 public:
  explicit MseLoss(const nexus::Options&) {}
  std::vector<nexus::LossTerm> forward(const nexus::LossInput& in) override {
    return {{"mse", torch::mse_loss(in.prediction, in.target.to(in.prediction.dtype()))}};
  }
};

class CosineLoss : public nexus::Loss {
 public:
  explicit CosineLoss(const nexus::Options&) {}
  std::vector<nexus::LossTerm> forward(const nexus::LossInput& in) override {
    return {{"cosine", (1 - torch::cosine_similarity(in.prediction, in.target.to(in.prediction.dtype()), 1)).mean()}};
  }
};

class CrossEntropyLoss : public nexus::Loss {
 public:
  explicit CrossEntropyLoss(const nexus::Options& o) : smoothing_(o.get_double("label_smoothing")) {
    if (smoothing_ < 0 || smoothing_ >= 1) throw nexus::OptionError("option 'label_smoothing' must be in [0, 1)");
  }
  std::vector<nexus::LossTerm> forward(const nexus::LossInput& in) override {
    namespace F = torch::nn::functional;
    return {{"ce", F::cross_entropy(in.prediction, in.target, F::CrossEntropyFuncOptions().label_smoothing(smoothing_))}};
  }
  nexus::LossInput example_input() const override {
    nexus::LossInput in;
    in.prediction = torch::randn({4, 3}).set_requires_grad(true);
    in.target = torch::tensor({0, 2, 1, 2}, torch::kLong);
    return in;
  }

 private:
  double smoothing_;
};


// Knowledge distillation (Hinton et al. 2015): KL(teacher || student) between the temperature-
// softened distributions, times T^2 so that the gradients keep the scale of a hard-label loss when T
// changes. The teacher side is a fixed reference (a frozen teacher, or the old model in LwF): no
// gradient flows into it.
class KlLoss : public nexus::Loss {
 public:
  explicit KlLoss(const nexus::Options& o) : temperature_(o.get_double("temperature")) {
    if (temperature_ <= 0) throw nexus::OptionError("option 'temperature' must be > 0");
  }
  std::vector<nexus::LossTerm> forward(const nexus::LossInput& in) override {
    if (!in.teacher_prediction.defined())
      throw std::invalid_argument("kl loss needs the reference logits in LossInput::teacher_prediction");
    if (in.teacher_prediction.sizes() != in.prediction.sizes())
      throw std::invalid_argument("kl loss: prediction and teacher_prediction must have the same shape");
    const auto log_s = torch::log_softmax(in.prediction / temperature_, -1);
    const auto log_t = torch::log_softmax(in.teacher_prediction.detach().to(in.prediction.dtype()) / temperature_, -1);
    const auto kl = (log_t.exp() * (log_t - log_s)).sum(-1).mean();  // batchmean, as torch's kl_div should be used
    return {{"kl", kl * (temperature_ * temperature_)}};
  }
  nexus::LossInput example_input() const override {
    nexus::LossInput in;
    in.prediction = torch::randn({4, 5}).set_requires_grad(true);
    in.teacher_prediction = torch::randn({4, 5});
    return in;
  }
  void self_test() override {
    nexus::Loss::self_test();
    auto in = example_input();
    in.teacher_prediction = in.prediction.detach().clone();
    if (std::abs(forward(in)[0].value.item<double>()) > 1e-5) throw std::runtime_error("KL(p || p) is not 0");
  }

 private:
  double temperature_;
};

namespace router_loss {

// A router loss input for probes: 8 inputs over 4 towers, top-2 selected.
nexus::LossInput example() {
  nexus::LossInput in;
  in.router_logits = torch::randn({8, 4}).set_requires_grad(true);
  in.router_weights = torch::softmax(in.router_logits, 1);
  const auto top = std::get<1>(in.router_logits.detach().topk(2, 1));
  in.router_selected = torch::zeros({8, 4}, torch::kBool).scatter(1, top, true);
  return in;
}

// Rows with at least one available tower: masked routers put -inf on unavailable towers, and a
// row with nothing available would make softmax and logsumexp NaN or infinite.
torch::Tensor live_rows(const torch::Tensor& logits) { return logits.isfinite().any(1); }

torch::Tensor softmax_or_zero(const torch::Tensor& logits) {
  const auto live = live_rows(logits).unsqueeze(1);
  return torch::softmax(logits.masked_fill(live.logical_not(), 0.0), 1) * live;
}

// Router probabilities [B, N]: softmax of the logits, or the weights renormalised per row (for
// routers whose weights are not a distribution, e.g. independent sigmoid gates). Whichever was
// asked for, the other is used when only it is present.
torch::Tensor probabilities(const nexus::LossInput& in, bool from_weights, const char* loss) {
  if (!in.router_logits.defined() && !in.router_weights.defined())
    throw std::invalid_argument(std::string(loss) + " loss needs LossInput::router_logits or router_weights");
  if (in.router_logits.defined() && (!from_weights || !in.router_weights.defined()))
    return softmax_or_zero(in.router_logits);
  const auto& w = in.router_weights;
  return w / w.sum(1, true).clamp_min(1e-12);
}

}  // namespace router_loss

// Switch Transformer load balancing (Fedus et al. 2021): N * sum_i f_i * P_i, where f_i is the
// share of all routing decisions that went to tower i (selected counts divided by their total, so a
// top-k router is normalised by k) and P_i the mean router probability of tower i. It is 1 when
// both are uniform and up to N when one tower takes everything. f_i is a count and carries no
// gradient; the gradient reaches the router through P_i.
class LoadBalanceLoss : public nexus::Loss {
 public:
  explicit LoadBalanceLoss(const nexus::Options& o) : from_weights_(o.get_string("probabilities") == "weights") {}
  std::vector<nexus::LossTerm> forward(const nexus::LossInput& in) override {
    const auto p = router_loss::probabilities(in, from_weights_, "load_balance");
    torch::Tensor sel;
    if (in.router_selected.defined()) sel = in.router_selected;
    else if (in.router_weights.defined()) sel = in.router_weights.detach() > 0;  // dense routers: every weighted tower ran
    else sel = torch::zeros_like(p, torch::kBool).scatter(1, p.detach().argmax(1, true), true);
    const auto counts = sel.to(p.scalar_type()).sum(0);
    const auto f = counts / counts.sum().clamp_min(1);
    const auto live = (p.detach().sum(1) > 0).to(p.scalar_type());
    const auto mean_p = p.sum(0) / live.sum().clamp_min(1);
    return {{"load_balance", double(p.size(1)) * (f * mean_p).sum()}};
  }
  nexus::LossInput example_input() const override { return router_loss::example(); }
  void self_test() override {
    nexus::Loss::self_test();
    // Perfect balance must give exactly 1: 4 inputs, 4 towers, each chosen by two inputs (top-2).
    nexus::LossInput in;
    in.router_logits = torch::zeros({4, 4});
    in.router_weights = torch::full({4, 4}, 0.25);
    in.router_selected = torch::tensor({1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1}, torch::kBool).view({4, 4});
    const auto v = forward(in)[0].value.item<double>();
    if (std::abs(v - 1.0) > 1e-6) throw std::runtime_error("a perfectly balanced router gives " + std::to_string(v) + ", not 1");
  }

 private:
  bool from_weights_;
};

// ST-MoE router z-loss (Zoph et al. 2022): mean over inputs of logsumexp(logits)^2. Keeps the
// router's logits small, which keeps its softmax numerically stable and training smooth.
class ZLoss : public nexus::Loss {
 public:
  explicit ZLoss(const nexus::Options&) {}
  std::vector<nexus::LossTerm> forward(const nexus::LossInput& in) override {
    if (!in.router_logits.defined()) throw std::invalid_argument("z_loss needs LossInput::router_logits");
    const auto live = router_loss::live_rows(in.router_logits);
    // Only the rows with something available: their -inf entries contribute exp(-inf) = 0.
    const auto rows = in.router_logits.index_select(0, live.nonzero().squeeze(1));
    if (rows.size(0) == 0) return {{"z_loss", torch::zeros({}, in.router_logits.options())}};
    return {{"z_loss", torch::logsumexp(rows, 1).square().mean()}};
  }
  nexus::LossInput example_input() const override { return router_loss::example(); }
  void self_test() override {
    nexus::Loss::self_test();
    nexus::LossInput in;
    in.router_logits = torch::zeros({2, 4});  // logsumexp = log 4
    const auto v = forward(in)[0].value.item<double>();
    if (std::abs(v - std::log(4.0) * std::log(4.0)) > 1e-5) throw std::runtime_error("z_loss of zero logits is not log(N)^2");
  }
};

// Routing entropy, signed so that minimising the term does what it is for:
// - per_sample=false (default): term "neg_batch_entropy" = -H(mean_b w_b). Minimising it maximises
//   the entropy of the batch's average routing, i.e. spreads the load across towers over the batch
//   while each input may still route sharply. Lowest value: -log N (uniform average use).
// - per_sample=true: term "sample_entropy" = mean_b H(w_b). Minimising it makes each input's
//   routing confident (close to one tower). Lowest value: 0.
// Weights are renormalised per row first, so the sigmoid router's gates work too.
class RoutingEntropyLoss : public nexus::Loss {
 public:
  explicit RoutingEntropyLoss(const nexus::Options& o)
      : per_sample_(o.get_bool("per_sample")), from_weights_(o.get_string("probabilities") == "weights") {}
  std::vector<nexus::LossTerm> forward(const nexus::LossInput& in) override {
    // Defaults to the weights the router actually used: a top-k router's weights are its sparse
    // decision, the softmax of its logits is not.
    const auto p = router_loss::probabilities(in, from_weights_, "routing_entropy");
    const auto live = (p.detach().sum(1) > 0).to(p.scalar_type());
    if (per_sample_) return {{"sample_entropy", (entropy(p) * live).sum() / live.sum().clamp_min(1)}};
    const auto mean = p.sum(0) / live.sum().clamp_min(1);
    return {{"neg_batch_entropy", -entropy(mean.unsqueeze(0)).squeeze(0)}};
  }
  nexus::LossInput example_input() const override { return router_loss::example(); }
  void self_test() override {
    nexus::Loss::self_test();
    nexus::LossInput in;
    in.router_weights = torch::eye(4);  // every input sure of its own tower: balanced over the batch
    const auto v = forward(in)[0].value.item<double>();
    const double want = per_sample_ ? 0.0 : -std::log(4.0);
    if (std::abs(v - want) > 1e-5)
      throw std::runtime_error("routing entropy of one-hot, balanced routing is " + std::to_string(v) + ", expected " +
                               std::to_string(want));
  }

 private:
  // Entropy of each row in nats; 0 log 0 = 0 with a finite gradient (clamp, not log(p + eps), so
  // the value is exact for one-hot rows).
  static torch::Tensor entropy(const torch::Tensor& p) { return -(p * p.clamp_min(1e-12).log()).sum(1); }
  bool per_sample_, from_weights_;
};

}  // namespace

NEXUS_PLUGIN_BEGIN("nexus_losses", "1.1.0")
NEXUS_LOSS(MseLoss, "mse", "Mean squared error between prediction and target", "", "")
NEXUS_LOSS(CosineLoss, "cosine", "1 - cosine similarity, averaged over the batch", "", "")
NEXUS_LOSS(CrossEntropyLoss, "cross_entropy", "Cross-entropy on class labels", "label_smoothing:float=0", "")
NEXUS_LOSS(KlLoss, "kl", "Distillation KL(teacher || student) of temperature-softened logits, times T^2",
           "temperature:float=2.0", "")
NEXUS_LOSS(LoadBalanceLoss, "load_balance", "Switch load balancing N * sum_i f_i * P_i (1 when balanced)",
           "probabilities:choice(softmax|weights)=softmax", "")
NEXUS_LOSS(ZLoss, "z_loss", "Router z-loss: mean logsumexp(router logits)^2", "", "")
NEXUS_LOSS(RoutingEntropyLoss, "routing_entropy",
           "Routing entropy: -H(batch-mean weights) to spread load, or per-sample H to sharpen routing",
           "per_sample:bool=false,probabilities:choice(softmax|weights)=weights", "")
NEXUS_PLUGIN_END()
