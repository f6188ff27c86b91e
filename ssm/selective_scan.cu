// ssm/selective_scan.cu: the CUDA selective-scan kernels declared in ssm/selective_scan.h,
// forward (1)-(4) and backward (5)-(13) (the equations are in ssm/selective_scan.h and
// ssm/selective_scan.cpp).
//
// Design.
// - One thread per (batch b, channel d): it keeps its N states h[n] (and A[d,n], and in the
//   backward G[n] and the dA sums) in registers and walks the sequence. A block is kThreads
//   consecutive channels of one batch row, so every load and store of u, Δ, z, dout, out, du,
//   dΔ, dz is one coalesced row segment; a row is read once per pass.
// - The sequence is walked in chunks of TC steps. B_t and C_t, shared by all channels, are
//   staged per chunk in shared memory. The register arrays are sized by NMAX, a compile-time
//   bound on N (8, 16, 32 or 64) so the unrolled loops over n keep them in registers.
// - Backward by recomputation: a first sweep stores only the state entering each chunk,
//   hsave (B, nchunks, N, Di); the reverse sweep then, chunk by chunk from the last, recomputes
//   the chunk's TC+1 states into a per-thread array (local memory, about 2 KiB a thread) and
//   runs (5)-(13) backwards through it. No (B, L, Di, N) tensor is ever stored.
// - Determinism without atomics: dB and dC (sums over channels) are reduced per step inside a
//   block by warp shuffles and then over the block's warps in order, and written as one partial
//   per (channel block, b, t, n); dA and dD (sums over batch and time) are summed over t in each
//   thread and written as one partial per (b, d). A second kernel sums the partials in a fixed
//   order. Every operation's order is fixed by the sizes alone, so results are bit-identical
//   run to run.
// - Threads past the last channel (d >= Di) take part in staging, shuffles and barriers with
//   zero inputs (Δ = u = dout = 0 keeps a = 1 and h = G = 0), read nothing and write nothing.
#include "ssm/selective_scan.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "ssm/selective_scan_check.h"
#include "tensor/cuda_check.cuh"
#include "tensor/storage.h"

