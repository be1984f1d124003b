// Tower: a trainable module from d_in to d_out. Projection towers map a teacher's features into
// the shared space; head towers map the shared space to a task's outputs.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace nexus {

class Tower : public torch::nn::Module {
 public:
  explicit Tower(const std::string& name) : torch::nn::Module(name) {}

  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // What the trainer optimises; towers with frozen parts return a subset.
  virtual std::vector<torch::Tensor> trainable_parameters() { return parameters(); }

  // Run by the registry's probe in a child process: shape, finiteness, and that gradients flow.
  virtual void self_test() {
    auto x = torch::randn({3, in_features()});
    auto y = forward(x);
    if (y.dim() != 2 || y.size(0) != 3 || y.size(1) != out_features())
      throw std::runtime_error("forward() of a [3, " + std::to_string(in_features()) + "] batch returned a " +
                               std::to_string(y.dim()) + "-d tensor, expected [3, " +
                               std::to_string(out_features()) + "]");
    if (!y.isfinite().all().item<bool>()) throw std::runtime_error("forward() returned non-finite values");
    auto params = trainable_parameters();
    if (params.empty()) return;
    y.square().sum().backward();
    bool any_grad = false;
    for (auto& p : params) any_grad = any_grad || (p.grad().defined() && p.grad().abs().sum().item<double>() > 0);
    if (!any_grad) throw std::runtime_error("no gradient reached any trainable parameter");
    zero_grad();
  }
};

// What the host measured on a tower's inputs (its teacher's training features, standardised as the
// tower will see them), for towers that start from the data rather than from random weights.
struct InputStatistics {
  torch::Tensor mean;        // [d_in], float32
  torch::Tensor components;  // [k, d_in], float32: orthonormal principal directions, largest variance first
  torch::Tensor variances;   // [k], float32: the variance along each direction
  int64_t rows = 0;          // how many rows they were measured on
};

// An optional capability of a Tower. The host finds it with dynamic_cast, so a tower without it,
// or a plugin built before it existed, is simply not asked: nothing in Tower's own layout
// changed. The trainer calls initialise_from() once, when a run starts from scratch (after the
// feature statistics are fitted, before the optimiser is built); never on resume or when the
// tower is frozen, where the checkpoint's weights win.
class InitialisedFromData {
 public:
  virtual ~InitialisedFromData() = default;
  // How many principal directions (k) the tower wants; the host gives min(k, d_in).
  virtual int64_t components_wanted() const = 0;
  virtual void initialise_from(const InputStatistics& statistics) = 0;
};

}  // namespace nexus
