// tensor/dtype.h: element types.
//
// F32 is what models train in. F64 exists so that finite-difference gradient
// checks are exact to ~1e-10 and can be held to tight tolerances. I64 holds
// token ids and gather/scatter indices (the Simba kept-token lists); it takes
// part in indexing and copying only, never in arithmetic with autograd.
// BF16 and F16 are storage (tensor/half_types.h): checkpoints keep them as
// stored, and a kernel that takes them loads, computes in float32 and rounds
// once on store.
#pragma once

#include <cstdint>
#include <cstddef>
#include <type_traits>

#include "tensor/error.h"
#include "tensor/half_types.h"

namespace simba {

enum class DType : uint8_t { F32, F64, I64, BF16, F16 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::BF16:
    case DType::F16: return 2;
    case DType::F32: return 4;
    case DType::F64:
    case DType::I64: return 8;
  }
  SIMBA_FAIL("dtype_size: unknown dtype " << static_cast<int>(t));
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::I64: return "int64";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
  }
  return "?";
}

inline bool is_floating(DType t) {
  return t == DType::F32 || t == DType::F64 || t == DType::BF16 || t == DType::F16;
}

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::BF16; };
template <> struct dtype_of<float16> { static constexpr DType value = DType::F16; };

// The type a kernel computes and accumulates in for storage type T: double for double, float
// for float and the 16-bit types (tensor/half_types.h: loads widen exactly, stores round once).
template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// The dtype of acc_t: what an op stores a statistic or a loss in when it keeps it in the
// compute type (RMSNorm's rstd, cross-entropy's losses, Simba's scores).
inline DType acc_dtype(DType t) { return t == DType::BF16 || t == DType::F16 ? DType::F32 : t; }

}  // namespace simba

// Run `body` with `scalar_t` bound to the C++ type of a dtype. Three sets:
//   SIMBA_DISPATCH_FLOAT    float, double: the ops whose state is kept in full precision
//                           (optimiser steps, gradient norms); a 16-bit tensor gets a clear
//                           error naming the op.
//   SIMBA_DISPATCH_COMPUTE  float, double, bfloat16: every compute kernel. It loads the
//                           storage type, computes and accumulates in acc_t<scalar_t> (float
//                           for float and bfloat16, double for double) and rounds once on
//                           store. float16 is a checkpoint storage type only (convert it with
//                           Tensor::to): leaving it out halves the kernels' instantiations.
//   SIMBA_DISPATCH_ALL      every dtype, int64 and float16 included: copies, fills, gathers,
//                           concatenation.
//   SIMBA_DISPATCH_COMPUTE(x.dtype(), "exp", [&] { kernel<scalar_t>(...); });
#define SIMBA_DISPATCH_CASE_(DTYPE, TYPE, ...) \
  case ::simba::DType::DTYPE: { using scalar_t = TYPE; return __VA_ARGS__(); }

#define SIMBA_DISPATCH_FLOAT(DT, OPNAME, ...)                                              \
  [&] {                                                                                   \
    switch (DT) {                                                                         \
      SIMBA_DISPATCH_CASE_(F32, float, __VA_ARGS__)                                       \
      SIMBA_DISPATCH_CASE_(F64, double, __VA_ARGS__)                                      \
      default:                                                                            \
        SIMBA_FAIL(OPNAME << ": expected a floating dtype (float32 or float64), got "      \
                          << ::simba::dtype_name(DT));                                    \
    }                                                                                     \
  }()

#define SIMBA_DISPATCH_COMPUTE(DT, OPNAME, ...)                                            \
  [&] {                                                                                   \
    switch (DT) {                                                                         \
      SIMBA_DISPATCH_CASE_(F32, float, __VA_ARGS__)                                       \
      SIMBA_DISPATCH_CASE_(F64, double, __VA_ARGS__)                                      \
      SIMBA_DISPATCH_CASE_(BF16, ::simba::bfloat16, __VA_ARGS__)                          \
      default:                                                                            \
        SIMBA_FAIL(OPNAME << ": expected float32, float64 or bfloat16 (convert float16 "   \
                             "with Tensor::to), got " << ::simba::dtype_name(DT));        \
    }                                                                                     \
  }()

#define SIMBA_DISPATCH_ALL(DT, OPNAME, ...)                                                \
  [&] {                                                                                   \
    switch (DT) {                                                                         \
      SIMBA_DISPATCH_CASE_(F32, float, __VA_ARGS__)                                       \
      SIMBA_DISPATCH_CASE_(F64, double, __VA_ARGS__)                                      \
      SIMBA_DISPATCH_CASE_(I64, int64_t, __VA_ARGS__)                                     \
      SIMBA_DISPATCH_CASE_(BF16, ::simba::bfloat16, __VA_ARGS__)                          \
      SIMBA_DISPATCH_CASE_(F16, ::simba::float16, __VA_ARGS__)                            \
    }                                                                                     \
    SIMBA_FAIL(OPNAME << ": unknown dtype");                                              \
  }()
