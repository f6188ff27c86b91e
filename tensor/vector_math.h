// tensor/vector_math.h: elementary functions that vectorise inside `omp simd` loops.
//
// Kernels whose inner loop evaluates exp per element (the selective scan's decay exp(Δ·A),
// ssm/selective_scan.cpp; the Simba score's 2^(A·log2e·S), ssm/simba_score.cpp) use these inline
// versions, which the compiler vectorises, instead of a libm call, which it cannot.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

// exp_fast rounds with the (x + 1.5·2^m) − 1.5·2^m trick, which value-changing
// reassociation would fold away.
#ifdef __FAST_MATH__
#error "tensor/vector_math.h needs IEEE rounding: build without -ffast-math"
#endif

namespace simba {

namespace vector_math_detail {

// e^r for |r| <= ln2/2 by its Taylor series, whose truncation error r^8/8! < 6e-9 (float) and
// r^14/14! < 5e-18 (double) is below half an ulp.
inline float exp_taylor(float r) {
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

inline double exp_taylor(double r) {
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  return p * r + 1.0;
}

// p·2^k, where `shifted` = 1.5·2^23 + k (float) or 1.5·2^52 + k (double) holds the integer k in
// its mantissa: k + bias goes into the exponent field with integer arithmetic, so no
// float->int conversion can overflow (the callers replace the lanes out of range).
inline float times_pow2(float p, float shifted) {
  const uint32_t bits = (__builtin_bit_cast(uint32_t, shifted) - 0x4B400000u + 127u) << 23;
  return p * __builtin_bit_cast(float, bits);
}

inline double times_pow2(double p, double shifted) {
  const uint64_t bits = (__builtin_bit_cast(uint64_t, shifted) - 0x4338000000000000ull + 1023u) << 52;
  return p * __builtin_bit_cast(double, bits);
}

}  // namespace vector_math_detail

// exp(x) that vectorises inside `omp simd` loops (glibc's vector expf is only declared under
// -ffast-math, and a libm call would keep the loop scalar). x = k·ln2 + r with |r| <= ln2/2:
// k = round(x/ln2) by the 1.5·2^m shift trick, ln2 split into a short high part (k·ln2_hi is
// exact) plus a low correction; exp(r) by its Taylor series; 2^k is built in the exponent
// field. Measured max relative error vs a long-double exp: 0.66 ulp (float, x in [-87.3, 88.2]),
// 0.62 ulp (double, x in [-708, 708]). x < -87.5 (-708) gives 0 (the true value is < 1e-38
// (1e-307), which a decay factor cannot tell from 0), x > 88.3 (709) gives +inf, NaN stays NaN.
inline float exp_fast(float x) {
  const float shifted = x * 1.44269504088896341f + 12582912.0f;  // 1.5·2^23 + round(x/ln2)
  const float k = shifted - 12582912.0f;
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float e = vector_math_detail::times_pow2(vector_math_detail::exp_taylor(r), shifted);
  e = x < -87.5f ? 0.0f : e;
  e = x > 88.3f ? HUGE_VALF : e;
  return e;
}

inline double exp_fast(double x) {
  const double shifted = x * 1.4426950408889634074 + 6755399441055744.0;  // 1.5·2^52 + round
  const double k = shifted - 6755399441055744.0;
  const double r = (x - k * 6.93145751953125e-1) - k * 1.42860682030941723212e-6;
  double e = vector_math_detail::times_pow2(vector_math_detail::exp_taylor(r), shifted);
  e = x < -708.0 ? 0.0 : e;
  e = x > 709.0 ? HUGE_VAL : e;
  return e;
}

// 2^x for x < 127.5 (float) / 1023.5 (double), vectorisable like exp_fast: k = round(x) by the
// shift trick, x − k is exact (|x − k| <= 1/2), 2^(x−k) = e^((x−k)·ln2) by the same series.
// Results below the normal range are flushed: x < -126 (-1022) gives 0, as the GPU's
// ex2.approx.ftz does, so the two devices agree on which decay factors vanish (the Simba
// score, ssm/simba_score.h, evaluates its exponentials as powers of two on both). NaN stays
// NaN. Measured (tests/test_vector_math.cpp): within 1 ulp of the long-double reference.
inline float exp2_fast(float x) {
  const float shifted = x + 12582912.0f;  // 1.5·2^23 + round(x)
  const float k = shifted - 12582912.0f;
  const float e = vector_math_detail::times_pow2(vector_math_detail::exp_taylor((x - k) * 0.693147182f), shifted);
  return x < -126.0f ? 0.0f : e;
}

inline double exp2_fast(double x) {
  const double shifted = x + 6755399441055744.0;  // 1.5·2^52 + round(x)
  const double k = shifted - 6755399441055744.0;
  const double e =
      vector_math_detail::times_pow2(vector_math_detail::exp_taylor((x - k) * 0.6931471805599453094), shifted);
  return x < -1022.0 ? 0.0 : e;
}

// log(u) for finite u > 0 in the normal range, vectorisable like exp_fast: u = m·2^e with
// m in [√½, √2) (exponent and mantissa read from the bits), then
// log m = 2·atanh(s) = 2·(s + s³/3 + s⁵/5 + ...), s = (m−1)/(m+1), |s| <= 0.1716, so
// s² <= 0.0295 and the series is cut where the next term is below half an ulp
// (s^11/11 for float, s^23/23 for double). ln2 is split as in exp_fast so e·ln2_hi is exact.
// Measured (tests/test_vector_math.cpp): at most 2.1 ulp (float), 1.3 ulp (double).
template <class T>
inline T log_fast(T u);

template <>
inline float log_fast(float u) {
  const uint32_t bits = __builtin_bit_cast(uint32_t, u);
  int32_t e = static_cast<int32_t>(bits >> 23) - 127;
  float m = __builtin_bit_cast(float, (bits & 0x007FFFFFu) | 0x3F800000u);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  float p = 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  const float ef = static_cast<float>(e);
  return (ef * 0.693359375f + 2.0f * s * p) - ef * 2.12194440e-4f;
}

template <>
inline double log_fast(double u) {
  const uint64_t bits = __builtin_bit_cast(uint64_t, u);
  int64_t e = static_cast<int64_t>(bits >> 52) - 1023;
  double m = __builtin_bit_cast(double, (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);
  const bool big = m > 1.4142135623730951;
  m = big ? m * 0.5 : m;
  e = big ? e + 1 : e;
  const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double p = 1.0 / 21;
  for (int k = 19; k >= 1; k -= 2) p = p * s2 + 1.0 / k;
  const double ed = static_cast<double>(e);
  return (ed * 6.93145751953125e-1 + 2.0 * s * p) + ed * 1.42860682030941723212e-6;
}

// log1p(y) for y >= 0 (softplus feeds it e^x), vectorisable: u = 1 + y rounds, and
// log1p(y) = log(u) + (y − (u − 1))/u puts the rounding error of u back to first order,
// which keeps full precision for tiny y (there log u = 0 and the correction is y).
// Measured: at most 2.8 ulp for y in [1e-30, 1e30].
// +inf gives +inf, NaN stays NaN.
template <class T>
inline T log1p_fast(T y) {
  const T u = T(1) + y;
  T r = log_fast(u) + (y - (u - T(1))) / u;
  r = y == std::numeric_limits<T>::infinity() ? y : r;
  return y != y ? y : r;
}

}  // namespace simba
