// tensor/vector_math.h: elementary functions that vectorise inside `omp simd` loops.
//
// Kernels whose inner loop evaluates exp per element (the selective scan's decay exp(Δ·A),
// ssm/selective_scan.cpp; the Simba score's exp(A·S), ssm/simba_score.cpp) use these inline
// versions, which the compiler vectorises, instead of a libm call, which it cannot.
#pragma once

#include <cmath>
#include <cstdint>

// exp_fast rounds with the (x + 1.5·2^m) − 1.5·2^m trick, which value-changing
// reassociation would fold away.
#ifdef __FAST_MATH__
#error "tensor/vector_math.h needs IEEE rounding: build without -ffast-math"
#endif

namespace simba {

// exp(x) that vectorises inside `omp simd` loops (glibc's vector expf is only declared under
// -ffast-math, and a libm call would keep the loop scalar). x = k·ln2 + r with |r| <= ln2/2:
// k = round(x/ln2) by the 1.5·2^m shift trick, ln2 split into a short high part (k·ln2_hi is
// exact) plus a low correction; exp(r) by its Taylor series, whose truncation error r^8/8! <
// 6e-9 (float) and r^14/14! < 5e-18 (double) is below half an ulp; 2^k is built in the exponent
// field. Measured max relative error vs a long-double exp: 0.66 ulp (float, x in [-87.3, 88.2]),
// 0.62 ulp (double, x in [-708, 708]). x < -87.5 (-708) gives 0 (the true value is < 1e-38
// (1e-307), which a decay factor cannot tell from 0), x > 88.3 (709) gives +inf, NaN stays NaN.
inline float exp_fast(float x) {
  const float shifted = x * 1.44269504088896341f + 12582912.0f;  // 1.5·2^23 + round(x/ln2)
  const float k = shifted - 12582912.0f;
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // k + 127 in the exponent field; k is read from the mantissa of `shifted`, so no
  // float->int conversion can overflow (lanes out of range are replaced below).
  const uint32_t bits = (__builtin_bit_cast(uint32_t, shifted) - 0x4B400000u + 127u) << 23;
  float e = p * __builtin_bit_cast(float, bits);
  e = x < -87.5f ? 0.0f : e;
  e = x > 88.3f ? HUGE_VALF : e;
  return e;
}

inline double exp_fast(double x) {
  const double shifted = x * 1.4426950408889634074 + 6755399441055744.0;  // 1.5·2^52 + round
  const double k = shifted - 6755399441055744.0;
  const double r = (x - k * 6.93145751953125e-1) - k * 1.42860682030941723212e-6;
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
  p = p * r + 1.0;
  const uint64_t bits = (__builtin_bit_cast(uint64_t, shifted) - 0x4338000000000000ull + 1023u)
                        << 52;
  double e = p * __builtin_bit_cast(double, bits);
  e = x < -708.0 ? 0.0 : e;
  e = x > 709.0 ? HUGE_VAL : e;
  return e;
}

}  // namespace simba
