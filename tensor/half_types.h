// tensor/half_types.h: the 16-bit floating storage types bfloat16 and float16 (IEEE 754
// binary16), and their conversions, for host code and CUDA kernels alike.
//
// They are storage only: a kernel loads a value, widens it to float (exact: every bfloat16 and
// float16 value is a float), computes in float, and rounds the result once when it stores it.
//   widening   operator float (implicit), explicit operator double, f16_bits_to_f32 /
//              bf16_bits_to_f32: exact for every pattern; ±0, subnormals, ±inf keep their
//              value, a NaN keeps its sign and payload (quiet or signalling, as it is).
//   narrowing  the explicit constructors from any arithmetic type (float, double, integers)
//              and from the other 16-bit type: IEEE 754 round to nearest, ties to even, from
//              the exact value of the source, never through an intermediate format (so
//              double -> bfloat16 and int64 -> float16 round once). Values past the largest
//              finite one round to ±inf as IEEE prescribes (float16: 65504 + 16 = 65520 and
//              above become inf); results below the normal range are subnormal (float16 down to
//              2^-24, bfloat16 down to 2^-133) or ±0. A NaN stays a NaN of the same sign: the
//              top bits of its payload are kept and the quiet bit is set, as an IEEE
//              conversion quiets a signalling NaN.
//
// Every conversion is integer arithmetic on the bit patterns, with no floating-point operation,
// so host and device produce the same bits whatever the floating-point environment
// (flush-to-zero, fast math). The types hold a uint16_t and nothing from the CUDA headers, so
// this header serves a build without the toolkit; they are trivially copyable, so tensors store
// them directly and kernels take them as arguments.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "tensor/host_device.h"