namespace simba {
namespace {

using scan_check::check_grads;
using scan_check::check_inputs;
using scan_check::check_rows;

constexpr int kThreads = 128;  // channels per block
constexpr int kWarps = kThreads / 32;
constexpr int kMaxN = 64;  // the largest NMAX; also makes 2·N <= kThreads (dB/dC reduction)

// Steps per chunk for state bound NMAX: (TC + 1)·NMAX floats of recomputed states per thread
// stay near 2 KiB, and the staged B/C chunk (2·TC·NMAX values) is at most 4 KiB.
template <int NMAX>
__host__ __device__ constexpr int chunk_len() {
  return NMAX >= 64 ? 8 : 512 / NMAX;
}

__device__ inline float exp_t(float v) { return expf(v); }
__device__ inline double exp_t(double v) { return exp(v); }

template <class T>
__device__ inline T sigmoid_t(T v) {
  return T(1) / (T(1) + exp_t(-v));
}

// The sum over the 32 lanes of a warp, the same in every lane (xor butterfly: fixed order).
template <class T>
__device__ inline T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Stages B_t[n], C_t[n] for the tc steps t = t0 .. t0+tc-1 of batch row b into shared memory,
// sB[s][n] = B_{t0+s}[n]. Called by every thread of the block (it contains the barriers): the
// first barrier lets the previous chunk's readers finish, the second publishes the new chunk.
template <class T, int NMAX, int TC>
__device__ inline void stage_chunk(T (&sB)[TC][NMAX], T (&sC)[TC][NMAX], SeqView<const T> Bm,
                                   SeqView<const T> Cm, int64_t b, int64_t L, int64_t t0, int tc,
                                   int N) {
  __syncthreads();
  for (int i = threadIdx.x; i < tc * N; i += kThreads) {
    const int s = i / N, n = i % N;
    const int64_t r = b * L + t0 + s;
    sB[s][n] = Bm.p[r * Bm.ld + n];
    sC[s][n] = Cm.p[r * Cm.ld + n];
  }
  __syncthreads();
}

// Forward, (1)-(4).
// Launch: grid (ceil(Di / kThreads), B), block kThreads; thread x of block (bx, b) owns
// channel d = bx·kThreads + x of batch row b.
// Shapes/layout as in ssm/selective_scan.h: out, u, delta, z (B, L, Di) rows; Bm, Cm (B, L, N)
// rows; A (Di, N); Dskip (Di) or null; h0, h_last (B, Di, N) or null. h_last may equal h0:
// each thread reads its h0 entries before it writes the same h_last entries, and no other
// thread touches them.
template <class T, int NMAX>
__global__ void __launch_bounds__(kThreads)
    scan_forward_kernel(SeqView<T> out, T* h_last, SeqView<const T> u, SeqView<const T> delta,
                        const T* A, SeqView<const T> Bm, SeqView<const T> Cm, const T* Dskip,
                        SeqView<const T> z, const T* h0, int64_t L, int64_t Di, int N) {
  constexpr int TC = chunk_len<NMAX>();
  __shared__ T sB[TC][NMAX], sC[TC][NMAX];
  const int64_t b = blockIdx.y;
  const int64_t d = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const bool valid = d < Di;

  T Ad[NMAX], h[NMAX];
#pragma unroll
  for (int n = 0; n < NMAX; ++n) {
    const bool on = valid && n < N;
    Ad[n] = on ? A[d * N + n] : T(0);
    h[n] = on && h0 ? h0[(b * Di + d) * N + n] : T(0);
  }
  const T Dd = valid && Dskip ? Dskip[d] : T(0);

  for (int64_t t0 = 0; t0 < L; t0 += TC) {
    const int tc = L - t0 < TC ? int(L - t0) : TC;
    stage_chunk<T, NMAX, TC>(sB, sC, Bm, Cm, b, L, t0, tc, N);
    if (!valid) continue;  // no barrier below: inactive threads may skip the steps
    for (int s = 0; s < tc; ++s) {
      const int64_t r = b * L + t0 + s;
      const T dt = delta.p[r * delta.ld + d], x = u.p[r * u.ld + d];
      const T dx = dt * x;
      T y = Dd * x;
#pragma unroll
      for (int n = 0; n < NMAX; ++n) {
        if (n < N) {
          h[n] = exp_t(dt * Ad[n]) * h[n] + dx * sB[s][n];  // (1)-(2)
          y += sC[s][n] * h[n];                             // (3)
        }
      }
      if (z.p) {
        const T zv = z.p[r * z.ld + d];
        y *= zv * sigmoid_t(zv);  // (4)
      }
      out.p[r * out.ld + d] = y;
    }
  }
  if (valid && h_last) {
#pragma unroll
    for (int n = 0; n < NMAX; ++n)
      if (n < N) h_last[(b * Di + d) * N + n] = h[n];
  }
}

// Backward, (5)-(13), first stage.
// Launch: grid (nblk = ceil(Di / kThreads), B), block kThreads; thread x of block (blk, b)
// owns channel d = blk·kThreads + x of batch row b (as in the forward).
// Writes du, ddelta, dz (if dz.p) (B, L, Di) rows and dh0 (if non-null) (B, Di, N) directly,
// and the partials that sum_partials_kernel reduces in a fixed order:
//   dB_part, dC_part (nblk, B, L, N): the sum over block blk's channels of (7) / (6);
//   dA_part (B, Di, N): the sum over t of (10);  dD_part (B, Di): the sum over t of (11).
// hsave (B, nchunks, N, Di), nchunks = ceil(L / TC): scratch for the chunk-entry states; each
// element is written and read by the one thread that owns it.
template <class T, int NMAX>
__global__ void __launch_bounds__(kThreads)
    scan_backward_kernel(SeqView<T> du, SeqView<T> ddelta, SeqView<T> dz, T* dh0, T* dB_part,
                         T* dC_part, T* dA_part, T* dD_part, T* hsave, SeqView<const T> dout,
                         const T* dh_last, SeqView<const T> u, SeqView<const T> delta, const T* A,
                         SeqView<const T> Bm, SeqView<const T> Cm, const T* Dskip,
                         SeqView<const T> z, const T* h0, int64_t B, int64_t L, int64_t Di,
                         int N) {
  constexpr int TC = chunk_len<NMAX>();
  __shared__ T sB[TC][NMAX], sC[TC][NMAX];
  // Per-warp dB/dC sums of one step, red[parity][warp][0 = dB, 1 = dC][n]. Double-buffered by
  // step parity so one barrier per step suffices: the buffer written at step j is next
  // written at step j+2, after the barrier of step j+1, which every reader of step j has
  // reached only after finishing its reads.
  __shared__ T red[2][kWarps][2][NMAX];
  const int64_t b = blockIdx.y, blk = blockIdx.x;
  const int64_t d = blk * kThreads + threadIdx.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const bool valid = d < Di;
  const int64_t nchunks = (L + TC - 1) / TC;
  auto hsave_at = [&](int64_t k, int n) { return hsave + ((b * nchunks + k) * N + n) * Di + d; };

  T Ad[NMAX], h[NMAX];
#pragma unroll
  for (int n = 0; n < NMAX; ++n) {
    const bool on = valid && n < N;
    Ad[n] = on ? A[d * N + n] : T(0);
    h[n] = on && h0 ? h0[(b * Di + d) * N + n] : T(0);
  }
  const T Dd = valid && Dskip ? Dskip[d] : T(0);

  // Sweep 1: the state entering each chunk (the last chunk's steps are not needed).
  for (int64_t k = 0; k < nchunks; ++k) {
    if (valid) {
#pragma unroll
      for (int n = 0; n < NMAX; ++n)
        if (n < N) *hsave_at(k, n) = h[n];
    }
    if (k == nchunks - 1) break;  // uniform over the block
    const int64_t t0 = k * TC;    // a full chunk: only the last one can be short
    stage_chunk<T, NMAX, TC>(sB, sC, Bm, Cm, b, L, t0, TC, N);
    if (!valid) continue;
    for (int s = 0; s < TC; ++s) {
      const int64_t r = b * L + t0 + s;
      const T dt = delta.p[r * delta.ld + d];
      const T dx = dt * u.p[r * u.ld + d];
#pragma unroll
      for (int n = 0; n < NMAX; ++n)
        if (n < N) h[n] = exp_t(dt * Ad[n]) * h[n] + dx * sB[s][n];
    }
  }

  // Sweep 2, chunks last to first. G[n] holds a_{t+1}·G_{t+1} on entry to step t (the second
  // term of (5)), starting from dh_last.
  T G[NMAX], dAacc[NMAX];
#pragma unroll
  for (int n = 0; n < NMAX; ++n) {
    G[n] = valid && n < N && dh_last ? dh_last[(b * Di + d) * N + n] : T(0);
    dAacc[n] = T(0);
  }
  T dDacc = 0;
  T hs[TC + 1][NMAX];  // hs[s][n] = h_{t0+s-1}[n]: the chunk's entry state and its tc states
  int parity = 0;
  for (int64_t k = nchunks - 1; k >= 0; --k) {
    const int64_t t0 = k * TC;
    const int tc = L - t0 < TC ? int(L - t0) : TC;
    stage_chunk<T, NMAX, TC>(sB, sC, Bm, Cm, b, L, t0, tc, N);

    // Recompute the chunk's states from its saved entry state (every thread, so inactive
    // ones hold zeros rather than uninitialised values that would reach the shuffles).
#pragma unroll
    for (int n = 0; n < NMAX; ++n) hs[0][n] = valid && n < N ? *hsave_at(k, n) : T(0);
    for (int s = 0; s < tc; ++s) {
      const int64_t r = b * L + t0 + s;
      const T dt = valid ? delta.p[r * delta.ld + d] : T(0);
      const T dx = valid ? dt * u.p[r * u.ld + d] : T(0);
#pragma unroll
      for (int n = 0; n < NMAX; ++n)
        hs[s + 1][n] = n < N ? exp_t(dt * Ad[n]) * hs[s][n] + dx * sB[s][n] : T(0);
    }

    for (int s = tc - 1; s >= 0; --s) {
      const int64_t t = t0 + s, r = b * L + t;
      T dt = 0, x = 0, go = 0, zv = 0;
      if (valid) {
        dt = delta.p[r * delta.ld + d];
        x = u.p[r * u.ld + d];
        go = dout.p[r * dout.ld + d];
        if (z.p) zv = z.p[r * z.ld + d];
      }
      T dy = go, sg = 0;
      if (z.p) {
        sg = sigmoid_t(zv);
        dy = go * zv * sg;
      }
      dDacc += dy * x;  // (11)
      T y = Dd * x;     // y_t before the gate, for (12)
      T gu = Dd * dy;   // second term of (8)
      T gdelta = 0;
#pragma unroll
      for (int n = 0; n < NMAX; ++n) {
        if (n < N) {  // N is uniform over the block: every lane reaches the shuffles
          const T bn = sB[s][n], cn = sC[s][n];
          const T ht = hs[s + 1][n], hp = hs[s][n];
          const T a = exp_t(dt * Ad[n]);
          const T g = G[n] + cn * dy;  // (5)
          y += cn * ht;                // (3)
          gu += g * dt * bn;           // (8)
          const T w = g * a * hp;
          gdelta += w * Ad[n] + g * bn * x;  // (9)
          dAacc[n] += w * dt;                // (10)
          G[n] = g * a;
          const T sum_b = warp_sum(g * dt * x);  // (7)
          const T sum_c = warp_sum(dy * ht);     // (6)
          if (lane == 0) {
            red[parity][warp][0][n] = sum_b;
            red[parity][warp][1][n] = sum_c;
          }
        }
      }
      if (valid) {
        du.p[r * du.ld + d] = gu;
        ddelta.p[r * ddelta.ld + d] = gdelta;
        if (dz.p) dz.p[r * dz.ld + d] = go * y * sg * (T(1) + zv * (T(1) - sg));  // (12)
      }
      __syncthreads();
      if (threadIdx.x < 2 * N) {
        const int which = threadIdx.x / N, n = threadIdx.x % N;
        T sum = 0;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) sum += red[parity][w][which][n];
        (which == 0 ? dB_part : dC_part)[((blk * B + b) * L + t) * N + n] = sum;
      }
      parity ^= 1;
    }
  }

