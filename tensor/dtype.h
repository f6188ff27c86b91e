// tensor/dtype.h: element types.
//
// F32 is what models train in. F64 exists so that finite-difference gradient
// checks are exact to ~1e-10 and can be held to tight tolerances. I64 holds
// token ids and gather/scatter indices (the Simba kept-token lists); it takes
// part in indexing and copying only, never in arithmetic with autograd.
#pragma once

#include <cstdint>
#include <cstddef>

#include "tensor/error.h"

namespace simba {

enum class DType : uint8_t { F32, F64, I64 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 8; }

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::I64: return "int64";
  }
  return "?";
}

inline bool is_floating(DType t) { return t == DType::F32 || t == DType::F64; }

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };

}  // namespace simba

// Run `body` with `scalar_t` bound to the C++ type of a floating dtype.
//   SIMBA_DISPATCH_FLOAT(x.dtype(), "exp", [&] { kernel<scalar_t>(...); });
#define SIMBA_DISPATCH_FLOAT(DT, OPNAME, ...)                                              \
  [&] {                                                                                   \
    switch (DT) {                                                                         \
      case ::simba::DType::F32: { using scalar_t = float; return __VA_ARGS__(); }         \
      case ::simba::DType::F64: { using scalar_t = double; return __VA_ARGS__(); }        \
      default:                                                                            \
        SIMBA_FAIL(OPNAME << ": expected a floating dtype (float32 or float64), got "      \
                          << ::simba::dtype_name(DT));                                    \
    }                                                                                     \
  }()

// Same, including int64 (for copies, gathers, concatenation).
#define SIMBA_DISPATCH_ALL(DT, OPNAME, ...)                                                \
  [&] {                                                                                   \
    switch (DT) {                                                                         \
      case ::simba::DType::F32: { using scalar_t = float; return __VA_ARGS__(); }         \
      case ::simba::DType::F64: { using scalar_t = double; return __VA_ARGS__(); }        \
      case ::simba::DType::I64: { using scalar_t = int64_t; return __VA_ARGS__(); }       \
    }                                                                                     \
    SIMBA_FAIL(OPNAME << ": unknown dtype");                                              \
  }()
