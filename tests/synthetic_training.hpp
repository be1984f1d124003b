// A small composition and a learnable synthetic task, trained straight from tensors (no cache):
// shared by the trainer's tests and the data-parallel ones.
#pragma once

#include <torch/torch.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/model/system.hpp"
#include "nexus/training/trainer.hpp"
#include "test_support.hpp"

namespace nexus::test {

// The synthetic task's data and trainer sections: `steps` steps, a validation every 20.
inline std::string synthetic_training(int steps) {
  return "data:\n  tasks:\n    synth: {dataset: none, modality: tensor}\ntrainer: {steps: " + std::to_string(steps) +
         ", batch_size: 16, lr: 1.0e-2, validate_every: 20, seed: 3, weight_decay: 0.0}\n";
}

inline const std::string kComposition = test_composition(
    "synthetic",
    torchscript_teacher("a", "tensor", "[6]", "def forward(self, x):\\n    return x") +
        torchscript_teacher("b", "tensor", "[4]", "def forward(self, x):\\n    return x", "{plugin: mlp, options: {hidden: 16}}"),
    "synth", 3, synthetic_training(200));

struct TrainingFixture {
  TempDir dir;
  const registry::Registry& reg = builtin_registry();
  config::Composition comp;
  std::unique_ptr<ComposedSystem> sys;
  TaskData data;

  explicit TrainingFixture(const std::vector<std::string>& overrides = {}) {
    const auto path = (dir.path / "c.yaml").string();
    std::ofstream(path) << kComposition;
    comp = config::load_composition(path, overrides, plugin_catalog(reg));
    sys = build();
    // Labels are a fixed function of teacher a's features, so there is something to learn.
    auto gen = at::detail::createCPUGenerator(11);
    auto fa = torch::randn({256, 6}, gen), fb = torch::randn({256, 4}, gen);
    auto labels = fa.narrow(1, 0, 3).argmax(1);
    data = {"synth", "cls", {fa.narrow(0, 0, 192), fb.narrow(0, 0, 192)}, {fa.narrow(0, 192, 64), fb.narrow(0, 192, 64)},
            labels.narrow(0, 0, 192), labels.narrow(0, 192, 64)};
  }
  // A freshly initialised system, the same every time (seeded as training runs seed it).
  std::unique_ptr<ComposedSystem> build() const {
    torch::manual_seed(3);
    return std::make_unique<ComposedSystem>(ComposedSystem::build(comp, reg));
  }
  TrainOptions options(const std::string& run) const {
    TrainOptions o;
    o.run_dir = (dir.path / run).string();
    o.progress = false;
    return o;
  }
};


}  // namespace nexus::test
