// nn/lr_schedule.cpp: warmup + cosine learning-rate schedule (formula in
// nn/lr_schedule.h).
#include "nn/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "tensor/error.h"

namespace simba {

WarmupCosineSchedule::WarmupCosineSchedule(double max_lr, double min_lr, int64_t warmup, int64_t total)
    : max_lr_(max_lr), min_lr_(min_lr), warmup_(warmup), total_(total) {
  SIMBA_CHECK(std::isfinite(max_lr) && max_lr >= 0.0,
              "lr schedule: max_lr " << max_lr << ", expected a finite value >= 0");
  SIMBA_CHECK(std::isfinite(min_lr) && min_lr >= 0.0,
              "lr schedule: min_lr " << min_lr << ", expected a finite value >= 0");
  SIMBA_CHECK_HINT(min_lr <= max_lr, "lr schedule: min_lr " << min_lr << " is above max_lr " << max_lr,
                   "the cosine decays from max_lr to min_lr");
  SIMBA_CHECK(total >= 1, "lr schedule: total steps " << total << ", expected >= 1");
  SIMBA_CHECK(warmup >= 0 && warmup <= total,
              "lr schedule: warmup " << warmup << " steps, expected 0 <= warmup <= total (" << total << ")");
}

double WarmupCosineSchedule::lr(int64_t step) const {
  SIMBA_CHECK(step >= 0, "lr schedule: step " << step << ", expected >= 0");
  if (step >= total_) return min_lr_;
  if (step < warmup_) return max_lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
  const double progress =
      static_cast<double>(step - warmup_) / static_cast<double>(std::max<int64_t>(1, total_ - warmup_));
  return min_lr_ + 0.5 * (max_lr_ - min_lr_) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace simba
