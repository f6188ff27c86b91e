// nn/lr_schedule.h: the learning rate as a function of the optimiser step.
//
// Linear warmup from 0 then cosine decay (the schedule of GPT-style and Mamba
// language-model training). With W = warmup, T = total, step 0-based:
//
//   step < W:       lr = max_lr · (step + 1) / W
//   W <= step < T:  progress = (step − W) / max(1, T − W)
//                   lr = min_lr + ½·(max_lr − min_lr)·(1 + cos(π·progress))
//   step >= T:      lr = min_lr
//
// The (step + 1) makes the first step train (lr = max_lr/W, not 0) and the
// last warmup step reach max_lr exactly; decay then starts at max_lr
// (progress 0) and has fallen to just above min_lr at step T − 1. With W = 0
// there is no warmup.
#pragma once

#include <cstdint>

namespace simba {

class WarmupCosineSchedule {
 public:
  // Requires 0 <= warmup <= total, total >= 1 and 0 <= min_lr <= max_lr
  // (finite); anything else is an error naming the argument.
  WarmupCosineSchedule(double max_lr, double min_lr, int64_t warmup, int64_t total);

  double lr(int64_t step) const;  // step >= 0
  double max_lr() const { return max_lr_; }
  double min_lr() const { return min_lr_; }
  int64_t warmup() const { return warmup_; }
  int64_t total() const { return total_; }

 private:
  double max_lr_, min_lr_;
  int64_t warmup_, total_;
};

}  // namespace simba
