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

}  // namespace nexus
