// ssm/selective_step.cpp: selective_step_ref and selective_step_cpu (ssm/selective_step.h).
#include "ssm/selective_step.h"

#include "ssm/selective_step_math.h"
#include "tensor/error.h"

namespace simba {

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
