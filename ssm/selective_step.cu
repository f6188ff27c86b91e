// ssm/selective_step.cu: selective_step_cuda (ssm/selective_step.h).
//
// Launch: 1-D grid of ceil(B·Di / 128) blocks of 128 threads; thread i owns (b, d) = (i / Di,
// i % Di): it forms Δ from its row of W_dt and batch row b of x_dbl (read by all of the row's
// threads, so cached), then walks its channel's N states (h (B, Di, N): N consecutive entries
// a thread) and writes y[b, d]. A step has B·Di·(R + 3N) multiply-adds, too few to split a
// channel's states over lanes as the scan does; what matters is that it is one launch.
#include "ssm/selective_step.h"

#include <cuda_runtime.h>

#include "ssm/selective_step_math.h"
#include "tensor/cuda_check.cuh"
#include "tensor/error.h"

namespace simba {
namespace {

constexpr int kThreads = 128;

template <class T>
__global__ void __launch_bounds__(kThreads)
    step_kernel(T* y, T* h, const T* x_dbl, int64_t ld_dbl, const T* u, const T* z, int64_t ld_z, const T* W_dt,
                const T* b_dt, const T* A_log, const T* Dskip, int64_t B, int64_t Di, int64_t R, int64_t N) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= B * Di) return;
  selective_step_channel(y, h, x_dbl, ld_dbl, u, z, ld_z, W_dt, b_dt, A_log, Dskip, Di, R, N, i / Di, i % Di);
}

}  // namespace

template <class T>
void selective_step_cuda(T* y, T* h, const T* x_dbl, int64_t ld_dbl, const T* u, const T* z, int64_t ld_z,
                         const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip, int64_t B, int64_t Di,
                         int64_t R, int64_t N) {
  const char* op = "selective_step_cuda";
  check_selective_step(op, y, h, x_dbl, ld_dbl, u, z, ld_z, W_dt, A_log, B, Di, R, N);
  for (const auto& [p, name] : {std::pair<const void*, const char*>{y, "y"}, {h, "h"}, {x_dbl, "x_dbl"}, {u, "u"},
                                {z, "z"}, {W_dt, "W_dt"}, {b_dt, "b_dt"}, {A_log, "A_log"}, {Dskip, "Dskip"}})
    cuda_check_device_pointer(p, op, name);
  if (B * Di == 0) return;
  const int64_t blocks = (B * Di + kThreads - 1) / kThreads;
  SIMBA_CHECK(blocks <= INT32_MAX, op << ": B·Di=" << B * Di << " exceeds the grid limit");
  step_kernel<T><<<unsigned(blocks), kThreads, 0, cuda_stream(cuda_current_device())>>>(
      y, h, x_dbl, ld_dbl, u, z, ld_z, W_dt, b_dt, A_log, Dskip, B, Di, R, N);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

template void selective_step_cuda<float>(float*, float*, const float*, int64_t, const float*, const float*, int64_t,
                                         const float*, const float*, const float*, const float*, int64_t, int64_t,
                                         int64_t, int64_t);
template void selective_step_cuda<double>(double*, double*, const double*, int64_t, const double*, const double*,
                                          int64_t, const double*, const double*, const double*, const double*,
                                          int64_t, int64_t, int64_t, int64_t);
template void selective_step_cuda<bfloat16>(bfloat16*, bfloat16*, const bfloat16*, int64_t, const bfloat16*,
                                            const bfloat16*, int64_t, const bfloat16*, const bfloat16*,
                                            const bfloat16*, const bfloat16*, int64_t, int64_t, int64_t, int64_t);

}  // namespace simba
