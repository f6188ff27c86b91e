// ssm/selective_step.cpp: selective_step_ref and selective_step_cpu (ssm/selective_step.h).
#include "ssm/selective_step.h"

#include "ssm/selective_step_check.h"
#include "tensor/dtype.h"
#include "tensor/elementwise_math.h"
#include "tensor/error.h"

namespace simba {
namespace {

// (1)-(3) of ssm/selective_step.h for batch row b, channel d: updates h[b, d, :], writes y[b, d].
template <class T>
void selective_step_channel(T* y, T* h, const T* x_dbl, int64_t ld_dbl, const T* u, const T* z, int64_t ld_z,
                            const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip, int64_t Di, int64_t R,
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

}  // namespace

template <class T>
void selective_step_ref(T* y, T* h, const T* x_dbl, int64_t ld_dbl, const T* u, const T* z, int64_t ld_z,
                        const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip, int64_t B, int64_t Di,
                        int64_t R, int64_t N) {
  check_selective_step("selective_step_ref", y, h, x_dbl, ld_dbl, u, z, ld_z, W_dt, A_log, B, Di, R, N);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < Di; ++d)
      selective_step_channel(y, h, x_dbl, ld_dbl, u, z, ld_z, W_dt, b_dt, A_log, Dskip, Di, R, N, b, d);
}

template <class T>
void selective_step_cpu(T* y, T* h, const T* x_dbl, int64_t ld_dbl, const T* u, const T* z, int64_t ld_z,
                        const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip, int64_t B, int64_t Di,
                        int64_t R, int64_t N) {
  check_selective_step("selective_step_cpu", y, h, x_dbl, ld_dbl, u, z, ld_z, W_dt, A_log, B, Di, R, N);
  // Each (b, d) writes only its own y and h entries: any split over threads gives the same bits.
#pragma omp parallel for schedule(static) if (B * Di * (R + 3 * N) > 32768)
  for (int64_t i = 0; i < B * Di; ++i)
    selective_step_channel(y, h, x_dbl, ld_dbl, u, z, ld_z, W_dt, b_dt, A_log, Dskip, Di, R, N, i / Di, i % Di);
}

#define SIMBA_INSTANTIATE_STEP(T)                                                                                   \
  template void selective_step_ref<T>(T*, T*, const T*, int64_t, const T*, const T*, int64_t, const T*, const T*, \
                                      const T*, const T*, int64_t, int64_t, int64_t, int64_t);                     \
  template void selective_step_cpu<T>(T*, T*, const T*, int64_t, const T*, const T*, int64_t, const T*, const T*, \
                                      const T*, const T*, int64_t, int64_t, int64_t, int64_t);
SIMBA_INSTANTIATE_STEP(float)
SIMBA_INSTANTIATE_STEP(double)
SIMBA_INSTANTIATE_STEP(bfloat16)
#undef SIMBA_INSTANTIATE_STEP

}  // namespace simba
