// A composition made real: teachers and their projection towers, the router and the heads, all
// created through the registry. z = sum_i w_i(x) * P_i(f_i(x)); heads read z.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nexus/config/composition.hpp"

namespace nexus {
class Teacher;
class Tower;
class Router;
class Loss;
struct TeacherInput;
namespace registry {
class Registry;
}

struct TeacherSlot {
  std::string name;
  std::shared_ptr<Teacher> teacher;
  std::shared_ptr<Tower> tower;  // teacher width -> shared_dim
};

struct HeadSlot {
  std::string name, task;
  std::shared_ptr<Tower> tower;  // shared_dim -> outputs
};

struct LossSlot {
  config::LossSpec spec;
  std::shared_ptr<Loss> loss;
  // Weight at a training step: ramps linearly from start_factor*weight over warmup_steps.
  double weight_at(int64_t step) const;
};

struct ForwardResult {
  at::Tensor shared;                       // [B, D]
  at::Tensor weights;                      // [B, N] routing weights over teachers
  at::Tensor logits;                       // [B, N] router logits (may be undefined)
  std::vector<std::string> ran;            // teachers that were run for this batch
  std::map<std::string, at::Tensor> heads; // head name -> [B, outputs]
};

class ComposedSystem {
 public:
  // Creates every component. Widths the composition leaves open are filled in from the real
  // teachers; a declared width that disagrees with a real one is a config::ConfigError with the
  // location of the declaration. Relative `path` options resolve against the composition's folder.
  static ComposedSystem build(const config::Composition& composition, const registry::Registry& registry);

  // Runs every teacher of the batch's modality, projects, routes and applies the heads.
  ForwardResult forward(const TeacherInput& batch, const std::string& modality);

  // The trainable part on precomputed teacher features (what training on the cache runs):
  // features[i] is teacher i's [B, d_i] output, or undefined where teacher i does not apply.
  ForwardResult fuse(const std::vector<at::Tensor>& features);

  // Every trainable module, by a stable name: "tower.<teacher>", "router", "head.<name>".
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> trainable_modules() const;

  const std::vector<TeacherSlot>& teachers() const { return teachers_; }
  const std::vector<HeadSlot>& heads() const { return heads_; }
  const std::shared_ptr<Router>& router() const { return router_; }
  const std::vector<LossSlot>& losses() const { return losses_; }
  int64_t shared_dim() const { return shared_dim_; }

 private:
  std::vector<TeacherSlot> teachers_;
  std::vector<HeadSlot> heads_;
  std::shared_ptr<Router> router_;
  std::vector<LossSlot> losses_;
  std::string router_input_;
  int64_t shared_dim_ = 0;
};

// The catalog validation needs, from the registry's usable components.
config::PluginCatalog plugin_catalog(const registry::Registry& registry);

}  // namespace nexus
