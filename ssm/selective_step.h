// ssm/selective_step.h: one recurrent step of the mixer's state-space part, fused for
// generation, CPU and CUDA.
//
// From the x_proj output on, per batch row b and channel d (Mamba's step, with the time-step
// projection, its softplus and A = -exp(A_log) folded in):
//   Δ[d]   = softplus(b_dt[d] + Σ_r W_dt[d,r]·x_dbl[b,r])                    (1)
//   h[d,n] ← exp(-Δ[d]·exp(A_log[d,n]))·h[d,n] + Δ[d]·u[b,d]·x_dbl[b,R+n]     (2)
//   y[b,d] = (Σ_n x_dbl[b,R+N+n]·h[d,n] + Dskip[d]·u[b,d])·silu(z[b,d])     (3)
// which is selective_scan_forward (ssm/selective_scan.h) with L = 1 after dt_proj and softplus.
// Decoding runs it once a token for every layer; as separate kernels (a GEMV for dt_proj, its
// bias, softplus, exp and negation of A_log, the length-1 scan, a copy of the new state) each
// a few microseconds of launch and latency for almost no work, they cost more than the whole
// step's arithmetic; fused they are one launch (bench/RESULTS.md).
//
// Dimension letters (ssm/mamba_mixer.h): B batch, Di inner channels, R dt rank, N state size.
// Shapes and layout: x_dbl (B, R + 2N) rows ld_dbl apart (dt input, then B, then C); u (B, Di)
// contiguous; z (B, Di) rows ld_z apart (the gate half of in_proj's output); W_dt (Di, R)
// contiguous; b_dt (Di) or null; A_log (Di, N); Dskip (Di) or null; h (B, Di, N) contiguous,
// read and updated in place; y (B, Di) contiguous, written.
//
//   *_ref:  plain loops, the specification.
//   *_cpu:  the same arithmetic in the same order, OpenMP over (b, d): bit-identical to _ref.
//   *_cuda: 16 lanes a channel (4 once the channels fill the GPU), splitting (1)'s sum and
//           the states, shuffles to add (ssm/selective_step.cu); its sums run in a tree order,
//           not _ref's, and in float32 the exponentials of (2) and the gate's σ are the
//           special-function unit's (tensor/cuda_fast_math.cuh), as in the scan's kernels.
// T = float, double or bfloat16; computed in acc_t<T> (float for bfloat16), each output
// rounded once. For *_cuda every pointer is device memory on the current device, and the call
// returns once the work is queued.
#pragma once

#include <cstdint>

namespace simba {

template <class T>
void selective_step_ref(T* y, T* h, const T* x_dbl, int64_t ld_dbl, const T* u, const T* z, int64_t ld_z,
                        const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip, int64_t B, int64_t Di,
                        int64_t R, int64_t N);
template <class T>
void selective_step_cpu(T* y, T* h, const T* x_dbl, int64_t ld_dbl, const T* u, const T* z, int64_t ld_z,
                        const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip, int64_t B, int64_t Di,
                        int64_t R, int64_t N);
template <class T>
void selective_step_cuda(T* y, T* h, const T* x_dbl, int64_t ld_dbl, const T* u, const T* z, int64_t ld_z,
                         const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip, int64_t B, int64_t Di,
                         int64_t R, int64_t N);

}  // namespace simba
