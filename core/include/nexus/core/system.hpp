// A composition made real: teachers and their projection towers, the router and the heads, all
// created through the registry. z = sum_i w_i(x) * P_i(f_i(x)); heads read z.
#pragma once

#include <ATen/core/Tensor.h>

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

struct ForwardResult {
  at::Tensor shared;                       // [B, D]
  at::Tensor weights;                      // [B, N] routing weights over teachers
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

  const std::vector<TeacherSlot>& teachers() const { return teachers_; }
  const std::vector<HeadSlot>& heads() const { return heads_; }
  const std::shared_ptr<Router>& router() const { return router_; }
  int64_t shared_dim() const { return shared_dim_; }

 private:
  std::vector<TeacherSlot> teachers_;
  std::vector<HeadSlot> heads_;
  std::shared_ptr<Router> router_;
  std::string router_input_;
  int64_t shared_dim_ = 0;
};

// The catalog validation needs, from the registry's usable components.
config::PluginCatalog plugin_catalog(const registry::Registry& registry);

}  // namespace nexus
