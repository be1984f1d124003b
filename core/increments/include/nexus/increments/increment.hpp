// Changing a trained run's teachers, training only what the change needs, with the evidence that
// everything else stayed as it was: `nexus add-teacher`, `remove-teacher` and `train FILE --from`.
//
// 1. plan: build the base system (weights loaded) and the new one; compare them (plan.hpp); copy
//    every kept component over bit for bit (carry_over.hpp).
// 2. stage: the new run is built in <out>.partial (resumable with `resume`), with its composition
//    and run.json naming the base run.
// 3. cache only what is new; choose the tasks the change can affect; on kept heads, the base
//    composite's outputs become the anti-forgetting reference (KL).
// 4. train in two phases: each new tower alone against the frozen heads (solo), then the new
//    towers and the router together.
// 4b. repair: where a changed task would still miss its contract (judged on the validation
//    split), widen what trains, one stage at a time: the towers of that task's modality, then its
//    head (repair.hpp). Each stage trains in <out>/repair/N-SCOPE; the last one's weights become
//    the run's checkpoint.
// 5. prove: checksums of every module as written to disk, scores before and after, the new
//    teachers' probes (proof.hpp); the folder becomes <out> when every retention contract holds
//    and every frozen checksum is unchanged (or `force`), else <out>.rejected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nexus/increments/proof.hpp"
#include "nexus/increments/repair.hpp"

namespace nexus {
namespace registry {
class Registry;
}

struct IncrementRequest {
  std::string base_run, out;
  std::string cache_root;                   // "" = feature_cache_root()
  double kl_weight = 0.5, kl_temperature = 2.0;
  int64_t steps = 0;                        // 0 = a quarter of each task's share of trainer.steps, per task trained
  int64_t solo_steps = -1;                  // of those, new towers alone first (-1 = half)
  RepairPolicy repair;                      // scope None: train nothing, the router renormalised over the remaining teachers
  bool dry_run = false;                     // only plan: Proof::preview, nothing written but missing features
  bool resume = false;                      // continue <out>.partial
  bool force = false;                       // keep the run even when it fails its contracts (marked failing)
  bool compare_full = false;                // also train the final composition from scratch
  bool fp16_cache = false;
  bool progress = true;
};

// The teachers of `teacher_file` added (see edit.hpp for what it may hold).
Proof add_teacher(IncrementRequest request, const std::string& teacher_file, const registry::Registry& registry);
// One teacher removed, with the tasks only it served.
Proof remove_teacher(IncrementRequest request, const std::string& teacher, const registry::Registry& registry);
// A hand-edited composition: whatever it adds or removes against the base run.
Proof train_from(IncrementRequest request, const std::string& composition_file, const std::vector<std::string>& overrides,
                 const registry::Registry& registry);

}  // namespace nexus
