// ssm/mixer_step.cu: mixer_step_cuda (ssm/mixer_step.h): the three CUDA ops one after another on
// the current stream, with u and x_dbl in scratch memory.
#include "ssm/mixer_step.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <utility>

#include "nn/causal_conv1d.h"
#include "ssm/selective_step.h"
#include "tensor/cuda_check.cuh"
#include "tensor/cuda_device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/matmul.h"
#include "tensor/storage.h"

namespace simba {

template <class T>
void mixer_step_cuda(T* y, T* conv_state, T* h, const T* x, int64_t ld_x, const T* z, int64_t ld_z, const T* conv_w,
                     const T* conv_b, const T* W_x, const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip,
                     int64_t B, int64_t Di, int64_t K, int64_t R, int64_t N) {
  const char* op = "mixer_step_cuda";
  check_mixer_step(op, y, conv_state, h, x, ld_x, z, ld_z, conv_w, W_x, W_dt, A_log, B, Di, K, R, N);
  for (const auto& [p, name] :
       {std::pair<const void*, const char*>{y, "y"}, {conv_state, "conv_state"}, {h, "h"}, {x, "x"}, {z, "z"},
        {conv_w, "conv_w"}, {conv_b, "conv_b"}, {W_x, "W_x"}, {W_dt, "W_dt"}, {b_dt, "b_dt"}, {A_log, "A_log"},
        {Dskip, "Dskip"}})
    cuda_check_device_pointer(p, op, name);
  if (B == 0) return;
  SIMBA_CHECK(Di <= INT_MAX / 2 && K <= INT_MAX && R + 2 * N <= INT_MAX,
              op << ": sizes Di=" << Di << ", K=" << K << ", R + 2N=" << R + 2 * N << " exceed 32-bit indexing");
  const int64_t E = R + 2 * N;
  const Device dev{DeviceType::CUDA, cuda_current_device()};
  Storage u(size_t(B * Di) * sizeof(T), dev), x_dbl(size_t(std::max<int64_t>(1, B * E)) * sizeof(T), dev);
  T* const up = static_cast<T*>(u.data());
  T* const xp = static_cast<T*>(x_dbl.data());
  causal_conv1d_step_cuda(up, Di, conv_state, x, ld_x, conv_w, conv_b, B, Di, K, /*silu=*/true);
  if (E > 0) {
    GemmPlan p;  // x_dbl = u · W_xᵀ, the plan tensor/matmul.cpp makes for Linear on (B, Di) rows
    p.M = B, p.N = E, p.K = Di, p.a = BlasMatrix{false, Di}, p.b = BlasMatrix{true, Di}, p.ldc = E;
    batched_gemm_cuda<T>(xp, up, W_x, p, acc_t<T>(1), acc_t<T>(0));
  }
  selective_step_cuda(y, h, xp, E, up, z, ld_z, W_dt, b_dt, A_log, Dskip, B, Di, R, N);
}

#define SIMBA_INSTANTIATE_MIXER_STEP_CUDA(T)                                                                       \
  template void mixer_step_cuda<T>(T*, T*, T*, const T*, int64_t, const T*, int64_t, const T*, const T*, const T*, \
                                   const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,      \
                                   int64_t);
SIMBA_INSTANTIATE_MIXER_STEP_CUDA(float)
SIMBA_INSTANTIATE_MIXER_STEP_CUDA(double)
SIMBA_INSTANTIATE_MIXER_STEP_CUDA(bfloat16)
#undef SIMBA_INSTANTIATE_MIXER_STEP_CUDA

}  // namespace simba
