// ssm/simba_schedule.cpp: the per-layer token counts of ssm/simba_schedule.h, (S1)-(S4).
#include "ssm/simba_schedule.h"

#include <algorithm>
#include <cmath>

#include "tensor/error.h"

namespace simba {

int64_t keep_count(double ratio, int64_t n0) {
  const double x = ratio * static_cast<double>(n0);
  const double nearest = std::round(x);
  const double count = std::fabs(x - nearest) <= 1e-9 ? nearest : std::ceil(x);
  return std::max<int64_t>(1, static_cast<int64_t>(count));
}

std::vector<int64_t> simba_token_counts(const SimbaOptions& opt, int64_t layers, int64_t n0) {
  const char* who = "simba schedule";
  SIMBA_CHECK(layers >= 1, who << ": the model has " << layers << " layers, expected >= 1");
  SIMBA_CHECK(n0 >= 1, who << ": context of " << n0 << " tokens, expected >= 1 (the anchor is its last token)");
  opt.validate(who);
  std::vector<int64_t> n(layers, n0);
  if (opt.schedule == SimbaSchedule::Custom) {
    const bool ratios = !opt.custom_ratios.empty();
    const size_t given = ratios ? opt.custom_ratios.size() : opt.custom_counts.size();
    SIMBA_CHECK_HINT(given == static_cast<size_t>(layers),
                     who << ": schedule=custom gives " << given << " " << (ratios ? "ratios" : "counts")
                         << ", the model has " << layers << " layers",
                     "give one entry per layer, layer 0 first");
    if (!ratios)
      SIMBA_CHECK(opt.custom_counts[0] >= n0,
                  who << ": counts: entry 0 is " << opt.custom_counts[0] << " but the context has " << n0
                      << " tokens; layer 0 always processes the whole context");
    for (int64_t l = 0; l < layers; ++l)
      n[l] = ratios ? keep_count(opt.custom_ratios[l], n0) : std::min(opt.custom_counts[l], n0);
    return n;
  }
  const int64_t s = opt.start;
  if (s >= layers - 1) return n;  // no layer after s: dense
  const double M = static_cast<double>(layers - 1 - s);
  const double drop = 1.0 - opt.keep;
  for (int64_t l = s + 1; l < layers; ++l) {
    const double k = static_cast<double>(l - s);
    double r = 1.0;
    switch (opt.schedule) {
      case SimbaSchedule::Linear: r = 1.0 - drop * k / M; break;                                        // (S1)
      case SimbaSchedule::Uniform: r = 1.0 - drop * (M + 1.0) / (2.0 * M); break;                       // (S3)
      case SimbaSchedule::Inverted: r = 1.0 - drop * k * (2.0 * M + 1.0 - k) / (M * (M + 1.0)); break;  // (S4)
      case SimbaSchedule::Custom: break;  // returned above
    }
    n[l] = keep_count(r, n0);  // (S2)
  }
  return n;
}

}  // namespace simba
