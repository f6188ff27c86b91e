// train/bootstrap.cpp: see train/bootstrap.h.
#include "train/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "tensor/error.h"

namespace simba {

PairedDifference paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b, int64_t resamples,
                                  double level, uint64_t seed) {
  SIMBA_CHECK(a.size() == b.size(), "paired_bootstrap: the two methods have " << a.size() << " and " << b.size()
                                                                              << " windows; a paired comparison "
                                                                                 "needs the same windows");
  SIMBA_CHECK(!a.empty(), "paired_bootstrap: no windows to compare");
  SIMBA_CHECK(resamples >= 1, "paired_bootstrap: expected resamples >= 1, got " << resamples);
  SIMBA_CHECK(level > 0 && level < 1, "paired_bootstrap: expected a confidence level in (0, 1), got " << level);
  const size_t n = a.size();
  std::vector<double> d(n);
  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    SIMBA_CHECK(std::isfinite(a[i]) && std::isfinite(b[i]),
                "paired_bootstrap: window " << i << " has a non-finite value (" << a[i] << ", " << b[i] << ")");
    d[i] = a[i] - b[i];
    total += d[i];
  }
  PairedDifference r;
  r.mean = total / static_cast<double>(n);
  r.n = static_cast<int64_t>(n);
  r.resamples = resamples;
  r.level = level;

  std::mt19937_64 rng(seed);
  std::vector<double> means(static_cast<size_t>(resamples));
  for (double& m : means) {
    double s = 0;
    for (size_t k = 0; k < n; ++k)
      s += d[static_cast<size_t>((static_cast<unsigned __int128>(rng()) * n) >> 64)];
    m = s / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  auto quantile = [&](double p) {
    const double x = p * static_cast<double>(means.size() - 1);
    const size_t i = static_cast<size_t>(x);
    const double f = x - static_cast<double>(i);
    return i + 1 < means.size() ? means[i] + f * (means[i + 1] - means[i]) : means[i];
  };
  r.low = quantile((1 - level) / 2);
  r.high = quantile((1 + level) / 2);
  return r;
}

}  // namespace simba
