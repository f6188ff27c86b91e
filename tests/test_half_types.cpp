// tests/test_half_types.cpp: bfloat16 and float16 (tensor/half_types.h) and the tensors that
// store them: exact widening of every pattern, rounding to known bit patterns (specials,
// subnormals, overflow, ties to even, single rounding from double and int64), rounding of
// random floats, doubles and integers against an independent reference, and conversions,
// fills and copies between all five dtypes through Tensor.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace simba;

namespace {

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float f32_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
double f64_of(uint64_t u) {
  double d;
  std::memcpy(&d, &u, 8);
  return d;
}

template <class H>
uint16_t bits_of(double x) { return H(x).bits; }
template <class H>
uint16_t bits_of_f(float x) { return H(x).bits; }

// The reference rounding: a format with E exponent and M fraction bits, from its definition.
// The value of positive pattern p is (2^M + m) · 2^(e - bias - M), or m · 2^(1 - bias - M)
// for e = 0; the formula gives the infinity pattern the value 2^(emax + 1), the point past
// which IEEE rounding overflows. Rounding |x| picks the neighbour on its side of the midpoint
// of the two patterns around it (midpoints are exact doubles), the even one on a tie.
struct ReferenceFormat {
  int E, M;
  std::vector<double> value;  // of every pattern from +0 to +inf, increasing

  ReferenceFormat(int e_bits, int m_bits) : E(e_bits), M(m_bits) {
    const int bias = (1 << (E - 1)) - 1;
    const uint32_t inf = ((1u << E) - 1) << M;
    for (uint32_t p = 0; p <= inf; ++p) {
      const int e = static_cast<int>(p >> M), m = static_cast<int>(p & ((1u << M) - 1));
      value.push_back(e == 0 ? std::ldexp(m, 1 - bias - M) : std::ldexp((1 << M) + m, e - bias - M));
    }
  }
  // The nearest pattern to a finite or infinite x (not NaN).
  uint16_t round(double x) const {
    const uint16_t sign = std::signbit(x) ? static_cast<uint16_t>(1u << (E + M)) : 0;
    const double a = std::fabs(x);
    const uint32_t inf = static_cast<uint32_t>(value.size() - 1);
    if (a >= value[inf]) return static_cast<uint16_t>(sign | inf);
    // p: the last pattern with value <= a.
    const uint32_t p = static_cast<uint32_t>(std::upper_bound(value.begin(), value.end(), a) - value.begin() - 1);
    const double mid = (value[p] + value[p + 1]) / 2;
    const uint32_t q = a < mid ? p : a > mid ? p + 1 : (p % 2 == 0 ? p : p + 1);
    return static_cast<uint16_t>(sign | q);
  }
};

const ReferenceFormat& bf16_ref() {
  static const ReferenceFormat f(8, 7);
  return f;
}
const ReferenceFormat& f16_ref() {
  static const ReferenceFormat f(5, 10);
  return f;
}

// A NaN pattern of the format: exponent all ones, fraction non-zero.
bool is_nan_bits(uint16_t b, int E, int M) {
  return ((b >> M) & ((1u << E) - 1)) == (1u << E) - 1 && (b & ((1u << M) - 1)) != 0;
}

}  // namespace

// ---------------------------------------------------------------- widening

