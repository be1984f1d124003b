// Loss: named terms. The composition gives each loss a weight and a schedule; the host sums
// weight(step) * term over all terms.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/Functions.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace nexus {

struct LossInput {
  at::Tensor prediction;          // head output [B, C] or shared-space vector [B, D]
  at::Tensor target;              // labels [B] int64, or targets shaped like prediction
  at::Tensor teacher_prediction;  // reference outputs for distillation / anti-forgetting terms
  at::Tensor router_logits;       // [B, N] when a router loss is attached
  at::Tensor router_weights;      // [B, N]
  at::Tensor router_selected;     // [B, N] bool
};

struct LossTerm {
  std::string name;  // e.g. "ce", "mse", "load_balance"
  at::Tensor value;  // scalar
};

class Loss {
 public:
  virtual ~Loss() = default;
  virtual std::vector<LossTerm> forward(const LossInput& input) = 0;
  // A valid input for this loss: used by the probe and by smoke checks.
  virtual LossInput example_input() const {
    LossInput in;
    in.prediction = at::randn({4, 3}).set_requires_grad(true);
    in.target = at::randn({4, 3});
    return in;
  }

  // Run by the registry's probe: at least one finite scalar term that back-propagates.
  virtual void self_test() {
    auto in = example_input();
    auto terms = forward(in);
    if (terms.empty()) throw std::runtime_error("forward() returned no loss terms");
    for (const auto& t : terms) {
      if (!t.value.defined() || t.value.numel() != 1)
        throw std::runtime_error("loss term '" + t.name + "' is not a scalar");
      if (!t.value.isfinite().all().item<bool>()) throw std::runtime_error("loss term '" + t.name + "' is not finite");
    }
  }
};

}  // namespace nexus
