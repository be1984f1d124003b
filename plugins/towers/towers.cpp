// Projection and head towers: linear, MLP and low-rank.
#include <nexus/plugin_api.hpp>

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/dropout.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include <algorithm>

namespace {

class LinearTower : public nexus::Tower {
 public:
  explicit LinearTower(const nexus::Options& o) : nexus::Tower("LinearTower") {
    linear_ = register_module(
        "linear", torch::nn::Linear(torch::nn::LinearOptions(o.get_int("d_in"), o.get_int("d_out")).bias(o.get_bool("bias"))));
  }
  torch::Tensor forward(const torch::Tensor& x) override { return linear_->forward(x); }
  int64_t in_features() const override { return linear_->options.in_features(); }
  int64_t out_features() const override { return linear_->options.out_features(); }

 private:
  torch::nn::Linear linear_{nullptr};
};

class MlpTower : public nexus::Tower {
 public:
  explicit MlpTower(const nexus::Options& o)
      : nexus::Tower("MlpTower"), d_in_(o.get_int("d_in")), d_out_(o.get_int("d_out")),
        activation_(o.get_string("activation")), dropout_(o.get_double("dropout")) {
    const int64_t hidden = o.get_int("hidden"), layers = o.get_int("layers");
    if (layers < 1) throw nexus::OptionError("option 'layers' must be >= 1, got " + std::to_string(layers));
    if (dropout_ < 0 || dropout_ >= 1) throw nexus::OptionError("option 'dropout' must be in [0, 1)");
    layers_ = register_module("layers", torch::nn::ModuleList());
    int64_t width = d_in_;
    for (int64_t i = 0; i < layers; ++i) {
      const int64_t next = (i + 1 == layers) ? d_out_ : hidden;
      layers_->push_back(torch::nn::Linear(width, next));
      width = next;
    }
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    auto h = x;
    for (size_t i = 0; i < layers_->size(); ++i) {
      h = layers_[i]->as<torch::nn::Linear>()->forward(h);
      if (i + 1 < layers_->size()) {
        h = activation_ == "relu" ? torch::relu(h) : activation_ == "tanh" ? torch::tanh(h) : torch::gelu(h);
        if (dropout_ > 0) h = torch::nn::functional::dropout(h, torch::nn::functional::DropoutFuncOptions().p(dropout_).training(is_training()));
      }
    }
    return h;
  }
  int64_t in_features() const override { return d_in_; }
  int64_t out_features() const override { return d_out_; }

 private:
  int64_t d_in_, d_out_;
  std::string activation_;
  double dropout_;
  torch::nn::ModuleList layers_{nullptr};
};

// y = U act(V x) + b with V: d_in -> rank, U: rank -> d_out: (d_in + d_out) * rank weights instead
// of d_in * d_out, for wide teachers whose features live in a much smaller subspace (`nexus
// profile` measures it; `rank: auto` takes the rank that explains 99 % of the variance).
//
// Initialisation. V's rows start orthonormal, so V is a projection that keeps the norm of what it
// keeps and the output starts at a linear tower's scale. With `init: data` (InitialisedFromData,
// which the trainer calls before a run starts) those rows are the top principal directions of the
// standardised features rather than random ones: the tower starts by keeping the subspace that
// carries the variance, which is what a rank chosen from the spectrum assumes. Whitening them
// (unit variance per unit) was tried and overfits: on the quickstart the best step was 600 of a
// run that stopped early at 1200, and fortunes fell below its contract (0.4808 vs 0.4910).
class LowRankTower : public nexus::Tower, public nexus::InitialisedFromData {
 public:
  explicit LowRankTower(const nexus::Options& o)
      : nexus::Tower("LowRankTower"), d_in_(o.get_int("d_in")), d_out_(o.get_int("d_out")), rank_(o.get_int("rank")),
        activation_(o.get_string("activation")), from_data_(o.get_string("init") == "data") {
    if (d_in_ < 1 || d_out_ < 1) throw nexus::OptionError("options 'd_in' and 'd_out' must be >= 1");
    if (rank_ < 1 || rank_ > std::min(d_in_, d_out_))
      throw nexus::OptionError("option 'rank' must be in [1, min(d_in, d_out) = " + std::to_string(std::min(d_in_, d_out_)) +
                               "], got " + std::to_string(rank_) +
                               (rank_ > 0 ? " (a larger rank is no longer low-rank: use the linear tower)" : ""));
    // The bias lives on the output side only: a bias inside the bottleneck would be absorbed by
    // U's bias when there is no activation, and the parameter count stays (d_in + d_out) * rank
    // (+ d_out).
    down_ = register_module("down", torch::nn::Linear(torch::nn::LinearOptions(d_in_, rank_).bias(false)));
    up_ = register_module("up", torch::nn::Linear(torch::nn::LinearOptions(rank_, d_out_).bias(o.get_bool("bias"))));
    torch::NoGradGuard no_grad;
    torch::nn::init::orthogonal_(down_->weight);
  }

