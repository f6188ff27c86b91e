// tensor/elementwise_math.h: the per-element formulas of tensor/elementwise.h, shared by the
// CPU loops (tensor/elementwise.cpp) and the CUDA kernels (tensor/elementwise.cu) so both
// devices evaluate the same expressions.
//
// Every op is a compile-time template argument (with_unary_op / with_binary_op turn the
// runtime enum into one), so each op gets its own loop. The only difference between the
// devices is the elementary function behind exp and log1p: on the host exp_fast and
// log1p_fast (tensor/vector_math.h, < 1 ulp and < 3 ulp), which vectorise inside `omp simd`
// where a libm call would not; on the device CUDA's exp / log1p (<= 2 ulp). log, log1p (the
// op), sqrt and pow are the C library's on the host and CUDA's on the device.
#pragma once

#include <cmath>
#include <type_traits>

#include "tensor/elementwise.h"
#include "tensor/strided_layout.h"
#include "tensor/vector_math.h"

namespace simba {
namespace pointwise {

// CUDA's device math names the float versions expf, logf, ...; the host uses std::.
#ifdef __CUDA_ARCH__
#define SIMBA_POINTWISE_FN(NAME, F32_FN, F64_FN)                                   \
  template <class T>                                                               \
  __device__ inline T NAME(T v) {                                                  \
    if constexpr (std::is_same_v<T, float>) return F32_FN(v); else return F64_FN(v); \
  }
SIMBA_POINTWISE_FN(exp_of, expf, ::exp)
SIMBA_POINTWISE_FN(log1p_pos_of, log1pf, ::log1p)
SIMBA_POINTWISE_FN(log_of, logf, ::log)
SIMBA_POINTWISE_FN(log1p_of, log1pf, ::log1p)
SIMBA_POINTWISE_FN(sqrt_of, sqrtf, ::sqrt)
SIMBA_POINTWISE_FN(fabs_of, fabsf, ::fabs)
#undef SIMBA_POINTWISE_FN
template <class T>
__device__ inline T pow_of(T a, T b) {
  if constexpr (std::is_same_v<T, float>) return powf(a, b); else return ::pow(a, b);
}
#else
template <class T> inline T exp_of(T v) { return exp_fast(v); }
template <class T> inline T log1p_pos_of(T v) { return log1p_fast(v); }  // v >= 0 only
template <class T> inline T log_of(T v) { return std::log(v); }
template <class T> inline T log1p_of(T v) { return std::log1p(v); }
template <class T> inline T sqrt_of(T v) { return std::sqrt(v); }
template <class T> inline T fabs_of(T v) { return std::fabs(v); }
template <class T> inline T pow_of(T a, T b) { return std::pow(a, b); }
#endif

template <class T>
SIMBA_HOST_DEVICE inline T sigmoid_of(T v) {
  return T(1) / (T(1) + exp_of(-v));
}

// 1 − e^(−v) for v ≥ 0, without the cancellation of the plain formula at small v. On the device
// and in float64 it is −expm1(−v); the host's float loops use exp_fast (which vectorises, where
// std::expm1 would not) above 1/4, and below it the Taylor series to v^8 (truncation < 5e-11
// relative, under float32 rounding).
template <class T>
SIMBA_HOST_DEVICE inline T one_minus_exp_neg(T v) {
#ifdef __CUDA_ARCH__
  if constexpr (std::is_same_v<T, float>) return -expm1f(-v); else return -::expm1(-v);
#else
  if constexpr (std::is_same_v<T, double>) {
    return -std::expm1(-v);
  } else {
    T s = T(1) - v * T(1.0 / 8);
    s = T(1) - v * T(1.0 / 7) * s;
    s = T(1) - v * T(1.0 / 6) * s;
    s = T(1) - v * T(1.0 / 5) * s;
    s = T(1) - v * T(1.0 / 4) * s;
    s = T(1) - v * T(1.0 / 3) * s;
    s = T(1) - v * T(1.0 / 2) * s;
    return v < T(0.25) ? v * s : T(1) - exp_of(-v);
  }
#endif
}

// softplus(x) = log(1 + e^x); for x > 20, e^x > 4.8e8 and log1p(e^x) equals x to float64
// rounding, while exp(x) would overflow for x > ~88 in float32.
template <class T>
SIMBA_HOST_DEVICE inline T softplus_of(T v) {
  return v > T(20) ? v : log1p_pos_of(exp_of(v));
}

template <UnaryOp OP, class T>
SIMBA_HOST_DEVICE inline T apply_unary(T v) {
  if constexpr (OP == UnaryOp::Neg) return -v;
  if constexpr (OP == UnaryOp::Exp) return exp_of(v);
  if constexpr (OP == UnaryOp::Log) return log_of(v);
  if constexpr (OP == UnaryOp::Log1p) return log1p_of(v);
  if constexpr (OP == UnaryOp::Sqrt) return sqrt_of(v);
  if constexpr (OP == UnaryOp::Rsqrt) return T(1) / sqrt_of(v);
  if constexpr (OP == UnaryOp::Sigmoid) return sigmoid_of(v);
  if constexpr (OP == UnaryOp::Silu) return v * sigmoid_of(v);
  if constexpr (OP == UnaryOp::Softplus) return softplus_of(v);
  if constexpr (OP == UnaryOp::Abs) return fabs_of(v);
  if constexpr (OP == UnaryOp::Square) return v * v;
}

// d op(x)/dx expressed with x or with y = op(x), never both (unary_reads in tensor/elementwise.cpp
// names which): an autograd node keeps only that one.
template <UnaryOp OP, class T>
SIMBA_HOST_DEVICE inline T unary_derivative(T x, T y) {
  if constexpr (OP == UnaryOp::Neg) return T(-1);
  if constexpr (OP == UnaryOp::Exp) return y;
  if constexpr (OP == UnaryOp::Log) return T(1) / x;
  if constexpr (OP == UnaryOp::Log1p) return T(1) / (T(1) + x);
  if constexpr (OP == UnaryOp::Sqrt) return T(0.5) / y;
  if constexpr (OP == UnaryOp::Rsqrt) return T(-0.5) * y * y * y;
  if constexpr (OP == UnaryOp::Sigmoid) return y * (T(1) - y);
  if constexpr (OP == UnaryOp::Silu) {  // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
    T s = sigmoid_of(x);
    return s * (T(1) + x * (T(1) - s));
  }
  // σ(x) = 1 − e^(−softplus(x)): from the output, which the scan keeps anyway (Δ), so that the
  // input (dt_proj's output) need not be kept (docs/training-memory.md).
  if constexpr (OP == UnaryOp::Softplus) return one_minus_exp_neg(y);
  if constexpr (OP == UnaryOp::Abs) return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
  if constexpr (OP == UnaryOp::Square) return T(2) * x;
}

template <BinaryOp OP, class T>
SIMBA_HOST_DEVICE inline T apply_binary(T a, T b) {
  if constexpr (OP == BinaryOp::Add) return a + b;
  if constexpr (OP == BinaryOp::Sub) return a - b;
  if constexpr (OP == BinaryOp::Mul) return a * b;
  if constexpr (OP == BinaryOp::Div) return a / b;
  if constexpr (OP == BinaryOp::Pow) return pow_of(a, b);
}

// The ops with scalar parameters (s, t): affine x·s + t, pow x^s, clamp min(max(x, s), t).
template <ScalarOp OP, class T>
SIMBA_HOST_DEVICE inline T apply_scalar(T v, T s, T t) {
  if constexpr (OP == ScalarOp::Affine) return v * s + t;
  if constexpr (OP == ScalarOp::Pow) return pow_of(v, s);
  if constexpr (OP == ScalarOp::Clamp) return v < s ? s : (v > t ? t : v);
}

// clamp's gradient factor: 1 where clamp is the identity (clamp(x) == x), 0 where it clipped
// (and for NaN x).
template <class T>
SIMBA_HOST_DEVICE inline T clamp_pass(T x, T lo, T hi) {
  return apply_scalar<ScalarOp::Clamp>(x, lo, hi) == x ? T(1) : T(0);
}

// Calls f(std::integral_constant<UnaryOp, op>{}): turns the runtime op into a compile-time one.
template <class F>
decltype(auto) with_unary_op(UnaryOp op, F&& f) {
  using U = UnaryOp;
  switch (op) {
    case U::Neg: return f(std::integral_constant<U, U::Neg>{});
    case U::Exp: return f(std::integral_constant<U, U::Exp>{});
    case U::Log: return f(std::integral_constant<U, U::Log>{});
    case U::Log1p: return f(std::integral_constant<U, U::Log1p>{});
    case U::Sqrt: return f(std::integral_constant<U, U::Sqrt>{});
    case U::Rsqrt: return f(std::integral_constant<U, U::Rsqrt>{});
    case U::Sigmoid: return f(std::integral_constant<U, U::Sigmoid>{});
    case U::Silu: return f(std::integral_constant<U, U::Silu>{});
    case U::Softplus: return f(std::integral_constant<U, U::Softplus>{});
    case U::Abs: return f(std::integral_constant<U, U::Abs>{});
    case U::Square: return f(std::integral_constant<U, U::Square>{});
  }
  SIMBA_FAIL("unknown unary op " << static_cast<int>(op));
}

template <class F>
decltype(auto) with_binary_op(BinaryOp op, F&& f) {
  using O = BinaryOp;
  switch (op) {
    case O::Add: return f(std::integral_constant<O, O::Add>{});
    case O::Sub: return f(std::integral_constant<O, O::Sub>{});
    case O::Mul: return f(std::integral_constant<O, O::Mul>{});
    case O::Div: return f(std::integral_constant<O, O::Div>{});
    case O::Pow: return f(std::integral_constant<O, O::Pow>{});
  }
  SIMBA_FAIL("unknown binary op " << static_cast<int>(op));
}

template <class F>
decltype(auto) with_scalar_op(ScalarOp op, F&& f) {
  using S = ScalarOp;
  switch (op) {
    case S::Affine: return f(std::integral_constant<S, S::Affine>{});
    case S::Pow: return f(std::integral_constant<S, S::Pow>{});
    case S::Clamp: return f(std::integral_constant<S, S::Clamp>{});
  }
  SIMBA_FAIL("unknown scalar op " << static_cast<int>(op));
}

}  // namespace pointwise
}  // namespace simba