  if (valid) {
#pragma unroll
    for (int n = 0; n < NMAX; ++n) {
      if (n < N) {
        if (dh0) dh0[(b * Di + d) * N + n] = G[n];  // (13)
        dA_part[(b * Di + d) * N + n] = dAacc[n];
      }
    }
    dD_part[b * Di + d] = dDacc;
  }
}

// Backward, second stage: out[r·ld + w] = Σ_{g < count} part[g·stride + r·width + w] for
// r < rows, w < width, summed in increasing g (the fixed order that makes it deterministic).
// Launch: 1-D grid-stride loop over the rows·width outputs, any grid.
template <class T>
__global__ void sum_partials_kernel(T* out, int64_t ld, const T* part, int64_t count,
                                    int64_t stride, int64_t rows, int64_t width) {
  const int64_t total = rows * width;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    T s = 0;
    for (int64_t g = 0; g < count; ++g) s += part[g * stride + e];
    out[(e / width) * ld + e % width] = s;
  }
}

template <class T>
void launch_sum_partials(cudaStream_t stream, T* out, int64_t ld, const T* part, int64_t count,
                         int64_t stride, int64_t rows, int64_t width) {
  constexpr int threads = 256;
  const int64_t blocks = std::min<int64_t>((rows * width + threads - 1) / threads, 8192);
  sum_partials_kernel<T><<<int(blocks), threads, 0, stream>>>(out, ld, part, count, stride, rows,
                                                               width);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

// Calls f(std::integral_constant<int, NMAX>) with the smallest supported NMAX >= N.
template <class F>
void with_state_bound(int64_t N, F&& f) {
  if (N <= 8)
    f(std::integral_constant<int, 8>{});
  else if (N <= 16)
    f(std::integral_constant<int, 16>{});
  else if (N <= 32)
    f(std::integral_constant<int, 32>{});
  else
    f(std::integral_constant<int, 64>{});
}

// Checks shared by forward and backward: sizes the kernels support and device pointers.
template <class T>
void check_cuda_inputs(const char* op, SeqView<const T> u, SeqView<const T> delta, const T* A,
                       SeqView<const T> Bm, SeqView<const T> Cm, const T* Dskip,
                       SeqView<const T> z, const T* h0, int64_t B, int64_t N) {
  SIMBA_CHECK(N <= kMaxN, op << ": state size N=" << N << " exceeds the CUDA kernels' maximum "
                             << kMaxN);
  SIMBA_CHECK(B <= 65535, op << ": batch B=" << B << " exceeds the CUDA grid limit 65535");
  cuda_check_device_pointer(u.p, op, "u");
  cuda_check_device_pointer(delta.p, op, "delta");
  cuda_check_device_pointer(A, op, "A");
  cuda_check_device_pointer(Bm.p, op, "B");
  cuda_check_device_pointer(Cm.p, op, "C");
  cuda_check_device_pointer(Dskip, op, "Dskip");
  cuda_check_device_pointer(z.p, op, "z");
  cuda_check_device_pointer(h0, op, "h0");
}

}  // namespace