namespace simba {

namespace half_detail {

SIMBA_HOST_DEVICE inline uint32_t float_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

SIMBA_HOST_DEVICE inline float bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

SIMBA_HOST_DEVICE inline uint64_t double_bits(double d) {
#ifdef __CUDA_ARCH__
  return static_cast<uint64_t>(__double_as_longlong(d));
#else
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
#endif
}

SIMBA_HOST_DEVICE inline double bits_double(uint64_t u) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(static_cast<long long>(u));
#else
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
#endif
}

// The index of the highest set bit of x != 0.
SIMBA_HOST_DEVICE inline int leading_bit(uint64_t x) {
#ifdef __CUDA_ARCH__
  return 63 - __clzll(static_cast<long long>(x));
#else
  return 63 - __builtin_clzll(x);
#endif
}

// The pattern of the format with E exponent bits and M fraction bits (bias 2^(E-1) - 1)
// nearest to (-1)^negative · sig · 2^exp2, sig != 0, ties to even.
template <int E, int M>
SIMBA_HOST_DEVICE uint16_t round_finite(bool negative, uint64_t sig, int exp2) {
  constexpr int kBias = (1 << (E - 1)) - 1;
  constexpr int kMinExp = 1 - kBias;  // exponent of the smallest normal value
  constexpr uint32_t kInf = ((1u << E) - 1) << M;
  const uint32_t sign = negative ? 1u << (E + M) : 0u;
  const int lead = leading_bit(sig);
  const int top = lead + exp2;  // the value lies in [2^top, 2^(top+1))
  if (top > kBias) return static_cast<uint16_t>(sign | kInf);  // at least twice the largest finite value
  // The last kept bit weighs 2^lsb: M bits below the leading one for a normal result, the
  // subnormal spacing 2^(kMinExp - M) below the normal range.
  const int lsb = (top < kMinExp ? kMinExp : top) - M;
  const int shift = lsb - exp2;  // how many low bits of sig are rounded off
  uint64_t q;
  if (shift <= 0) {
    q = sig << -shift;  // exact; q < 2^(M+1)
  } else if (shift > lead) {
    // Only for subnormal results: all of sig lies below the last kept bit. The value is at
    // least half of 2^lsb only when shift == lead + 1, and exactly half (a tie, to even 0)
    // when sig is a power of two.
    q = shift == lead + 1 && sig != (uint64_t(1) << lead) ? 1 : 0;
  } else {
    q = sig >> shift;
    const uint64_t rest = sig & ((uint64_t(1) << shift) - 1), half = uint64_t(1) << (shift - 1);
    q += rest > half || (rest == half && (q & 1));
  }
  // A normal q has its leading bit at position M, so adding it to (biased exponent - 1) << M
  // sets the exponent field; a subnormal q is the fraction field itself. A carry out of the
  // fraction raises the exponent by one: the largest subnormal rounds up to the smallest
  // normal, and the largest finite value up to exactly kInf.
  const uint32_t field = top < kMinExp ? 0u : static_cast<uint32_t>(top + kBias - 1);
  return static_cast<uint16_t>(sign | ((field << M) + static_cast<uint32_t>(q)));
}

// The nearest pattern of the (E, M) format to the IEEE binary value with SE exponent bits and
// SM fraction bits whose pattern is `bits` (float: 8, 23; double: 11, 52).
template <int E, int M, int SE, int SM>
SIMBA_HOST_DEVICE uint16_t round_binary(uint64_t bits) {
  constexpr int kSrcBias = (1 << (SE - 1)) - 1;
  constexpr uint64_t kSrcExpMask = (uint64_t(1) << SE) - 1;
  const bool negative = (bits >> (SE + SM)) & 1;
  const uint64_t exp = (bits >> SM) & kSrcExpMask, frac = bits & ((uint64_t(1) << SM) - 1);
  const uint32_t sign = negative ? 1u << (E + M) : 0u;
  if (exp == kSrcExpMask) {
    const uint32_t inf = ((1u << E) - 1) << M;
    if (frac == 0) return static_cast<uint16_t>(sign | inf);
    return static_cast<uint16_t>(sign | inf | (1u << (M - 1)) | static_cast<uint32_t>(frac >> (SM - M)));
  }
  if (exp == 0 && frac == 0) return static_cast<uint16_t>(sign);
  // Normal: (2^SM + frac) · 2^(exp - bias - SM); subnormal: frac · 2^(1 - bias - SM).
  const uint64_t sig = exp == 0 ? frac : frac | (uint64_t(1) << SM);
  const int exp2 = (exp == 0 ? 1 : static_cast<int>(exp)) - kSrcBias - SM;
  return round_finite<E, M>(negative, sig, exp2);
}

// float -> double on the bits: exact for every float, subnormals included under any
// flush-to-zero mode, and a NaN keeps its sign and payload (the top fraction bits) unchanged,
// where a hardware conversion may quiet or replace it.
SIMBA_HOST_DEVICE inline double widen_to_double(float f) {
  const uint32_t u = float_bits(f);
  const uint64_t sign = static_cast<uint64_t>(u >> 31) << 63;
  const uint32_t exp = (u >> 23) & 0xff, frac = u & 0x7fffff;
  uint64_t out;
  if (exp == 0xff) {
    out = sign | uint64_t(0x7ff) << 52 | static_cast<uint64_t>(frac) << 29;
  } else if (exp != 0) {
    out = sign | static_cast<uint64_t>(exp - 127 + 1023) << 52 | static_cast<uint64_t>(frac) << 29;
  } else if (frac == 0) {
    out = sign;
  } else {
    // frac · 2^-149 with its leading bit at position p is 2^(p - 149) · 1.f.
    const int p = leading_bit(frac);
    out = sign | static_cast<uint64_t>(p - 149 + 1023) << 52 |
          ((static_cast<uint64_t>(frac) << (52 - p)) & ((uint64_t(1) << 52) - 1));
  }
  return bits_double(out);
}

// float -> bfloat16 (the top half of a float32) on the bits: the same pattern as
// round_binary<8, 7, 8, 23> for every float, in a few integer instructions instead of its
// general path (64-bit shifts, a count of leading zeros, branches), which made every bfloat16
// store on the GPU compute-bound. Adding 0x7fff plus the kept half's lowest bit rounds the
// dropped half to nearest, ties to even; the carry runs into the exponent exactly when the
// value rounds up to the next binade (the largest finite values to infinity), and subnormals
// round the same way. A NaN keeps its sign and top payload bits with the quiet bit set.
SIMBA_HOST_DEVICE inline uint16_t round_float_to_bf16(uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// The nearest (E, M) pattern to an arithmetic value.
template <int E, int M, class T>
SIMBA_HOST_DEVICE uint16_t round_to(T v) {
  if constexpr (std::is_integral_v<T>) {
    if (v == 0) return 0;
    if constexpr (std::is_signed_v<T>) {
      const bool negative = v < 0;
      // |v| in uint64 arithmetic, which also holds |INT64_MIN|.
      const uint64_t magnitude = negative ? uint64_t(0) - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
      return round_finite<E, M>(negative, magnitude, 0);
    } else {
      return round_finite<E, M>(false, static_cast<uint64_t>(v), 0);
    }
  } else if constexpr (std::is_same_v<T, float>) {
    if constexpr (E == 8 && M == 7) {
      return round_float_to_bf16(float_bits(v));
    } else {
      return round_binary<E, M, 8, 23>(float_bits(v));
    }
  } else {
    static_assert(std::is_same_v<T, double>, "16-bit floats convert from float, double and integers");
    return round_binary<E, M, 11, 52>(double_bits(v));
  }
}

}  // namespace half_detail

// bfloat16 is the top half of a float32, so widening is a shift (a NaN keeps its payload).
SIMBA_HOST_DEVICE inline float bf16_bits_to_f32(uint16_t bits) {
  return half_detail::bits_float(static_cast<uint32_t>(bits) << 16);
}

// binary16 (1 sign, 5 exponent bits with bias 15, 10 fraction bits) to float32: rebias the
// exponent; a subnormal half m · 2^-24 is a normal float; inf and NaN keep the top fraction bits.
SIMBA_HOST_DEVICE inline float f16_bits_to_f32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits >> 15) << 31;
  const int exp = (bits >> 10) & 0x1f;
  const uint32_t frac = bits & 0x3ff;
  uint32_t out;
  if (exp == 0x1f) {
    out = sign | 0x7f800000u | (frac << 13);
  } else if (exp != 0) {
    out = sign | static_cast<uint32_t>(exp - 15 + 127) << 23 | (frac << 13);
  } else if (frac == 0) {
    out = sign;
  } else {
    // frac · 2^-24 with its leading bit at position p is 2^(p - 24) · 1.f: shift that bit out
    // to the implicit position.
    const int p = half_detail::leading_bit(frac);
    out = sign | static_cast<uint32_t>(p - 24 + 127) << 23 | ((frac << (23 - p)) & 0x7fffffu);
  }
  return half_detail::bits_float(out);
}

