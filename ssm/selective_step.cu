// ssm/selective_step.cu: selective_step_cuda (ssm/selective_step.h).
//
// Launch: 1-D grid of ceil(B·Di / (128 / Lanes)) blocks of 128 threads; the Lanes consecutive
// threads of group g = global thread / Lanes own channel (b, d) = (g / Di, g % Di). Lane l
// takes the terms r ≡ l and the states n ≡ l (mod Lanes): it forms its part of (1)'s sum, the
// channel's lanes add their parts with shuffles (every lane gets the whole sum, and Δ), then
// each lane updates its states (h (B, Di, N): the channel's N entries are consecutive, so the
// lanes' loads are one segment) and adds its part of (3)'s Σ_n C·h, summed again by shuffles;
// lane 0 adds the skip term, applies the gate and writes y. The sums run in a fixed tree order:
// deterministic, though not in _ref's sequential order (rounding differences only).
//
// Lanes a channel. A decode step at batch 1 has only Di channels: one thread a channel would
// walk the R terms of (1) and the N states of (2) in one long chain of dependent operations
// while most of the GPU waits, so while the channels fit in one wave of resident threads
// with 16 lanes each, 16 lanes share a channel. Past that the GPU is full anyway, and the
// per-channel work every lane repeats (Δ's softplus, the index arithmetic, the gate) costs
// more than the shorter chains save: 4 lanes a channel.
//
// Packed (4 lanes, N = 16, R a multiple of 16 up to 48, every row aligned to whole packs of 4):
// lane l owns the consecutive states n = 4l .. 4l + 3 and terms r = l·R/4 .. (l + 1)·R/4 − 1
// instead of every fourth one, so its states, their A_log, B and C, and its W_dt and x terms
// come as packs of 4 (tensor/cuda_check.cuh) and its states go back as one: a warp's access to
// its 8 channels' states is one instruction instead of four, as in the conv step. The sums take
// the same terms in another order (rounding differences only).
#include "ssm/selective_step.h"

#include <cuda_runtime.h>

#include "ssm/selective_step_check.h"
#include "tensor/dtype.h"
#include "tensor/elementwise_math.h"
#include "tensor/cuda_check.cuh"
#include "tensor/cuda_fast_math.cuh"
#include "tensor/error.h"

