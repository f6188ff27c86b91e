// tensor/cuda_fast_math.cuh: float32 exponential functions on the GPU's special-function unit
// (ex2.approx: one instruction, relative error below 2^-22), for kernels whose instruction count
// they would otherwise dominate: the selective scan's decays and gate (ssm/selective_scan.cu) and
// the recurrent step's (ssm/selective_step.cu), the Simba score (ssm/simba_score.cu), the conv's
// SiLU and its derivative (nn/causal_conv1d.cu). Each has a float64 overload that stays exact:
// float64 is the type the kernels are checked against references in. Included by .cu files only.
#pragma once

#include <cuda_runtime.h>

namespace simba {
namespace fast_math {

// 2^v. float: results below 2^-126 are flushed to 0 (a decay factor in (0, 1] can afford it).
__device__ inline float exp2(float v) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
  return r;
}
__device__ inline double exp2(double v) { return ::exp2(v); }

// σ(v) = 1 / (1 + e^-v). float: exp2 and the fast division (each 2 ulp; the division returns 0
// for an infinite denominator, the right limit), a few instructions where expf and the IEEE
// division take dozens.
__device__ inline float sigmoid(float v) { return __fdividef(1.0f, 1.0f + exp2(-v * 1.4426950408889634f)); }
__device__ inline double sigmoid(double v) { return 1.0 / (1.0 + ::exp(-v)); }

// SiLU(v) = v·σ(v).
template <class A>
__device__ inline A silu(A v) {
  return v * sigmoid(v);
}

// SiLU'(v) = σ(v)·(1 + v·(1 − σ(v))).
template <class A>
__device__ inline A silu_derivative(A v) {
  const A s = sigmoid(v);
  return s * (A(1) + v * (A(1) - s));
}

}  // namespace fast_math
}  // namespace simba
