// tests/test_vector_math.cpp: exp_fast and exp2_fast (tensor/vector_math.h) against long-double
// exp and exp2: at most 1 ulp over the whole normal range in float and double, the documented edges (underflow to 0,
// overflow to inf, NaN, exp(0) = 1), and the vectorised loop bit-identical to scalar calls.
// An ulp here is the spacing of T at the rounded reference, which is up to 2× stricter than the
// header's relative error / ε (0.66 and 0.62 there; about 0.92 and 0.87 here).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tensor/vector_math.h"

using namespace simba;

namespace {

// |got − ref| in units of the spacing of T above ref rounded to T.
template <class T>
double ulps(T got, long double ref) {
  const T r = static_cast<T>(ref);
  const long double spacing = std::nextafter(r, std::numeric_limits<T>::infinity()) - r;
  return static_cast<double>(std::fabs(static_cast<long double>(got) - ref) / spacing);
}

// The largest error in ulps of fast(x) against ref(x) (long double) on steps + 1 points of [lo, hi].
template <class T, class Fast, class Ref>
double worst_ulps(Fast fast, Ref ref, T lo, T hi, int steps) {
  double worst = 0;
  for (int i = 0; i <= steps; ++i) {
    const T x = lo + (hi - lo) * static_cast<T>(i) / static_cast<T>(steps);
    worst = std::max(worst, ulps<T>(fast(x), ref(static_cast<long double>(x))));
  }
  return worst;
}

template <class T>
double worst_ulps(T lo, T hi, int steps) {
  return worst_ulps<T>([](T x) { return exp_fast(x); }, [](long double x) { return std::exp(x); }, lo, hi, steps);
}

template <class T>
double worst_ulps_exp2(T lo, T hi, int steps) {
  return worst_ulps<T>([](T x) { return exp2_fast(x); }, [](long double x) { return std::exp2(x); }, lo, hi, steps);
}

__attribute__((noinline)) float scalar_exp(float x) { return exp_fast(x); }

}  // namespace

TEST_CASE("exp_fast: within 1 ulp of expl over the normal range (float and double)") {
  const double wf = worst_ulps<float>(-87.3f, 88.2f, 2000000);
  const double wd = worst_ulps<double>(-708.0, 708.0, 2000000);
  // Near 0, where most decay factors live, on a fine grid.
  const double wf0 = worst_ulps<float>(-1.0f, 1.0f, 1000000);
  const double wd0 = worst_ulps<double>(-1.0, 1.0, 1000000);
  MESSAGE("exp_fast max error: float " << wf << " ulp (" << wf0 << " on [-1, 1]), double " << wd << " ulp (" << wd0
                                       << " on [-1, 1])");
  CHECK(wf <= 1.0);
  CHECK(wd <= 1.0);
  CHECK(wf0 <= 1.0);
  CHECK(wd0 <= 1.0);
}

TEST_CASE("exp_fast: edges: exp(0) = 1, underflow to 0, overflow to inf, NaN stays NaN") {
  CHECK(exp_fast(0.0f) == 1.0f);
  CHECK(exp_fast(0.0) == 1.0);
  CHECK(exp_fast(-87.6f) == 0.0f);
  CHECK(exp_fast(-1000.0f) == 0.0f);
  CHECK(exp_fast(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(exp_fast(-708.5) == 0.0);
  CHECK(exp_fast(88.4f) == std::numeric_limits<float>::infinity());
  CHECK(exp_fast(709.5) == std::numeric_limits<double>::infinity());
  CHECK(std::isnan(exp_fast(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(exp_fast(std::numeric_limits<double>::quiet_NaN())));
  // Just inside the range: finite and positive.
  CHECK(exp_fast(-87.3f) > 0.0f);
  CHECK(std::isfinite(exp_fast(88.2f)));
}

TEST_CASE("exp2_fast: within 1 ulp of exp2l over the normal range; flushes below it; NaN stays NaN") {
  const double wf = worst_ulps_exp2<float>(-126.0f, 127.0f, 2000000);
  const double wd = worst_ulps_exp2<double>(-1022.0, 1023.0, 2000000);
  const double wf0 = worst_ulps_exp2<float>(-2.0f, 0.0f, 1000000);
  const double wd0 = worst_ulps_exp2<double>(-2.0, 0.0, 1000000);
  MESSAGE("exp2_fast max error: float " << wf << " ulp (" << wf0 << " on [-2, 0]), double " << wd << " ulp (" << wd0
                                        << " on [-2, 0])");
  CHECK(wf <= 1.0);
  CHECK(wd <= 1.0);
  CHECK(wf0 <= 1.0);
  CHECK(wd0 <= 1.0);
  CHECK(exp2_fast(0.0f) == 1.0f);
  CHECK(exp2_fast(-3.0f) == 0.125f);
  CHECK(exp2_fast(-126.0f) == std::numeric_limits<float>::min());
  CHECK(exp2_fast(-126.01f) == 0.0f);
  CHECK(exp2_fast(-1022.0) == std::numeric_limits<double>::min());
  CHECK(exp2_fast(-1022.5) == 0.0);
  CHECK(exp2_fast(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(std::isnan(exp2_fast(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(exp2_fast(std::numeric_limits<double>::quiet_NaN())));
}

TEST_CASE("exp_fast: the vectorised loop gives the scalar results bit for bit") {
  std::vector<float> x(1003), v(x.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = -90.0f + 180.0f * static_cast<float>(i) / 1002.0f;
  x[17] = std::numeric_limits<float>::quiet_NaN();
#pragma omp simd
  for (size_t i = 0; i < x.size(); ++i) v[i] = exp_fast(x[i]);
  for (size_t i = 0; i < x.size(); ++i) {
    const float s = scalar_exp(x[i]);
    CHECK(((std::isnan(s) && std::isnan(v[i])) || s == v[i]));
  }
}

TEST_CASE("log_fast and log1p_fast: within 3 ulp of the long-double reference") {
  // log1p_fast's domain in simba is y >= 0 (softplus passes e^x); log_fast's is normal u > 0.
  auto check = [](auto zero) {
    using T = decltype(zero);
    double worst_log = 0, worst_log1p = 0;
    for (double lg = -30; lg <= 30; lg += 0.0137) {  // y from 1e-30 to 1e30 (float: to ~1e38)
      const T y = static_cast<T>(std::pow(10.0, lg));
      if (!std::isfinite(y) || y == 0) continue;
      worst_log1p = std::max(worst_log1p, ulps<T>(log1p_fast(y), std::log1p(static_cast<long double>(y))));
      if (std::fabs(static_cast<double>(y) - 1.0) > 1e-3)  // log itself is ill-conditioned at 1
        worst_log = std::max(worst_log, ulps<T>(log_fast(y), std::log(static_cast<long double>(y))));
    }
    const std::string type = sizeof(T) == 4 ? "float" : "double";
    MESSAGE(type << ": log_fast " << worst_log << " ulp, log1p_fast " << worst_log1p << " ulp");
    CHECK(worst_log <= 3.0);
    CHECK(worst_log1p <= 3.0);
    CHECK(log1p_fast(T(0)) == T(0));
    CHECK(std::isinf(log1p_fast(std::numeric_limits<T>::infinity())));
    CHECK(std::isnan(log1p_fast(std::numeric_limits<T>::quiet_NaN())));
  };
  check(0.0f);
  check(0.0);
}
