// Task and feature losses: mean squared error, cosine distance, cross-entropy.
#include <nexus/plugin_api.hpp>

#include <torch/nn/functional/loss.h>

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

}  // namespace

NEXUS_PLUGIN_BEGIN("nexus_losses", "1.0.0")
NEXUS_LOSS(MseLoss, "mse", "Mean squared error between prediction and target", "", "")
NEXUS_LOSS(CosineLoss, "cosine", "1 - cosine similarity, averaged over the batch", "", "")
NEXUS_LOSS(CrossEntropyLoss, "cross_entropy", "Cross-entropy on class labels", "label_smoothing:float=0", "")
NEXUS_PLUGIN_END()
