// Running a composed system outside training: one head's outputs on cached features (what the
// increments compare before and after), and the example batches of `nexus forward`.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nexus/config/composition.hpp"

namespace nexus {
class ComposedSystem;

// The system's outputs of one head on cached features (eval mode, no autograd): [rows, outputs].
at::Tensor head_outputs(ComposedSystem& system, const std::vector<at::Tensor>& features, const std::string& task,
                        const std::string& head);

// One example batch through the system, for each modality its teachers take.
struct ExampleForward {
  std::string modality;
  int64_t batch = 0;
  std::vector<std::string> teachers_run;
  std::vector<int64_t> shared_shape;
  bool shared_finite = false;
  std::vector<double> mean_routing_weights;            // per teacher
  std::map<std::string, std::vector<int64_t>> heads;   // head -> output shape
};

// Each modality's example batch is made by its first teacher. A task-conditioned router is given
// the first task whose head reads that modality (or its first context).
std::vector<ExampleForward> forward_examples(const config::Composition& composition, ComposedSystem& system,
                                             int64_t batch);

}  // namespace nexus