struct float16;

// bfloat16: 1 sign, 8 exponent bits (bias 127, float32's range), 7 fraction bits.
struct bfloat16 {
  uint16_t bits;

  bfloat16() = default;
  template <class T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
  SIMBA_HOST_DEVICE explicit bfloat16(T v) : bits(half_detail::round_to<8, 7>(v)) {}
  SIMBA_HOST_DEVICE explicit bfloat16(float16 h);
  SIMBA_HOST_DEVICE operator float() const { return bf16_bits_to_f32(bits); }
  SIMBA_HOST_DEVICE explicit operator double() const { return half_detail::widen_to_double(*this); }
  SIMBA_HOST_DEVICE static bfloat16 from_bits(uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
};

// float16 (IEEE 754 binary16): 1 sign, 5 exponent bits (bias 15), 10 fraction bits; largest
// finite value 65504.
struct float16 {
  uint16_t bits;

  float16() = default;
  template <class T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
  SIMBA_HOST_DEVICE explicit float16(T v) : bits(half_detail::round_to<5, 10>(v)) {}
  SIMBA_HOST_DEVICE explicit float16(bfloat16 b) : float16(static_cast<float>(b)) {}
  SIMBA_HOST_DEVICE operator float() const { return f16_bits_to_f32(bits); }
  SIMBA_HOST_DEVICE explicit operator double() const { return half_detail::widen_to_double(*this); }
  SIMBA_HOST_DEVICE static float16 from_bits(uint16_t b) {
    float16 h;
    h.bits = b;
    return h;
  }
};

// Through float, which holds every float16 exactly: one rounding.
SIMBA_HOST_DEVICE inline bfloat16::bfloat16(float16 h) : bfloat16(static_cast<float>(h)) {}

static_assert(sizeof(bfloat16) == 2 && std::is_trivially_copyable_v<bfloat16>, "bfloat16 is two bytes of storage");
static_assert(sizeof(float16) == 2 && std::is_trivially_copyable_v<float16>, "float16 is two bytes of storage");

}  // namespace simba
