// ssm/selective_step_check.h: the size and operand checks every variant of
// ssm/selective_step.h makes first (host side).
#pragma once

#include <cstdint>

#include "tensor/error.h"

namespace simba {

template <class T>
inline void check_selective_step(const char* op, const T* y, const T* h, const T* x_dbl, int64_t ld_dbl, const T* u,
                                 const T* z, int64_t ld_z, const T* W_dt, const T* A_log, int64_t B, int64_t Di,
                                 int64_t R, int64_t N) {
  SIMBA_CHECK(B >= 0 && Di >= 0 && R >= 0 && N >= 0, op << ": negative size (B=" << B << ", Di=" << Di << ", R=" << R
                                                         << ", N=" << N << ")");
  SIMBA_CHECK(ld_dbl >= R + 2 * N, op << ": x_dbl row stride " << ld_dbl << " < R + 2N = " << R + 2 * N);
  SIMBA_CHECK(ld_z >= Di, op << ": z row stride " << ld_z << " < Di = " << Di);
  SIMBA_CHECK(B * Di == 0 || (y && h && x_dbl && u && z && (R == 0 || W_dt) && (N == 0 || A_log)),
              op << ": a required operand is null");
}

}  // namespace simba