  int64_t components_wanted() const override { return rank_; }

  void initialise_from(const nexus::InputStatistics& s) override {
    if (!from_data_) return;
    const int64_t k = s.components.defined() ? std::min(rank_, s.components.size(0)) : 0;
    if (k < 1 || s.components.size(1) != d_in_ || s.variances.numel() < k)
      throw std::invalid_argument("input statistics do not fit a " + std::to_string(d_in_) + " -> " + std::to_string(rank_) +
                                  " projection");
    torch::NoGradGuard no_grad;
    down_->weight.narrow(0, 0, k).copy_(s.components.narrow(0, 0, k).to(torch::kFloat));
    torch::nn::init::orthogonal_(up_->weight);
    // Centre the bottleneck on the training data: the output bias absorbs V's image of the mean.
    if (up_->bias.defined() && s.mean.defined())
      up_->bias.sub_(up_->weight.matmul(down_->weight.matmul(s.mean.to(torch::kFloat))));
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    auto h = down_->forward(x);
    if (activation_ == "relu") h = torch::relu(h);
    else if (activation_ == "gelu") h = torch::gelu(h);
    else if (activation_ == "tanh") h = torch::tanh(h);
    return up_->forward(h);
  }
  int64_t in_features() const override { return d_in_; }
  int64_t out_features() const override { return d_out_; }

  void self_test() override {
    nexus::Tower::self_test();
    int64_t weights = 0;
    for (const auto& p : named_parameters())
      if (p.key().find("weight") != std::string::npos) weights += p.value().numel();
    if (weights != (d_in_ + d_out_) * rank_)
      throw std::runtime_error("low-rank tower has " + std::to_string(weights) + " weights, expected (d_in + d_out) * rank = " +
                               std::to_string((d_in_ + d_out_) * rank_));
  }

 private:
  int64_t d_in_, d_out_, rank_;
  std::string activation_;
  bool from_data_;
  torch::nn::Linear down_{nullptr}, up_{nullptr};
};

}  // namespace

NEXUS_PLUGIN_BEGIN("nexus_towers", "1.1.0")
NEXUS_TOWER(LinearTower, "linear", "Affine projection y = Wx + b",
            "d_in:int!,d_out:int!,bias:bool=true", "d_in=8;d_out=4")
NEXUS_TOWER(MlpTower, "mlp", "Multi-layer perceptron with a configurable activation",
            "d_in:int!,d_out:int!,hidden:int=256,layers:int=2,activation:choice(relu|gelu|tanh)=gelu,dropout:float=0",
            "d_in=8;d_out=4;hidden=16")
NEXUS_TOWER(LowRankTower, "lowrank", "Factorised projection d_in -> rank -> d_out ((d_in + d_out) * rank weights)",
            "d_in:int!,d_out:int!,rank:int|auto=64,bias:bool=true,activation:choice(none|relu|gelu|tanh)=none,"
            "init:choice(data|random)=data",
            "d_in=8;d_out=6;rank=3")
NEXUS_PLUGIN_END()
