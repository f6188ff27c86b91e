// ssm/mixer_step.h: the mixer's recurrent step between in_proj and out_proj, for generation:
// the convolution step with SiLU, x_proj, and the selective step, CPU and CUDA.
//
// Per batch row b, from in_proj's halves x[b, :] and z[b, :] (ssm/mamba_mixer.h):
//   u[b, :]     = SiLU(causal_conv1d_step(conv_state[b], x[b, :]))      nn/causal_conv1d.h
//   x_dbl[b, :] = u[b, :] · W_xᵀ                                        x_proj, no bias
//   y[b, :]     = selective_step(x_dbl[b, :], u[b, :], z[b, :], h[b])    ssm/selective_step.h
// with conv_state and h updated in place and u and x_dbl rounded to T as the separate ops round
// them. Decoding runs this once a token and layer. On the GPU these are the three CUDA ops:
// x_proj's sum over the Di channels needs every channel of a row, and a fused kernel that
// added the partial sums of a row's blocks through a thread block cluster decoded slower than
// the three ops once the conv step and the selective step read their rows in 16-byte packs
// (bench/RESULTS.md, "bfloat16 decode on the three ops").
//
// Dimension letters (ssm/mamba_mixer.h): B batch, Di inner channels, K conv width, R dt rank,
// N state size. Shapes and layout: x (B, Di) rows ld_x apart and z (B, Di) rows ld_z apart (the
// two halves of in_proj's (B, 2·Di) output); conv_state (B, Di, K) and h (B, Di, N) contiguous,
// read and updated in place; conv_w (Di, 1, K), conv_b (Di) or null; W_x (R + 2N, Di); W_dt
// (Di, R), b_dt (Di) or null, A_log (Di, N), Dskip (Di) or null, all contiguous; y (B, Di)
// contiguous, written.
//
//   *_ref:  plain loops: the convolution step, the product, selective_step_ref.
//   *_cpu:  causal_conv1d_step_cpu, batched_gemm_cpu and selective_step_cpu: the unfused
//           CPU ops' values bit for bit.
//   *_cuda: causal_conv1d_step_cuda, batched_gemm_cuda and selective_step_cuda: the CUDA
//           ops' values bit for bit.
// T = float, double or bfloat16; sums in acc_t<T>. For *_cuda every pointer is device memory
// on the current device, and the call returns once the work is queued.
#pragma once

#include <cstdint>

namespace simba {

template <class T>
void mixer_step_ref(T* y, T* conv_state, T* h, const T* x, int64_t ld_x, const T* z, int64_t ld_z, const T* conv_w,
                    const T* conv_b, const T* W_x, const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip,
                    int64_t B, int64_t Di, int64_t K, int64_t R, int64_t N);
template <class T>
void mixer_step_cpu(T* y, T* conv_state, T* h, const T* x, int64_t ld_x, const T* z, int64_t ld_z, const T* conv_w,
                    const T* conv_b, const T* W_x, const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip,
                    int64_t B, int64_t Di, int64_t K, int64_t R, int64_t N);
template <class T>
void mixer_step_cuda(T* y, T* conv_state, T* h, const T* x, int64_t ld_x, const T* z, int64_t ld_z, const T* conv_w,
                     const T* conv_b, const T* W_x, const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip,
                     int64_t B, int64_t Di, int64_t K, int64_t R, int64_t N);

// The checks every variant makes first (ssm/mixer_step.cpp): sizes, strides, required operands.
template <class T>
void check_mixer_step(const char* op, const T* y, const T* conv_state, const T* h, const T* x, int64_t ld_x,
                      const T* z, int64_t ld_z, const T* conv_w, const T* W_x, const T* W_dt, const T* A_log,
                      int64_t B, int64_t Di, int64_t K, int64_t R, int64_t N);

}  // namespace simba
