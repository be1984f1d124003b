#include "nexus/training/schedule.hpp"

#include <algorithm>
#include <cmath>

namespace nexus {

WarmupCosineSchedule::WarmupCosineSchedule(double base_lr, int64_t warmup_steps, int64_t total_steps)
    : base_lr_(base_lr), warmup_steps_(warmup_steps), total_steps_(total_steps) {}

double WarmupCosineSchedule::lr(int64_t step, double factor) const {
  const double warm = warmup_steps_ > 0 && step < warmup_steps_ ? double(step + 1) / double(warmup_steps_) : 1.0;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps_ - warmup_steps_);
  const double progress = std::clamp(double(step - warmup_steps_) / double(decay_steps), 0.0, 1.0);
  const double cosine = step < warmup_steps_ ? 1.0 : 0.5 * (1.0 + std::cos(M_PI * progress));
  return base_lr_ * factor * warm * cosine;
}

}  // namespace nexus
