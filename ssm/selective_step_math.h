// ssm/selective_step_math.h: the formulas of ssm/selective_step.h for one (b, d), shared by the
// CPU variants (ssm/selective_step.cpp) and the CUDA kernel (ssm/selective_step.cu), so that
// both devices evaluate the same expressions in the same order (the elementary functions are
// each device's own, tensor/elementwise_math.h); and the checks all variants make.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"
#include "tensor/elementwise_math.h"
#include "tensor/error.h"
#include "tensor/host_device.h"

namespace simba {

// (1)-(3) of ssm/selective_step.h for batch row b, channel d: updates h[b, d, :], writes y[b, d].
template <class T>
SIMBA_HOST_DEVICE inline void selective_step_channel(T* y, T* h, const T* x_dbl, int64_t ld_dbl, const T* u,
                                                     const T* z, int64_t ld_z, const T* W_dt, const T* b_dt,
                                                     const T* A_log, const T* Dskip, int64_t Di, int64_t R,
                                                     int64_t N, int64_t b, int64_t d) {
  using pointwise::exp_of;
  using pointwise::sigmoid_of;
  using pointwise::softplus_of;
  using A = acc_t<T>;
  const T* x = x_dbl + b * ld_dbl;
  A s = b_dt ? A(b_dt[d]) : A(0);
  for (int64_t r = 0; r < R; ++r) s += A(W_dt[d * R + r]) * A(x[r]);
  const A delta = softplus_of(s);                                                       // (1)
  const A ud = A(u[b * Di + d]), dx = delta * ud;
  T* hd = h + (b * Di + d) * N;
  A acc = 0;
  for (int64_t n = 0; n < N; ++n) {
    const A hn = exp_of(-delta * exp_of(A(A_log[d * N + n]))) * A(hd[n]) + dx * A(x[R + n]);  // (2)
    hd[n] = T(hn);
    acc += A(x[R + N + n]) * hn;
  }
  if (Dskip) acc += A(Dskip[d]) * ud;
  const A zv = A(z[b * ld_z + d]);
  y[b * Di + d] = T(acc * zv * sigmoid_of(zv));                                         // (3)
}

// The size and operand checks every variant makes first (host side).
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