namespace simba {
namespace {

constexpr int kThreads = 128;
constexpr int kRegStates = 4;  // states a lane loads up front (all of them while N ≤ 4·Lanes)

// The sum of v over the Lanes lanes of a channel, in every one of them (xor butterfly: the
// same order in every lane, so they agree bit for bit).
template <int Lanes, class A>
__device__ inline A channel_sum(A v) {
#pragma unroll
  for (int off = Lanes / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <class T, int Lanes, bool kPacked>
__global__ void __launch_bounds__(kThreads)
    step_kernel(T* __restrict__ y, T* __restrict__ h, const T* __restrict__ x_dbl, int64_t ld_dbl,
                const T* __restrict__ u, const T* __restrict__ z, int64_t ld_z, const T* __restrict__ W_dt,
                const T* __restrict__ b_dt, const T* __restrict__ A_log, const T* __restrict__ Dskip, int64_t B,
                int64_t Di, int64_t R, int64_t N) {
  using fast_math::exp2;
  using fast_math::sigmoid;
  using pointwise::softplus_of;
  using A = acc_t<T>;
  using P = Pack<T, kRegStates>;
  static_assert(!kPacked || Lanes * kRegStates == 16, "packed: a lane's 4 states of N = 16");
  const int64_t g = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / Lanes;
  const int lane = threadIdx.x % Lanes;
  // Channels past B·Di compute on channel 0's operands (with a zero state) and store nothing:
  // every lane of the warp must reach the shuffles.
  const bool valid = g < B * Di;
  const int64_t b = valid ? g / Di : 0, d = valid ? g % Di : 0;
  const T* x = x_dbl + b * ld_dbl;
  T* hd = h + (b * Di + d) * N;
  // A step is a chain of latencies, not of bandwidth: every load that does not depend on Δ
  // (the lane's states and their operands, up to kRegStates of them, u, z, D, the bias, and
  // (1)'s terms, up to kRegTerms of them) is issued before (1)'s sum, so the channel waits on one
  // round trip to memory, not one a state or a group of terms (a loop over the terms unrolled by
  // 4 waited on one a group at 4 lanes a channel). States past kRegStates·Lanes (N > 64 at 16
  // lanes, N > 16 at 4) and terms past kRegTerms·Lanes (R > 48, Mamba's R = ceil(D / 16): 48 at
  // the 130M shape; held for more, the terms cost the 4-lane kernel an SM's ninth block) follow
  // in loops.
  // The exponentials of (2), A = −exp(A_log) and the decay exp(Δ·A), as powers of two: one
  // ex2.approx each where expf takes about ten instructions (tensor/cuda_fast_math.cuh), as in the
  // scan's kernels (ssm/selective_scan.cu). av holds A·log2 e.
  const A kLog2e = A(1.4426950408889634);
  const auto A2 = [&](A a_log) { return -exp2(a_log * kLog2e) * kLog2e; };
  // The lane's i-th state: every Lanes-th one, or (packed) its 4 consecutive ones.
  const auto state_of = [&](int i) { return kPacked ? int64_t(lane) * kRegStates + i : lane + int64_t(i) * Lanes; };
  A hv[kRegStates], av[kRegStates], Bv[kRegStates], Cv[kRegStates];
  if constexpr (kPacked) {
    const int64_t n0 = state_of(0);
    const P hp = valid ? *reinterpret_cast<const P*>(hd + n0) : P{};
    const P ap = *reinterpret_cast<const P*>(A_log + d * N + n0), bp = *reinterpret_cast<const P*>(x + R + n0),
            cp = *reinterpret_cast<const P*>(x + R + N + n0);
#pragma unroll
    for (int i = 0; i < kRegStates; ++i) {
      hv[i] = A(hp.v[i]);
      av[i] = A2(A(ap.v[i]));
      Bv[i] = A(bp.v[i]);
      Cv[i] = A(cp.v[i]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kRegStates; ++i) {
      const int64_t n = state_of(i);
      const bool in = n < N;
      hv[i] = in && valid ? A(hd[n]) : A(0);
      av[i] = in ? A2(A(A_log[d * N + n])) : A(0);
      Bv[i] = in ? A(x[R + n]) : A(0);
      Cv[i] = in ? A(x[R + N + n]) : A(0);
    }
  }
  const A ud = A(u[b * Di + d]), zv = A(z[b * ld_z + d]);
  const A skip = Dskip ? A(Dskip[d]) : A(0), bias = b_dt ? A(b_dt[d]) : A(0);
  // (1)'s terms of this lane, summed in order: r = lane, lane + Lanes, ..., or (packed) the
  // lane's R / Lanes consecutive ones, in packs of 4.
  constexpr int kRegTerms = 48 / Lanes;
  A wt[kRegTerms], xt[kRegTerms];
  if constexpr (kPacked) {
    const int64_t per = R / Lanes, r0 = lane * per;
#pragma unroll
    for (int q = 0; q < kRegTerms / kRegStates; ++q) {
      const bool in = q * kRegStates < per;
      const P wp = in ? *reinterpret_cast<const P*>(W_dt + d * R + r0 + q * kRegStates) : P{},
              xp = in ? *reinterpret_cast<const P*>(x + r0 + q * kRegStates) : P{};
#pragma unroll
      for (int j = 0; j < kRegStates; ++j) {
        wt[q * kRegStates + j] = in ? A(wp.v[j]) : A(0);
        xt[q * kRegStates + j] = in ? A(xp.v[j]) : A(0);
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < kRegTerms; ++i) {
      const int64_t r = lane + int64_t(i) * Lanes;
      wt[i] = r < R ? A(W_dt[d * R + r]) : A(0);
      xt[i] = r < R ? A(x[r]) : A(0);
    }
  }
  A s = 0;
#pragma unroll
  for (int i = 0; i < kRegTerms; ++i) s += wt[i] * xt[i];
  if constexpr (!kPacked)
    for (int64_t r = lane + int64_t(kRegTerms) * Lanes; r < R; r += Lanes) s += A(W_dt[d * R + r]) * A(x[r]);
  const A delta = softplus_of(channel_sum<Lanes>(s) + bias);  // (1)
  const A dx = delta * ud;
  A acc = 0;
  P hn_p;  // packed: the lane's new states, stored as one
#pragma unroll
  for (int i = 0; i < kRegStates; ++i) {
    const int64_t n = state_of(i);
    if (kPacked || n < N) {
      const A hn = exp2(delta * av[i]) * hv[i] + dx * Bv[i];  // (2)
      if constexpr (kPacked)
        hn_p.v[i] = T(hn);
      else if (valid)
        hd[n] = T(hn);
      acc += Cv[i] * hn;
    }
  }
  if constexpr (kPacked) {
    if (valid) *reinterpret_cast<P*>(hd + state_of(0)) = hn_p;
  } else {
    for (int64_t n = lane + int64_t(kRegStates) * Lanes; n < N; n += Lanes) {  // the lane's further states
      const A h_old = valid ? A(hd[n]) : A(0);
      const A hn = exp2(delta * A2(A(A_log[d * N + n]))) * h_old + dx * A(x[R + n]);  // (2)
      if (valid) hd[n] = T(hn);
      acc += A(x[R + N + n]) * hn;
    }
  }
  acc = channel_sum<Lanes>(acc);
  if (valid && lane == 0) y[b * Di + d] = T((acc + skip * ud) * zv * sigmoid(zv));  // (3), σ as the scan's gate
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
  const int device = cuda_current_device();
  int sms = 0, threads_per_sm = 0;
  SIMBA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  SIMBA_CUDA_CHECK(cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  const bool wide = B * Di * 16 <= int64_t(sms) * threads_per_sm;  // one wave at 16 lanes a channel
  const int lanes = wide ? 16 : 4;
  const int64_t blocks = (B * Di * lanes + kThreads - 1) / kThreads;
  SIMBA_CHECK(blocks <= INT32_MAX, op << ": B·Di=" << B * Di << " exceeds the grid limit");
  // Packed (the file comment): every row the lanes read in packs starts a whole pack.
  constexpr int64_t kP = kRegStates;
  const auto aligned = [](const T* p) { return reinterpret_cast<uintptr_t>(p) % sizeof(Pack<T, kRegStates>) == 0; };
  const bool packed = !wide && N == 4 * kP && R % (4 * kP) == 0 && R <= 48 && ld_dbl % kP == 0 && aligned(h) &&
                      aligned(x_dbl) && aligned(A_log) && aligned(W_dt);
  const auto kernel = wide ? step_kernel<T, 16, false> : packed ? step_kernel<T, 4, true> : step_kernel<T, 4, false>;
  kernel<<<unsigned(blocks), kThreads, 0, cuda_stream(device)>>>(y, h, x_dbl, ld_dbl, u, z, ld_z, W_dt, b_dt, A_log,
                                                                   Dskip, B, Di, R, N);
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
