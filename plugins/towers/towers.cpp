// Projection and head towers: linear and MLP.
#include <nexus/plugin_api.hpp>

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/dropout.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

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

}  // namespace

NEXUS_PLUGIN_BEGIN("nexus_towers", "1.0.0")
NEXUS_TOWER(LinearTower, "linear", "Affine projection y = Wx + b",
            "d_in:int!,d_out:int!,bias:bool=true", "d_in=8;d_out=4")
NEXUS_TOWER(MlpTower, "mlp", "Multi-layer perceptron with a configurable activation",
            "d_in:int!,d_out:int!,hidden:int=256,layers:int=2,activation:choice(relu|gelu|tanh)=gelu,dropout:float=0",
            "d_in=8;d_out=4;hidden=16")
NEXUS_PLUGIN_END()
