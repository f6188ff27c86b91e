// train/bootstrap.h: the paired bootstrap confidence interval of a mean difference, the
// statistic behind every "method vs dense" difference that simba eval reports
// (docs/experiments.md, "Statistics").
//
// Two methods evaluated on the same n windows give per-window values a_i and b_i (a window's
// mean loss per continuation token). The difference is d_i = a_i − b_i, its estimate the mean
// of d. The interval is the percentile bootstrap over windows: `resamples` times, draw n window
// indices uniformly with replacement and take the mean of d over them; the interval's ends are
// the (1 − level)/2 and (1 + level)/2 quantiles of those means (linear interpolation between
// order statistics). Resampling the pairs, not each method on its own, keeps the spread of
// window difficulty, which both methods share, out of the interval.
//
// Deterministic: the indices come from std::mt19937_64 (whose sequence the C++ standard fixes)
// seeded with `seed`, mapped to [0, n) by the high half of a 128-bit product, so the same inputs
// give the same interval on every platform.
#pragma once

#include <cstdint>
#include <vector>

namespace simba {

struct PairedDifference {
  double mean = 0;      // mean of a_i − b_i
  double low = 0;       // the interval's ends
  double high = 0;
  int64_t n = 0;        // windows
  int64_t resamples = 0;
  double level = 0;     // e.g. 0.95
};

// Errors: a and b of different lengths or empty, a non-finite value (naming its window),
// resamples < 1, level outside (0, 1).
PairedDifference paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b,
                                  int64_t resamples = 10000, double level = 0.95, uint64_t seed = 0);

}  // namespace simba
