// The learning-rate schedule of the trainer and of the teachers' probes (so that a probe gets the
// same treatment as the composite it is compared with): linear warmup over `warmup_steps`, then
// cosine decay from the base rate to 0 at `total_steps`.
#pragma once

#include <cstdint>

namespace nexus {

class WarmupCosineSchedule {
 public:
  WarmupCosineSchedule(double base_lr, int64_t warmup_steps, int64_t total_steps);
  // The rate at `step` (0-based), times `factor` (the trainer halves it at each rollback).
  double lr(int64_t step, double factor = 1.0) const;

 private:
  double base_lr_;
  int64_t warmup_steps_, total_steps_;
};

}  // namespace nexus
