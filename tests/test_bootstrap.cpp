// tests/test_bootstrap.cpp: the paired bootstrap interval (train/bootstrap.h) against cases whose
// answer is known: no difference, a constant shift, the normal approximation for many windows,
// determinism, and its errors.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "train/bootstrap.h"
#include "tests/test_util.h"

using namespace simba;

TEST_CASE("paired bootstrap: equal methods give 0 [0, 0]; a constant shift gives exactly that shift") {
  std::mt19937_64 gen(7);
  std::normal_distribution<double> noise(3.0, 1.0);
  std::vector<double> a(50);
  for (double& v : a) v = noise(gen);
  const PairedDifference same = paired_bootstrap(a, a, 500);
  CHECK(same.mean == 0.0);
  CHECK(same.low == 0.0);
  CHECK(same.high == 0.0);
  CHECK(same.n == 50);
  CHECK(same.resamples == 500);
  CHECK(same.level == 0.95);
  // Window difficulty varies a lot (sd 1), the difference not at all: pairing removes it.
  std::vector<double> b = a;
  for (double& v : b) v += 0.25;
  const PairedDifference shift = paired_bootstrap(b, a, 500);
  CHECK(shift.mean == doctest::Approx(0.25).epsilon(1e-12));
  CHECK(shift.low == doctest::Approx(0.25).epsilon(1e-12));
  CHECK(shift.high == doctest::Approx(0.25).epsilon(1e-12));
}

TEST_CASE("paired bootstrap: the interval matches the normal approximation and covers the mean") {
  // d_i ~ N(0.1, 0.5²) over n = 400 windows: the 95 % interval of the mean is about
  // mean ± 1.96·s/√n; the percentile bootstrap agrees to a few percent of its width.
  std::mt19937_64 gen(11);
  std::normal_distribution<double> difficulty(2.0, 1.0), diff(0.1, 0.5);
  const size_t n = 400;
  std::vector<double> a(n), b(n);
  double s1 = 0, s2 = 0;
  for (size_t i = 0; i < n; ++i) {
    b[i] = difficulty(gen);
    const double d = diff(gen);
    a[i] = b[i] + d;
    s1 += d;
    s2 += d * d;
  }
  const double mean = s1 / n, sd = std::sqrt((s2 - n * mean * mean) / (n - 1));
  const double half = 1.959964 * sd / std::sqrt(double(n));
  const PairedDifference r = paired_bootstrap(a, b, 20000);
  CHECK(r.mean == doctest::Approx(mean).epsilon(1e-12));
  CHECK(r.low < r.mean);
  CHECK(r.high > r.mean);
  MESSAGE("bootstrap [" << r.low << ", " << r.high << "], normal [" << mean - half << ", " << mean + half << "]");
  CHECK(std::fabs(r.low - (mean - half)) < 0.05 * 2 * half);
  CHECK(std::fabs(r.high - (mean + half)) < 0.05 * 2 * half);
  // A 50 % interval lies inside the 95 % one.
  const PairedDifference narrow = paired_bootstrap(a, b, 20000, 0.5);
  CHECK(narrow.low > r.low);
  CHECK(narrow.high < r.high);
}

TEST_CASE("paired bootstrap: the same inputs and seed give the same interval; another seed another one") {
  std::vector<double> a = {1.0, 2.5, 0.5, 3.0, 2.0, 1.5, 0.25}, b = {1.2, 2.0, 0.9, 2.1, 2.2, 1.0, 0.5};
  const PairedDifference x = paired_bootstrap(a, b, 1000, 0.95, 5), y = paired_bootstrap(a, b, 1000, 0.95, 5);
  CHECK(x.low == y.low);
  CHECK(x.high == y.high);
  const PairedDifference z = paired_bootstrap(a, b, 1000, 0.95, 6);
  CHECK((z.low != x.low || z.high != x.high));
  CHECK(z.mean == x.mean);
}

TEST_CASE("paired bootstrap: errors name what is wrong") {
  const std::vector<double> a = {1.0, 2.0}, b = {1.0};
  CHECK(contains(error_of([&] { paired_bootstrap(a, b); }), "have 2 and 1 windows"));
  CHECK(contains(error_of([&] { paired_bootstrap({}, {}); }), "no windows to compare"));
  CHECK(contains(error_of([&] { paired_bootstrap(a, a, 0); }), "expected resamples >= 1, got 0"));
  CHECK(contains(error_of([&] { paired_bootstrap(a, a, 10, 1.0); }), "confidence level in (0, 1), got 1"));
  CHECK(contains(error_of([&] { paired_bootstrap({1.0, NAN}, a, 10); }), "window 1 has a non-finite value"));
}