TEST_CASE("f16_bits_to_f32: special values and every normal/subnormal pattern") {
  CHECK(f32_bits(f16_bits_to_f32(0x0000)) == 0x00000000u);
  CHECK(f32_bits(f16_bits_to_f32(0x8000)) == 0x80000000u);
  CHECK(f16_bits_to_f32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f16_bits_to_f32(0x8001) == -std::ldexp(1.0f, -24));
  CHECK(f16_bits_to_f32(0x03FF) == 1023 * std::ldexp(1.0f, -24));  // largest subnormal
  CHECK(f16_bits_to_f32(0x0400) == std::ldexp(1.0f, -14));         // smallest normal
  CHECK(f16_bits_to_f32(0x7BFF) == 65504.0f);
  CHECK(f16_bits_to_f32(0xFBFF) == -65504.0f);
  CHECK(f16_bits_to_f32(0x7C00) == std::numeric_limits<float>::infinity());
  CHECK(f16_bits_to_f32(0xFC00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(f16_bits_to_f32(0x7E00)));
  CHECK(f32_bits(f16_bits_to_f32(0x7E01)) == 0x7FC02000u);  // NaN payload kept (shifted by 13)
  CHECK(std::isnan(f16_bits_to_f32(0xFC01)));

  // Independent definition of every finite pattern: (-1)^s · 2^(e-15) · (1 + m/1024),
  // and m · 2^-24 for e = 0. ldexp is exact here.
  int mismatches = 0;
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const int e = (bits >> 10) & 0x1f, m = bits & 0x3ff;
    if (e == 0x1f) continue;
    float ref = e == 0 ? std::ldexp(static_cast<float>(m), -24) : std::ldexp(1.0f + m / 1024.0f, e - 15);
    if (bits & 0x8000) ref = -ref;
    const float got = f16_bits_to_f32(static_cast<uint16_t>(bits));
    if (f32_bits(got) != f32_bits(ref)) ++mismatches;
  }
  CHECK(mismatches == 0);
#ifdef __FLT16_MAX__
  // The compiler's own _Float16 conversion, including inf and NaN patterns.
  mismatches = 0;
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const uint16_t b16 = static_cast<uint16_t>(bits);
    _Float16 h;
    std::memcpy(&h, &b16, 2);
    const float ref = static_cast<float>(h), got = f16_bits_to_f32(b16);
    if (std::isnan(ref) ? !std::isnan(got) : f32_bits(got) != f32_bits(ref)) ++mismatches;
  }
  CHECK(mismatches == 0);
#endif
}

TEST_CASE("bf16_bits_to_f32: special values") {
  CHECK(f32_bits(bf16_bits_to_f32(0x0000)) == 0x00000000u);
  CHECK(f32_bits(bf16_bits_to_f32(0x8000)) == 0x80000000u);
  CHECK(bf16_bits_to_f32(0x3F80) == 1.0f);
  CHECK(bf16_bits_to_f32(0xC040) == -3.0f);
  CHECK(bf16_bits_to_f32(0x0001) == std::ldexp(1.0f, -133));  // smallest subnormal
  CHECK(bf16_bits_to_f32(0x0080) == std::ldexp(1.0f, -126));  // smallest normal
  CHECK(bf16_bits_to_f32(0x7F7F) == 0x1.fep127f);              // max
  CHECK(bf16_bits_to_f32(0x7F80) == std::numeric_limits<float>::infinity());
  CHECK(bf16_bits_to_f32(0xFF80) == -std::numeric_limits<float>::infinity());
  CHECK(f32_bits(bf16_bits_to_f32(0x7FC1)) == 0x7FC10000u);  // NaN payload kept
  CHECK(std::isnan(bf16_bits_to_f32(0xFF81)));
}

TEST_CASE("16-bit floats widen to double exactly, NaN payloads kept, for every pattern") {
  // The double of a 16-bit value is the double of its (exact) float: the host's conversion for
  // a number; for a NaN, the float's sign and fraction in the double's top bits, as they are
  // (a signalling NaN stays signalling, where the host's conversion would quiet it).
  int mismatches = 0;
  auto check = [&](float f, double got) {
    const uint32_t u = f32_bits(f);
    const double d = f;
    uint64_t want, got_bits;
    std::memcpy(&want, &d, 8);
    if (std::isnan(f)) want = uint64_t(u >> 31) << 63 | uint64_t(0x7ff) << 52 | uint64_t(u & 0x7fffff) << 29;
    std::memcpy(&got_bits, &got, 8);
    mismatches += got_bits != want;
  };
  for (uint32_t p = 0; p < 0x10000; ++p) {
    const bfloat16 b = bfloat16::from_bits(static_cast<uint16_t>(p));
    const float16 h = float16::from_bits(static_cast<uint16_t>(p));
    check(static_cast<float>(b), static_cast<double>(b));
    check(static_cast<float>(h), static_cast<double>(h));
  }
  CHECK(mismatches == 0);
  const double s = static_cast<double>(bfloat16::from_bits(0x7F81));  // signalling NaN, payload 1
  uint64_t sb;
  std::memcpy(&sb, &s, 8);
  CHECK(sb == 0x7FF0200000000000u);
  CHECK(static_cast<double>(bfloat16::from_bits(0x0001)) == std::ldexp(1.0, -133));
  CHECK(static_cast<double>(float16::from_bits(0x8001)) == -std::ldexp(1.0, -24));
}

// ---------------------------------------------------------------- narrowing