template <class T>
void selective_scan_forward_cuda(SeqView<T> out, T* h_last, SeqView<const T> u,
                                 SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                                 SeqView<const T> Cm, const T* Dskip, SeqView<const T> z,
                                 const T* h0, int64_t B, int64_t L, int64_t Di, int64_t N) {
  const char* op = "selective_scan_forward_cuda";
  check_inputs(op, u, delta, A, Bm, Cm, z, B, L, Di, N);
  check_rows(op, "out", out, Di, "Di");
  check_cuda_inputs(op, u, delta, A, Bm, Cm, Dskip, z, h0, B, N);
  cuda_check_device_pointer(out.p, op, "out");
  cuda_check_device_pointer(h_last, op, "h_last");

  cudaStream_t stream = cuda_stream(cuda_current_device());
  const dim3 grid(static_cast<unsigned>((Di + kThreads - 1) / kThreads), static_cast<unsigned>(B));
  with_state_bound(N, [&](auto bound) {
    scan_forward_kernel<T, decltype(bound)::value><<<grid, kThreads, 0, stream>>>(
        out, h_last, u, delta, A, Bm, Cm, Dskip, z, h0, L, Di, int(N));
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void selective_scan_backward_cuda(SeqView<T> du, SeqView<T> ddelta, T* dA, SeqView<T> dB,
                                  SeqView<T> dC, T* dD, SeqView<T> dz, T* dh0,
                                  SeqView<const T> dout, const T* dh_last, SeqView<const T> u,
                                  SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                                  SeqView<const T> Cm, const T* Dskip, SeqView<const T> z,
                                  const T* h0, int64_t B, int64_t L, int64_t Di, int64_t N) {
  const char* op = "selective_scan_backward_cuda";
  check_inputs(op, u, delta, A, Bm, Cm, z, B, L, Di, N);
  check_grads(op, du, ddelta, dA, dB, dC, dD, dz, dout, Dskip, z, Di, N);
  check_cuda_inputs(op, u, delta, A, Bm, Cm, Dskip, z, h0, B, N);
  cuda_check_device_pointer(du.p, op, "du");
  cuda_check_device_pointer(ddelta.p, op, "ddelta");
  cuda_check_device_pointer(dA, op, "dA");
  cuda_check_device_pointer(dB.p, op, "dB");
  cuda_check_device_pointer(dC.p, op, "dC");
  cuda_check_device_pointer(dD, op, "dD");
  cuda_check_device_pointer(dz.p, op, "dz");
  cuda_check_device_pointer(dh0, op, "dh0");
  cuda_check_device_pointer(dout.p, op, "dout");
  cuda_check_device_pointer(dh_last, op, "dh_last");

  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  const int64_t nblk = (Di + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(nblk), static_cast<unsigned>(B));
  with_state_bound(N, [&](auto bound) {
    constexpr int NMAX = decltype(bound)::value;
    const int64_t nchunks = (L + chunk_len<NMAX>() - 1) / chunk_len<NMAX>();
    // Scratch, freed (stream-ordered) when `scratch` goes out of scope after the launches.
    const int64_t n_dBC = nblk * B * L * N, n_dA = B * Di * N, n_dD = B * Di;
    const int64_t n_hsave = B * nchunks * N * Di;
    Storage scratch(sizeof(T) * size_t(2 * n_dBC + n_dA + n_dD + n_hsave),
                    Device{DeviceType::CUDA, device});
    T* dB_part = static_cast<T*>(scratch.data());
    T* dC_part = dB_part + n_dBC;
    T* dA_part = dC_part + n_dBC;
    T* dD_part = dA_part + n_dA;
    T* hsave = dD_part + n_dD;
    scan_backward_kernel<T, NMAX><<<grid, kThreads, 0, stream>>>(
        du, ddelta, dz, dh0, dB_part, dC_part, dA_part, dD_part, hsave, dout, dh_last, u, delta,
        A, Bm, Cm, Dskip, z, h0, B, L, Di, int(N));
    SIMBA_CUDA_CHECK(cudaGetLastError());
    launch_sum_partials(stream, dB.p, dB.ld, dB_part, nblk, B * L * N, B * L, N);
    launch_sum_partials(stream, dC.p, dC.ld, dC_part, nblk, B * L * N, B * L, N);
    launch_sum_partials(stream, dA, N, dA_part, B, Di * N, Di, N);
    if (dD) launch_sum_partials(stream, dD, Di, dD_part, B, Di, int64_t(1), Di);
  });
}

#define SIMBA_INSTANTIATE_SCAN_CUDA(T)                                                                       \
  template void selective_scan_forward_cuda<T>(SeqView<T>, T*, SeqView<const T>, SeqView<const T>, const T*,      \
                                               SeqView<const T>, SeqView<const T>, const T*, SeqView<const T>,     \
                                               const T*, int64_t, int64_t, int64_t, int64_t);                      \
  template void selective_scan_backward_cuda<T>(SeqView<T>, SeqView<T>, T*, SeqView<T>, SeqView<T>, T*, SeqView<T>, \
                                                T*, SeqView<const T>, const T*, SeqView<const T>, SeqView<const T>, \
                                                const T*, SeqView<const T>, SeqView<const T>, const T*,             \
                                                SeqView<const T>, const T*, int64_t, int64_t, int64_t, int64_t);
SIMBA_INSTANTIATE_SCAN_CUDA(float)
SIMBA_INSTANTIATE_SCAN_CUDA(double)
#undef SIMBA_INSTANTIATE_SCAN_CUDA

}  // namespace simba
