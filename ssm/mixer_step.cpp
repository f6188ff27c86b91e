// ssm/mixer_step.cpp: mixer_step_ref, mixer_step_cpu and the checks (ssm/mixer_step.h).
#include "ssm/mixer_step.h"

#include <vector>

#include "nn/causal_conv1d.h"
#include "ssm/selective_step.h"
#include "tensor/dtype.h"
#include "tensor/elementwise_math.h"
#include "tensor/error.h"
#include "tensor/matmul.h"

namespace simba {

template <class T>
void check_mixer_step(const char* op, const T* y, const T* conv_state, const T* h, const T* x, int64_t ld_x,
                      const T* z, int64_t ld_z, const T* conv_w, const T* W_x, const T* W_dt, const T* A_log,
                      int64_t B, int64_t Di, int64_t K, int64_t R, int64_t N) {
  SIMBA_CHECK(B >= 0 && Di >= 1 && K >= 1 && R >= 0 && N >= 0,
              op << ": sizes must be B >= 0, Di >= 1, K >= 1, R >= 0, N >= 0, got B=" << B << ", Di=" << Di
                 << ", K=" << K << ", R=" << R << ", N=" << N);
  SIMBA_CHECK(ld_x >= Di && ld_z >= Di, op << ": row strides x " << ld_x << ", z " << ld_z << " < Di = " << Di);
  SIMBA_CHECK(B == 0 || (y && conv_state && h && x && z && conv_w && (R + 2 * N == 0 || W_x) && (R == 0 || W_dt) &&
                         (N == 0 || A_log)),
              op << ": a required operand is null");
}

template <class T>
void mixer_step_ref(T* y, T* conv_state, T* h, const T* x, int64_t ld_x, const T* z, int64_t ld_z, const T* conv_w,
                    const T* conv_b, const T* W_x, const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip,
                    int64_t B, int64_t Di, int64_t K, int64_t R, int64_t N) {
  check_mixer_step("mixer_step_ref", y, conv_state, h, x, ld_x, z, ld_z, conv_w, W_x, W_dt, A_log, B, Di, K, R, N);
  using A = acc_t<T>;
  const int64_t E = R + 2 * N;
  std::vector<T> u(B * Di), x_dbl(B * E);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < Di; ++c) {  // the convolution step: shift, append, bias then taps in order
      T* s = conv_state + (b * Di + c) * K;
      for (int64_t k = 0; k + 1 < K; ++k) s[k] = s[k + 1];
      s[K - 1] = x[b * ld_x + c];
      A acc = conv_b ? A(conv_b[c]) : A(0);
      for (int64_t k = 0; k < K; ++k) acc += A(conv_w[c * K + k]) * A(s[k]);
      u[b * Di + c] = T(pointwise::apply_unary<UnaryOp::Silu>(acc));
    }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t e = 0; e < E; ++e) {  // x_proj
      A acc = 0;
      for (int64_t c = 0; c < Di; ++c) acc += A(W_x[e * Di + c]) * A(u[b * Di + c]);
      x_dbl[b * E + e] = T(acc);
    }
  selective_step_ref(y, h, x_dbl.data(), E, u.data(), z, ld_z, W_dt, b_dt, A_log, Dskip, B, Di, R, N);
}

template <class T>
void mixer_step_cpu(T* y, T* conv_state, T* h, const T* x, int64_t ld_x, const T* z, int64_t ld_z, const T* conv_w,
                    const T* conv_b, const T* W_x, const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip,
                    int64_t B, int64_t Di, int64_t K, int64_t R, int64_t N) {
  check_mixer_step("mixer_step_cpu", y, conv_state, h, x, ld_x, z, ld_z, conv_w, W_x, W_dt, A_log, B, Di, K, R, N);
  if (B == 0) return;
  const int64_t E = R + 2 * N;
  std::vector<T> u(B * Di), x_dbl(B * E);
  causal_conv1d_step_cpu(u.data(), Di, conv_state, x, ld_x, conv_w, conv_b, B, Di, K, /*silu=*/true);
  if (E > 0) {
    // x_dbl = u · W_xᵀ, the plan tensor/matmul.cpp makes for Linear on (B, Di) rows.
    GemmPlan p;
    p.M = B, p.N = E, p.K = Di, p.a = BlasMatrix{false, Di}, p.b = BlasMatrix{true, Di}, p.ldc = E;
    batched_gemm_cpu<T>(x_dbl.data(), u.data(), W_x, p, acc_t<T>(1), acc_t<T>(0));
  }
  selective_step_cpu(y, h, x_dbl.data(), E, u.data(), z, ld_z, W_dt, b_dt, A_log, Dskip, B, Di, R, N);
}

#define SIMBA_INSTANTIATE_MIXER_STEP(T, V)                                                                         \
  template void mixer_step_##V<T>(T*, T*, T*, const T*, int64_t, const T*, int64_t, const T*, const T*, const T*, \
                                  const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,      \
                                  int64_t);
#define SIMBA_INSTANTIATE_MIXER_STEP_ALL(T)                                                                         \
  SIMBA_INSTANTIATE_MIXER_STEP(T, ref)                                                                              \
  SIMBA_INSTANTIATE_MIXER_STEP(T, cpu)                                                                              \
  template void check_mixer_step<T>(const char*, const T*, const T*, const T*, const T*, int64_t, const T*, int64_t, \
                                    const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,     \
                                    int64_t);
SIMBA_INSTANTIATE_MIXER_STEP_ALL(float)
SIMBA_INSTANTIATE_MIXER_STEP_ALL(double)
SIMBA_INSTANTIATE_MIXER_STEP_ALL(bfloat16)
#undef SIMBA_INSTANTIATE_MIXER_STEP_ALL
#undef SIMBA_INSTANTIATE_MIXER_STEP

}  // namespace simba