TEST_CASE("bfloat16 from float and double: known bit patterns") {
  using H = bfloat16;
  CHECK(bits_of<H>(1.0) == 0x3F80);
  CHECK(bits_of<H>(-2.5) == 0xC020);
  CHECK(bits_of<H>(0.0) == 0x0000);
  CHECK(bits_of<H>(-0.0) == 0x8000);
  CHECK(bits_of_f<H>(0x1.fep127f) == 0x7F7F);                  // largest finite
  CHECK(bits_of_f<H>(std::numeric_limits<float>::max()) == 0x7F80);  // past max + ulp/2: inf
  CHECK(bits_of_f<H>(-std::numeric_limits<float>::max()) == 0xFF80);
  CHECK(bits_of<H>(0x1.ffp127) == 0x7F80);                      // max + ulp/2: tie to even, inf
  CHECK(bits_of<H>(0x1.fefffffffffffp127) == 0x7F7F);           // just below it
  CHECK(bits_of<H>(1e300) == 0x7F80);
  CHECK(bits_of<H>(std::ldexp(1.0, -133)) == 0x0001);           // smallest subnormal
  CHECK(bits_of<H>(std::ldexp(1.0, -134)) == 0x0000);           // half of it: tie to even 0
  CHECK(bits_of<H>(std::ldexp(1.5, -134)) == 0x0001);
  CHECK(bits_of<H>(-std::ldexp(1.0, -134)) == 0x8000);
  CHECK(bits_of_f<H>(std::ldexp(1.0f, -149)) == 0x0000);        // float's smallest subnormal
  CHECK(bits_of<H>(std::ldexp(127.5, -133)) == 0x0080);         // largest subnormal + ulp/2: up to the smallest normal
  CHECK(bits_of<H>(1e-300) == 0x0000);
  CHECK(bits_of<H>(-f64_of(1)) == 0x8000);                      // double subnormal
  CHECK(bits_of<H>(HUGE_VAL) == 0x7F80);
  CHECK(bits_of<H>(-HUGE_VAL) == 0xFF80);
  // Ties to even: 1 + 2^-8 lies halfway between 0x3F80 and 0x3F81.
  CHECK(bits_of_f<H>(f32_of(0x3F808000)) == 0x3F80);
  CHECK(bits_of_f<H>(f32_of(0x3F818000)) == 0x3F82);
  CHECK(bits_of_f<H>(f32_of(0x3F808001)) == 0x3F81);
  CHECK(bits_of_f<H>(f32_of(0x3F807FFF)) == 0x3F80);
  CHECK(bits_of_f<H>(f32_of(0xBF818000)) == 0xBF82);
  // One rounding from double: through float, 1 + 2^-8 + 2^-30 would become the tie 1 + 2^-8
  // and then round down to even.
  CHECK(bits_of<H>(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30)) == 0x3F81);
  // NaN: sign and top payload bits kept, quiet bit set.
  CHECK(bits_of_f<H>(f32_of(0x7FC00000)) == 0x7FC0);
  CHECK(bits_of_f<H>(f32_of(0xFFC00000)) == 0xFFC0);
  CHECK(bits_of_f<H>(f32_of(0x7FA10000)) == 0x7FE1);
  CHECK(bits_of_f<H>(f32_of(0x7F800001)) == 0x7FC0);  // signalling, payload below bfloat16's bits
  CHECK(bits_of<H>(std::nan("")) == 0x7FC0);
  CHECK(bits_of<H>(-std::nan("")) == 0xFFC0);
}

