// A composition made real: teachers and their projection towers, the router and the heads, all
// created through the registry. z = sum_i w_i(x) * P_i(f_i(x)); heads read z.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

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

// Standardises one teacher's features with statistics of the training data (fit once, then
// fixed; saved with the checkpoint). Teachers differ wildly in scale (an L2-normalised encoder's
// coordinates are ~0.05, a CNN's ReLU features are ~1-10), and towers train much faster and more
// evenly on standardised inputs. Identity until fit.
class FeatureNormImpl : public torch::nn::Module {
 public:
  explicit FeatureNormImpl(int64_t width);
  at::Tensor forward(const at::Tensor& x) const;
  void fit(const at::Tensor& features);  // [rows, width]
  at::Tensor mean, inv_std;
};
TORCH_MODULE(FeatureNorm);

struct TeacherSlot {
  std::string name;
  std::shared_ptr<Teacher> teacher;
  FeatureNorm norm{nullptr};     // applied to the teacher's features before the tower
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
  at::Tensor selected;                     // [B, N] bool: towers the router selected
  std::vector<std::string> ran;            // teachers that were run for this batch
  std::map<std::string, at::Tensor> heads; // head name -> [B, outputs]
};

// Where a system runs. On a CUDA device, towers and the router run under bf16 autocast unless
// bf16_autocast is off; the shared space and the heads stay fp32. Training leaves the teachers on
// the CPU (it reads their cached features); serving moves them too.
struct Placement {
  explicit Placement(c10::Device device) : device(device) {}
  c10::Device device;
  bool bf16_autocast = true;
  bool move_teachers = true;
};

class ComposedSystem {
 public:
  // Creates every component. Widths the composition leaves open are filled in from the real
  // teachers; a declared width that disagrees with a real one is a config::ConfigError with the
  // location of the declaration. Relative `path` options resolve against the composition's folder.
  static ComposedSystem build(const config::Composition& composition, const registry::Registry& registry);
  // Creates the towers of the teachers `which` (composition order) again from `composition`:
  // after their data-sized options were measured (profile::size_towers).
  void rebuild_towers(const config::Composition& composition, const registry::Registry& registry,
                      const std::vector<size_t>& which);

  // Runs every teacher of the batch's modality, projects, routes and applies the heads. `task`
  // is the router's context when it is conditioned on the task (router.condition: task).
  ForwardResult forward(const TeacherInput& batch, const std::string& modality, const std::string& task = "");

  // Inference that runs a teacher only on the inputs the router selected it for. This needs a
  // router that decides before the experts run: one that reads a teacher's own features
  // (router.input: teacher:<name>). That teacher encodes the whole batch. The router chooses, and
  // every other teacher encodes just its rows, once. With a top-k router the result equals
  // forward()'s, because unselected towers have weight 0. With projected_mean, every teacher must
  // run before the router can decide, and this is forward(). teacher_rows[i] is the number of rows
  // teacher i encoded.
  ForwardResult forward_routed(const TeacherInput& batch, const std::string& modality, const std::string& task = "",
                               std::vector<int64_t>* teacher_rows = nullptr);

  // The trainable part on precomputed teacher features (what training on the cache runs):
  // features[i] is teacher i's [B, d_i] output, or undefined where teacher i does not apply.
  // projected[i], where given and defined, is tower i's output for those rows already computed
  // (a frozen tower on fixed features always gives the same output: incremental training
  // computes it once instead of every step).
  ForwardResult fuse(const std::vector<at::Tensor>& features, const std::string& task = "",
                     const std::vector<at::Tensor>& projected = {});

  // The router's context values (task names or modalities), in one-hot column order; empty
  // when the router is not conditioned.
  const std::vector<std::string>& router_contexts() const { return contexts_; }

  // Fits every teacher's FeatureNorm on its training features (features[i]: teacher i's rows from
  // all tasks, undefined tensors skipped).
  void fit_feature_norms(const std::vector<std::vector<at::Tensor>>& features_per_teacher);

  // Every module a checkpoint holds, by a stable name: "norm.<teacher>" (statistics only),
  // "tower.<teacher>", "router", "head.<name>".
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> trainable_modules() const;

  // Moves the trainable modules (and the teachers, unless the placement keeps them on the CPU) to
  // the placement's device; inputs and teacher features are moved there on the way in.
  void to(const Placement& placement);
  const c10::Device& device() const { return device_; }
  bool autocast() const { return autocast_ && device_.is_cuda(); }

  const std::vector<TeacherSlot>& teachers() const { return teachers_; }
  const std::string& router_input() const { return router_input_; }
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
  std::string condition_ = "none";
  std::vector<std::string> contexts_;
  int64_t shared_dim_ = 0;
  c10::Device device_{c10::kCPU};
  bool autocast_ = true;
  // Appends the router's one-hot context (task or modality) when it is conditioned.
  at::Tensor with_context(const at::Tensor& router_features, const std::string& context) const;
};

// The catalog validation needs, from the registry's usable components.
config::PluginCatalog plugin_catalog(const registry::Registry& registry);

// How many numbers a module's parameters hold.
int64_t parameter_count(const torch::nn::Module& module);

// sha256 of one module's parameters and buffers (names and bytes, in a fixed order).
std::string module_digest(const ComposedSystem& system, const std::string& module_name);

// sha256 over every module's digest, in trainable_modules() order: equal = bitwise equal weights.
std::string weights_digest(const ComposedSystem& system);

// The module a checkpoint names (trainable_modules()), or nullptr.
std::shared_ptr<torch::nn::Module> find_module(const ComposedSystem& system, const std::string& name);

}  // namespace nexus