TEST_CASE("float16 from float and double: known bit patterns") {
  using H = float16;
  CHECK(bits_of<H>(1.0) == 0x3C00);
  CHECK(bits_of<H>(-2.5) == 0xC100);
  CHECK(bits_of<H>(-0.0) == 0x8000);
  CHECK(bits_of<H>(65504.0) == 0x7BFF);  // largest finite
  CHECK(bits_of<H>(65519.99) == 0x7BFF);
  CHECK(bits_of<H>(65520.0) == 0x7C00);  // max + ulp/2: tie to even, inf
  CHECK(bits_of<H>(-65520.0) == 0xFC00);
  CHECK(bits_of<H>(1e10) == 0x7C00);
  CHECK(bits_of_f<H>(std::numeric_limits<float>::max()) == 0x7C00);
  CHECK(bits_of<H>(std::ldexp(1.0, -24)) == 0x0001);             // smallest subnormal
  CHECK(bits_of<H>(std::ldexp(1.0, -25)) == 0x0000);             // half of it: tie to even 0
  CHECK(bits_of<H>(std::ldexp(1.0, -25) * (1 + 1e-9)) == 0x0001);
  CHECK(bits_of<H>(std::ldexp(3.0, -26)) == 0x0001);
  CHECK(bits_of<H>(std::ldexp(3.0, -25)) == 0x0002);             // 1.5 ulp: tie to even 2
  CHECK(bits_of<H>(std::ldexp(1023.0, -24)) == 0x03FF);          // largest subnormal
  CHECK(bits_of<H>(std::ldexp(1023.5, -24)) == 0x0400);          // tie: up to the smallest normal
  CHECK(bits_of<H>(std::ldexp(1.0, -14)) == 0x0400);
  CHECK(bits_of_f<H>(std::ldexp(1.0f, -126)) == 0x0000);
  CHECK(bits_of<H>(-std::ldexp(1.0, -30)) == 0x8000);
  // Ties to even: 1 + 2^-11 lies halfway between 0x3C00 and 0x3C01.
  CHECK(bits_of<H>(1.0 + std::ldexp(1.0, -11)) == 0x3C00);
  CHECK(bits_of<H>(1.0 + std::ldexp(3.0, -11)) == 0x3C02);
  CHECK(bits_of<H>(2048.0 + 1.0) == 0x6800);  // ulp 2 at 2048: 2049 ties to 2048
  CHECK(bits_of<H>(2048.0 + 3.0) == 0x6802);  // 2051 ties to 2052
  // One rounding from double (through float the 2^-40 would vanish first).
  CHECK(bits_of<H>(1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)) == 0x3C01);
  CHECK(bits_of<H>(HUGE_VAL) == 0x7C00);
  CHECK(bits_of<H>(-HUGE_VAL) == 0xFC00);
  CHECK(bits_of_f<H>(f32_of(0x7FC00000)) == 0x7E00);
  CHECK(bits_of_f<H>(f32_of(0xFFC00000)) == 0xFE00);
  CHECK(bits_of_f<H>(f32_of(0x7FA00000)) == 0x7F00);  // payload 0x100 kept, quiet bit set
  CHECK(bits_of_f<H>(f32_of(0x7F800001)) == 0x7E00);
#ifdef __FLT16_MAX__
  // The compiler's own float -> _Float16 conversion agrees on every float of a sweep.
  int mismatches = 0;
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 997) {
    const float f = f32_of(static_cast<uint32_t>(u));
    if (std::isnan(f)) continue;
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t ref;
    std::memcpy(&ref, &h, 2);
    if (float16(f).bits != ref) ++mismatches;
  }
  CHECK(mismatches == 0);
#endif
}

TEST_CASE("16-bit floats from integers round once") {
  CHECK(bfloat16(int64_t(0)).bits == 0x0000);
  CHECK(bfloat16(int64_t(1)).bits == 0x3F80);
  CHECK(bfloat16(int64_t(-3)).bits == 0xC040);
  CHECK(bfloat16(int64_t(257)).bits == 0x4380);  // 257 ties between 256 and 258: even 256
  CHECK(bfloat16(int64_t(259)).bits == 0x4382);  // 259 ties: even 260
  CHECK(bfloat16(std::numeric_limits<int64_t>::min()).bits == 0xDF00);  // -2^63
  // 2^62 + 2^54 + 1 is just above the tie between 2^62 and 2^62 + 2^55: up. Through double
  // the + 1 would be lost and the tie would go down to 2^62.
  CHECK(bfloat16((int64_t(1) << 62) + (int64_t(1) << 54) + 1).bits == 0x5E81);
  CHECK(bfloat16(std::numeric_limits<uint64_t>::max()).bits == 0x5F80);  // 2^64 - 1 rounds to 2^64
  CHECK(float16(int64_t(1)).bits == 0x3C00);
  CHECK(float16(int64_t(-2)).bits == 0xC000);
  CHECK(float16(int64_t(65504)).bits == 0x7BFF);
  CHECK(float16(int64_t(65519)).bits == 0x7BFF);
  CHECK(float16(int64_t(65520)).bits == 0x7C00);
  CHECK(float16(std::numeric_limits<int64_t>::min()).bits == 0xFC00);
  CHECK(float16(2049).bits == 0x6800);
  CHECK(float16(true).bits == 0x3C00);
  // Every int64 the reference can hold exactly (|v| <= 2^53) agrees with it.
  std::mt19937_64 gen(5);
  int mismatches = 0;
  for (int i = 0; i < 200000; ++i) {
    const int bits = 1 + static_cast<int>(gen() % 53);
    const int64_t v = static_cast<int64_t>(gen() >> (64 - bits)) * (gen() % 2 ? 1 : -1);
    if (bfloat16(v).bits != bf16_ref().round(static_cast<double>(v))) ++mismatches;
    if (float16(v).bits != f16_ref().round(static_cast<double>(v))) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("16-bit floats round random floats and doubles as the reference does") {
  std::mt19937_64 gen(7);
  const ReferenceFormat& bf = bf16_ref();
  const ReferenceFormat& hf = f16_ref();
  int mismatches = 0, nan_mismatches = 0;
  auto check_double = [&](double x) {
    mismatches += bfloat16(x).bits != bf.round(x);
    mismatches += float16(x).bits != hf.round(x);
  };
  for (int i = 0; i < 1000000; ++i) {
    // Every float bit pattern is equally likely: all exponents, subnormals, inf and NaN.
    const float f = f32_of(static_cast<uint32_t>(gen()));
    if (std::isnan(f)) {
      const uint16_t sign = static_cast<uint16_t>(f32_bits(f) >> 31);
      nan_mismatches += !is_nan_bits(bfloat16(f).bits, 8, 7) || (bfloat16(f).bits >> 15) != sign;
      nan_mismatches += !is_nan_bits(float16(f).bits, 5, 10) || (float16(f).bits >> 15) != sign;
    } else {
      mismatches += bfloat16(f).bits != bf.round(f);
      mismatches += float16(f).bits != hf.round(f);
    }
    // Doubles across and beyond both ranges, with bits below float's precision (where a
    // rounding through float would round twice).
    const uint64_t r = gen();
    const double d = std::ldexp(1.0 + static_cast<double>(r >> 12) * 0x1p-52, static_cast<int>(r % 300) - 150);
    check_double(r & 0x800 ? -d : d);
    // Exact ties: an odd integer of M + 2 bits times a power of two lies halfway between two
    // neighbours of a format with M fraction bits (in its normal range).
    check_double(std::ldexp(static_cast<double>(0x100 | ((r >> 20) & 0xFF) | 1), static_cast<int>(r % 300) - 158));
    check_double(std::ldexp(static_cast<double>(0x800 | ((r >> 20) & 0x7FF) | 1), static_cast<int>(r % 60) - 40));
  }
  CHECK(mismatches == 0);
  CHECK(nan_mismatches == 0);
}

TEST_CASE("bfloat16 from float: the bit trick equals the general rounding on a sweep of every exponent") {
  // bfloat16(float) takes round_float_to_bf16; the general path (round_binary, still used for
  // doubles) is the specification. 2^24 patterns: every kept half (sign, exponent, 7 mantissa
  // bits: subnormals, the largest finite values, infinities, NaN payloads) against every high
  // byte of the dropped half, the low byte varying with i; then the exact ties of both parities
  // and the carries into infinity by name (the full 2^32 agreed once, not repeated here).
  int64_t mismatches = 0;
  for (uint32_t i = 0; i < (1u << 24); ++i) {
    const uint32_t u = (i << 8) | ((i * 2654435761u) >> 24);  // the low byte varies with i too
    mismatches += half_detail::round_float_to_bf16(u) != half_detail::round_binary<8, 7, 8, 23>(u);
  }
  for (const uint32_t u : {0x7f7fffffu, 0x7f7f8000u, 0x7f7f7fffu, 0x00008000u, 0x00018000u, 0x807fffffu,
                           0x7f800001u, 0xffc00000u, 0x7fbfffffu})
    mismatches += half_detail::round_float_to_bf16(u) != half_detail::round_binary<8, 7, 8, 23>(u);
  CHECK(mismatches == 0);
  CHECK(bfloat16(f32_of(0x7f7fffffu)).bits == 0x7f80);  // FLT_MAX rounds to infinity
  CHECK(bfloat16(f32_of(0x3f808000u)).bits == 0x3f80);  // a tie to the even neighbour below
  CHECK(bfloat16(f32_of(0x3f818000u)).bits == 0x3f82);  // a tie to the even neighbour above
  CHECK(bfloat16(f32_of(0x7f800123u)).bits == 0x7fc0);  // a signalling NaN's payload, quieted
}

TEST_CASE("16-bit float round trips: pattern -> float -> pattern is the identity") {
  int mismatches = 0;
  for (uint32_t p = 0; p < 0x10000; ++p) {
    const uint16_t b = static_cast<uint16_t>(p);
    const float fb = bfloat16::from_bits(b), fh = float16::from_bits(b);
    // A NaN comes back as a NaN of the same sign with the quiet bit set.
    const uint16_t want_b = is_nan_bits(b, 8, 7) ? static_cast<uint16_t>(b | 0x0040) : b;
    const uint16_t want_h = is_nan_bits(b, 5, 10) ? static_cast<uint16_t>(b | 0x0200) : b;
    mismatches += bfloat16(fb).bits != want_b;
    mismatches += float16(fh).bits != want_h;
    // Between the two 16-bit types, through float.
    mismatches += float16(bfloat16::from_bits(b)).bits != float16(fb).bits;
    mismatches += bfloat16(float16::from_bits(b)).bits != bfloat16(fh).bits;
  }
  CHECK(mismatches == 0);
  // float32 -> bfloat16 -> float32 keeps 8 significant bits, rounded: error <= 2^-8 relative.
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 100.0f);
  double worst = 0.0;
  for (int i = 0; i < 100000; ++i) {
    const float x = normal(gen);
    worst = std::max(worst, std::fabs(static_cast<double>(bfloat16(x)) - x) / std::fabs(x));
  }
  CHECK(worst <= std::ldexp(1.0, -8));  // half a unit in the 8th significant bit
  CHECK(worst > std::ldexp(1.0, -9));   // the rounding is real
}

// ---------------------------------------------------------------- tensors

TEST_CASE("dtype table: sizes, names, floating, the dispatch sets") {
  CHECK(dtype_size(DType::BF16) == 2);
  CHECK(dtype_size(DType::F16) == 2);
  CHECK(dtype_size(DType::F32) == 4);
  CHECK(dtype_size(DType::F64) == 8);
  CHECK(dtype_size(DType::I64) == 8);
  CHECK(std::string(dtype_name(DType::BF16)) == "bfloat16");
  CHECK(std::string(dtype_name(DType::F16)) == "float16");
  CHECK(is_floating(DType::BF16));
  CHECK(is_floating(DType::F16));
  CHECK_FALSE(is_floating(DType::I64));
  CHECK(Tensor::empty({3, 5}, DType::BF16).storage()->nbytes() == 30);

  auto storage_size = [](DType dt) { return SIMBA_DISPATCH_COMPUTE(dt, "t", [&] { return sizeof(scalar_t); }); };
  CHECK(storage_size(DType::BF16) == 2);
  CHECK(storage_size(DType::F64) == 8);
  CHECK(contains(error_of([&] { storage_size(DType::I64); }),
                 "t: expected float32, float64 or bfloat16 (convert float16 with Tensor::to), got int64"));
  CHECK(contains(error_of([&] { storage_size(DType::F16); }), "got float16"));
  CHECK(std::is_same_v<acc_t<bfloat16>, float>);
  CHECK(std::is_same_v<acc_t<double>, double>);
  // The compute ops refuse float16 by name (tests/test_bf16_ops.cpp covers bfloat16 compute).
  const Tensor h = Tensor::ones({4}, DType::F16);
  const std::string e = error_of([&] { unary(UnaryOp::Exp, h); });
  INFO(e);
  CHECK(contains(e, "exp: expected float32, float64 or bfloat16 (convert float16 with Tensor::to), got float16"));
}

TEST_CASE("Tensor::to converts between all five dtypes, exactly where the value fits") {
  const std::vector<double> values = {0.0, 1.0, -2.0, 3.0, -7.0, 12.0, 100.0, -256.0};  // exact in every dtype
  const DType all[] = {DType::F32, DType::F64, DType::I64, DType::BF16, DType::F16};
  for (const DType from : all) {
    const Tensor src = Tensor::from_vector({2, 4}, values, from);
    for (const DType to : all) {
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      const Tensor out = src.to(to);
      CHECK(out.dtype() == to);
      CHECK(out.to_vector() == values);
      // A permuted source and a strided destination view.
      Tensor wide = Tensor::full({4, 4}, -1.0, to);
      wide.narrow(1, 1, 2).copy_(src.transpose(0, 1));
      CHECK(wide.at({3, 2}) == values[7]);
      CHECK(wide.at({0, 1}) == values[0]);
      CHECK(wide.at({1, 1}) == values[1]);
      CHECK(wide.at({2, 3}) == -1.0);  // outside the view: untouched
    }
  }
}

TEST_CASE("Tensor conversions to 16-bit floats round once, as the scalar conversion does") {
  std::mt19937_64 gen(11);
  std::vector<double> d(4099);
  for (double& x : d) x = std::ldexp(static_cast<double>(gen() >> 11), -static_cast<int>(gen() % 80));
  d[0] = 65520.0;
  d[1] = std::nan("");
  d[2] = -HUGE_VAL;
  d[3] = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  const Tensor t64 = Tensor::from_vector({4099}, d, DType::F64);
  const Tensor t32 = t64.to(DType::F32);
  const float* p32 = t32.data<float>();
  std::vector<int64_t> ints(4099);
  for (size_t i = 0; i < ints.size(); ++i) ints[i] = static_cast<int64_t>(gen()) >> (gen() % 64);
  const Tensor ti = Tensor::from_ints({4099}, ints);
  int mismatches = 0;
  const Tensor b64 = t64.to(DType::BF16), h64 = t64.to(DType::F16), b32 = t32.to(DType::BF16),
               h32 = t32.to(DType::F16), bi = ti.to(DType::BF16), hi = ti.to(DType::F16);
  for (size_t i = 0; i < d.size(); ++i) {
    mismatches += b64.data<bfloat16>()[i].bits != bfloat16(d[i]).bits;
    mismatches += h64.data<float16>()[i].bits != float16(d[i]).bits;
    mismatches += b32.data<bfloat16>()[i].bits != bfloat16(p32[i]).bits;
    mismatches += h32.data<float16>()[i].bits != float16(p32[i]).bits;
    mismatches += bi.data<bfloat16>()[i].bits != bfloat16(ints[i]).bits;
    mismatches += hi.data<float16>()[i].bits != float16(ints[i]).bits;
  }
  CHECK(mismatches == 0);
  CHECK(h64.data<float16>()[0].bits == 0x7C00);
  CHECK(h64.data<float16>()[3].bits == 0x3C01);
  CHECK(h32.data<float16>()[3].bits == 0x3C00);  // the float32 copy already rounded to the tie
  // float32 -> bfloat16 -> float32 equals the scalar round trip.
  const std::vector<double> back = b32.to_vector();
  for (size_t i = 0; i < d.size(); ++i)
    if (!std::isnan(back[i])) mismatches += back[i] != static_cast<float>(bfloat16(p32[i]));
  CHECK(mismatches == 0);
}

TEST_CASE("fill_, factories and element access on 16-bit tensors") {
  Tensor b = Tensor::full({3, 2}, 1.0 / 3.0, DType::BF16);
  for (int64_t i = 0; i < b.numel(); ++i) CHECK(b.data<bfloat16>()[i].bits == bfloat16(1.0 / 3.0).bits);
  b.select(1, 1).fill_(65520.0);  // bfloat16's spacing at 2^15 is 256: rounds to 65536
  CHECK(b.at({2, 1}) == 65536.0);
  CHECK(b.at({2, 0}) == static_cast<float>(bfloat16(1.0 / 3.0)));
  Tensor h = Tensor::zeros({3, 2}, DType::F16);
  h.select(1, 1).fill_(65520.0);  // past float16's largest finite value: inf
  CHECK(h.at({1, 1}) == HUGE_VAL);
  CHECK(h.at({1, 0}) == 0.0);
  h.select(0, 0).fill_(-0.0);
  CHECK(h.data<float16>()[1].bits == 0x8000);
  CHECK(Tensor::arange(5, DType::F16).to_vector() == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(Tensor::scalar(-2.5, DType::BF16).item() == -2.5);
  CHECK(Tensor::from_vector({2}, {0.1, 70000.0}, DType::F16).to_vector() ==
        std::vector<double>{static_cast<float>(float16(0.1)), HUGE_VAL});
  CHECK(static_cast<float>(float16(0.1)) == 0.0999755859375f);  // 0x2E66
}
