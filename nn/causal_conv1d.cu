// nn/causal_conv1d.cu: the CUDA causal depthwise conv1d kernels declared in
// nn/causal_conv1d.h (equations there).
//
// Design. The forward (and SiLU's gradient through it, causal_conv1d_silu_grad: the same
// kernels with the gradient read beside x), dx and the recurrent step are elementwise over
// (b, t, c): one thread per output element, channels fastest, so a warp reads and writes
// consecutive channels of one time step (coalesced), and each of the K taps is a coalesced row
// read. Where the rows allow it (16-byte aligned, K <= kMaxTaps: Mamba's K = 4), the forward
// and dx instead give a thread one 16-byte piece of channels for kConvSteps consecutive steps
// and keep a window of K rows (of x, of dout) in registers, so each element is loaded once, as
// part of a 16-byte load. dw and dbias (sums over batch and time) are formed without atomics:
// the (B, L) steps are cut into slices of kTimeChunk steps of one batch row; thread (slice q,
// channel c) sums its slice's terms in double, in time order, into its own partials
// part_w[q, c, k] and part_b[q, c], and cuda_reduce::launch_sum_partials adds the slices in a
// fixed order. The backward under SiLU (causal_conv1d_silu_backward) runs in that slice walk
// alone: SiLU's gradient formed where it is used, dx from a window of it. Every order is fixed
// by the sizes, so results are bit-identical run to run. Sums run in acc_t<T> (float for
// bfloat16) or double; a bfloat16 value is widened on load and each output element rounded
// once on store.
#include "nn/causal_conv1d.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <utility>

#include "tensor/cuda_reduce.cuh"
#include "tensor/cuda_fast_math.cuh"
#include "nn/kernel_check.h"
#include "tensor/cuda_check.cuh"
#include "tensor/storage.h"

namespace simba {
namespace {

constexpr int kThreads = 256;
constexpr int kTimeChunk = 64;  // time steps per dw/dbias partial slice

unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

// The output of a sum v, rounded once to T: v, SiLU(v) if silu, or with a gradient g of SiLU's
// output (has_g: causal_conv1d_silu_grad) g·SiLU'(v) (nn/causal_conv1d.h). The sigmoid runs on
// the special-function unit (tensor/cuda_fast_math.cuh): with expf and an IEEE division an
// element, the forward was held back by its instructions as much as by its bytes.
template <class T, class Acc>
__device__ inline T conv_result(Acc v, bool silu, bool has_g = false, Acc g = Acc(0)) {
  return T(has_g ? g * fast_math::silu_derivative(v) : silu ? fast_math::silu(v) : v);
}

// Forward: out[b,t,c] = bias[c] + Σ_{k} w[c,k]·x[b, t−(K−1)+k, c] (taps before t = 0 skipped),
// summed bias first then taps in order k = 0..K−1 like the CPU path.
// Launch: grid (B·L, ceil(C / kThreads)), block kThreads; block (r, cy) owns row r = b·L + t of
// the contiguous (B, L, C) output, thread x its channel c = cy·kThreads + x (one division a
// thread for (b, t), where an index per element cost three 64-bit divisions).
// x (B, L, C) strided (x_stride_b, x_stride_l, 1); w (C, K); bias (C) or null; dsilu (B, L,
// C) contiguous or null (causal_conv1d_silu_grad: out = dsilu·SiLU'(sum)).
template <class T>
__global__ void __launch_bounds__(kThreads)
    conv_forward_kernel(T* out, const T* x, const T* w, const T* bias, int64_t L, int64_t C, int K,
                        int64_t x_stride_b, int64_t x_stride_l, bool silu, const T* dsilu) {
  const int64_t c = int64_t(blockIdx.y) * kThreads + threadIdx.x;
  if (c >= C) return;
  using Acc = acc_t<T>;
  const int64_t r = blockIdx.x, b = r / L, t = r - b * L;
  Acc acc = bias ? Acc(bias[c]) : Acc(0);
  for (int k = t >= K - 1 ? 0 : int(K - 1 - t); k < K; ++k)
    acc += Acc(w[c * K + k]) * Acc(x[b * x_stride_b + (t - (K - 1) + k) * x_stride_l + c]);
  out[r * C + c] = conv_result<T>(acc, silu, dsilu != nullptr, dsilu ? Acc(dsilu[r * C + c]) : Acc(0));
}

// The forward's fast path (the file comment): the same sums in the same order.
constexpr int kMaxTaps = 4;      // taps the window holds
constexpr int kConvSteps = 16;   // steps per thread
constexpr int kVecThreads = 64;  // threads per block

// Elements per 16-byte piece, and whether a pointer starts one: the vector kernels' terms.
template <class T>
constexpr int kPiece = 16 / sizeof(T);
bool starts_piece(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// dst = the piece at p widened to acc_t<T> when `in`, zeros otherwise (a row outside the
// sequence; p, then any row of it, is not read).
template <class T, int V>
__device__ inline void load_piece(acc_t<T> (&dst)[V], const T* p, bool in) {
  Pack<T, V> q{};
  if (in) q = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
  for (int v = 0; v < V; ++v) dst[v] = acc_t<T>(q.v[v]);
}

// Launch: grid (B·ceil(L / kConvSteps), ceil(C / (V·kVecThreads))), block kVecThreads; block
// (r, cy) owns the steps [t0, t0 + kConvSteps) of batch row b, r = b·ceil(L / kConvSteps) +
// t0 / kConvSteps, and thread x the channels [c0, c0 + V), c0 = V·(cy·kVecThreads + x).
// x (B, L, C) strided (x_stride_b, x_stride_l, 1), both strides, C and the pointers multiples
// of V elements (16 bytes); K <= kMaxTaps. dsilu as for the plain kernel, 16-byte aligned, and
// not null exactly when kGrad (a template argument: the forward holds no registers for it).
// The thread walks its steps in groups of kConvGroup: it issues the loads of a group's x rows
// (and dsilu rows) before it computes any of its outputs, so kConvGroup round trips to memory
// are in flight at once instead of one a step (a step's load, sums and store in turn kept the
// kernel at a third of the copy bandwidth: bench/RESULTS.md). The rows stay in their storage
// type until used (bfloat16: 156 registers a thread; SiLU's gradient as a runtime pointer held
// its group too and took 250). Row slot j of `rows` holds x row g0 − (kMaxTaps−1) + j for the
// group starting at g0; tap k of K reads slot i + kMaxTaps − K + k for output step g0 + i; rows
// before t = 0 are skipped as in the plain kernel (their slots are zeros, never added).
constexpr int kConvGroup = 8;  // steps whose loads are in flight together; divides kConvSteps
static_assert(kConvSteps % kConvGroup == 0, "whole groups per tile");

template <class T, int V, bool kGrad>
__global__ void __launch_bounds__(kVecThreads)
    conv_forward_vec_kernel(T* __restrict__ out, const T* __restrict__ x, const T* __restrict__ w,
                            const T* __restrict__ bias, int64_t L, int64_t C, int K, int64_t x_stride_b,
                            int64_t x_stride_l, bool silu, const T* __restrict__ dsilu) {
  using Acc = acc_t<T>;
  using Pk = Pack<T, V>;
  const int64_t c0 = (int64_t(blockIdx.y) * kVecThreads + threadIdx.x) * V;
  if (c0 >= C) return;
  const int64_t ntiles = (L + kConvSteps - 1) / kConvSteps;
  const int64_t b = blockIdx.x / ntiles, t0 = (blockIdx.x % ntiles) * kConvSteps;
  const int first = kMaxTaps - K;  // the first slot with a tap
  Acc wr[kMaxTaps][V], br[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    br[v] = bias ? Acc(bias[c0 + v]) : Acc(0);
#pragma unroll
    for (int j = 0; j < kMaxTaps; ++j) wr[j][v] = j >= first ? Acc(w[(c0 + v) * K + j - first]) : Acc(0);
  }
  const T* xb = x + b * x_stride_b + c0;
  const auto load = [&](int64_t t) { return t >= 0 ? *reinterpret_cast<const Pk*>(xb + t * x_stride_l) : Pk{}; };
  constexpr int kHalo = kMaxTaps - 1;
  Pk rows[kHalo + kConvGroup];
#pragma unroll
  for (int j = 0; j < kHalo; ++j) rows[j] = load(t0 - kHalo + j);
  const int64_t tend = L - t0 < kConvSteps ? L : t0 + kConvSteps;
#pragma unroll 1  // one group's rows in registers at a time
  for (int64_t g0 = t0; g0 < tend; g0 += kConvGroup) {
    Pk gr[kConvGroup];
#pragma unroll
    for (int i = 0; i < kConvGroup; ++i) {
      if (g0 + i < tend) {
        rows[kHalo + i] = load(g0 + i);
        if constexpr (kGrad) gr[i] = *reinterpret_cast<const Pk*>(dsilu + (b * L + g0 + i) * C + c0);
      }
    }
#pragma unroll
    for (int i = 0; i < kConvGroup; ++i) {
      const int64_t t = g0 + i;
      if (t >= tend) break;
      Pk o;
#pragma unroll
      for (int v = 0; v < V; ++v) {
        Acc a = br[v];
#pragma unroll
        for (int j = 0; j < kMaxTaps; ++j)
          if (j >= first && t - kHalo + j >= 0) a += wr[j][v] * Acc(rows[i + j].v[v]);
        o.v[v] = conv_result<T>(a, silu, kGrad, kGrad ? Acc(gr[i].v[v]) : Acc(0));
      }
      *reinterpret_cast<Pk*>(out + (b * L + t) * C + c0) = o;
    }
#pragma unroll
    for (int j = 0; j < kHalo; ++j) rows[j] = rows[kConvGroup + j];
  }
}

// dx[b,s,c] = Σ_k w[c,k]·dout[b, s+(K−1)−k, c] over the taps whose output index is < L.
// Launch: grid (B·L, ceil(C / kThreads)), block kThreads, as the forward: block (r, y) owns row
// r = b·L + s of the contiguous (B, L, C) dx and thread x its channel c = y·kThreads + x (one
// division a thread, where a flat index took three). dout (B, L, C) contiguous.
template <class T>
__global__ void __launch_bounds__(kThreads)
    conv_backward_dx_kernel(T* dx, const T* dout, const T* w, int64_t L, int64_t C, int K) {
  const int64_t c = int64_t(blockIdx.y) * kThreads + threadIdx.x;
  if (c >= C) return;
  using Acc = acc_t<T>;
  const int64_t r = blockIdx.x, s = r % L;
  Acc acc = Acc(0);
  for (int k = s + K - L > 0 ? int(s + K - L) : 0; k < K; ++k)
    acc += Acc(w[c * K + k]) * Acc(dout[(r + (K - 1) - k) * C + c]);
  dx[r * C + c] = T(acc);
}

// dx's fast path, the same sums in the same order: a thread takes one 16-byte piece of channels
// for kConvSteps consecutive steps, the next kMaxTaps rows of dout in a window of registers, a
// whole tile unrolled. Window slot j holds dout row s + j (zeros past L) and meets tap
// k = K − 1 − j (slots j >= K hold no tap); the taps are added in order k = 0, 1, ... as in the
// plain kernel, rows past L skipped.
// Launch: grid (B·ceil(L / kConvSteps), ceil(C / (V·kVecThreads))), block kVecThreads; block (r, cy)
// owns the steps [s0, s0 + kConvSteps) of batch row b, r = b·ceil(L / kConvSteps) + s0 / kConvSteps,
// and thread x the channels [c0, c0 + V), c0 = V·(cy·kVecThreads + x). dx and dout (B, L, C)
// contiguous, C a multiple of V and both pointers of 16 bytes; K <= kMaxTaps.
template <class T, int V>
__global__ void __launch_bounds__(kVecThreads)
    conv_backward_dx_vec_kernel(T* __restrict__ dx, const T* __restrict__ dout, const T* __restrict__ w, int64_t L,
                                int64_t C, int K) {
  using Acc = acc_t<T>;
  const int64_t c0 = (int64_t(blockIdx.y) * kVecThreads + threadIdx.x) * V;
  if (c0 >= C) return;
  const int64_t ntiles = (L + kConvSteps - 1) / kConvSteps;
  const int64_t b = blockIdx.x / ntiles, s0 = (blockIdx.x % ntiles) * kConvSteps;
  Acc ws[kMaxTaps][V], win[kMaxTaps][V];  // ws[j]: the tap slot j meets
#pragma unroll
  for (int v = 0; v < V; ++v)
#pragma unroll
    for (int j = 0; j < kMaxTaps; ++j) ws[j][v] = j < K ? Acc(w[(c0 + v) * K + K - 1 - j]) : Acc(0);
  const T* gb = dout + b * L * C + c0;
  auto load = [&](int64_t t, Acc(&dst)[V]) { load_piece<T, V>(dst, t < L ? gb + t * C : gb, t < L); };
#pragma unroll
  for (int j = 0; j < kMaxTaps - 1; ++j) load(s0 + j, win[j]);
  auto step = [&](int64_t s) {
    load(s + kMaxTaps - 1, win[kMaxTaps - 1]);
    Pack<T, V> o;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      Acc a = Acc(0);
#pragma unroll
      for (int j = kMaxTaps - 1; j >= 0; --j)  // tap k = K − 1 − j, in increasing k
        if (j < K && s + j < L) a += ws[j][v] * win[j][v];
      o.v[v] = T(a);
    }
    *reinterpret_cast<Pack<T, V>*>(dx + (b * L + s) * C + c0) = o;
#pragma unroll
    for (int j = 0; j < kMaxTaps - 1; ++j)
#pragma unroll
      for (int v = 0; v < V; ++v) win[j][v] = win[j + 1][v];
  };
  if (s0 + kConvSteps <= L) {
#pragma unroll
    for (int s = 0; s < kConvSteps; ++s) step(s0 + s);
  } else {
    for (int64_t s = s0; s < L; ++s) step(s);
  }
}

// Partials of dw and dbias over slice q = b·nchunks + j, the steps t in
// [j·kTimeChunk, min(L, (j+1)·kTimeChunk)) of batch row b:
//   part_w[q, c, k] = Σ_t dout[b,t,c]·x[b, t−(K−1)+k, c]   (terms with t−(K−1)+k < 0 drop)
//   part_b[q, c]    = Σ_t dout[b,t,c]
// each sum in time order, in double. With K <= kMaxTaps the slice is walked once, the last
// kMaxTaps rows of x in registers (window slot j holds row t − (kMaxTaps−1) + j, tap k sits in
// slot kMaxTaps − K + k), so each dout and x element is read once instead of once a tap; the
// sums keep their order, so the bits are those of the tap-by-tap loops that serve larger K.
// Values widen exactly through acc_t<T> (a bfloat16's float is its bits shifted).
// Launch: grid (ceil(C / kThreads), B·nchunks), block kThreads; thread x of block (bx, q)
// owns channel c = bx·kThreads + x of slice q, and is the only writer of part_w[q, c, :] and
// part_b[q, c]. part_w (B·nchunks, C, K) and part_b (B·nchunks, C) double, either may be null.
template <class T>
__global__ void __launch_bounds__(kThreads)
    conv_backward_partials_kernel(double* part_w, double* part_b, const T* dout, const T* x, int64_t L, int64_t C,
                                  int K, int64_t nchunks, int64_t x_stride_b, int64_t x_stride_l) {
  const int64_t c = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (c >= C) return;
  const int64_t q = blockIdx.y, b = q / nchunks, t0 = (q % nchunks) * kTimeChunk;
  const int64_t t1 = L - t0 < kTimeChunk ? L : t0 + kTimeChunk;
  const T* g = dout + b * L * C + c;
  const T* xb = x + b * x_stride_b + c;
  const auto wide = [](T v) { return double(acc_t<T>(v)); };
  if (K <= kMaxTaps) {
    const int first = kMaxTaps - K;
    double aw[kMaxTaps] = {}, ab = 0.0, win[kMaxTaps] = {};
#pragma unroll
    for (int j = 1; j < kMaxTaps; ++j) {  // rows t0 − (kMaxTaps−1) + j − 1, shifted in below
      const int64_t s = t0 - kMaxTaps + j;
      if (j - 1 >= first && s >= 0) win[j] = wide(xb[s * x_stride_l]);
    }
    for (int64_t t = t0; t < t1; ++t) {
      const double gt = wide(g[t * C]);
#pragma unroll
      for (int j = 0; j < kMaxTaps - 1; ++j) win[j] = win[j + 1];
      win[kMaxTaps - 1] = wide(xb[t * x_stride_l]);
      ab += gt;
#pragma unroll
      for (int j = 0; j < kMaxTaps; ++j)
        if (j >= first && t - (kMaxTaps - 1) + j >= 0) aw[j] += gt * win[j];
    }
    if (part_b) part_b[q * C + c] = ab;
#pragma unroll
    for (int j = 0; j < kMaxTaps; ++j)  // slot j is tap j − first (fixed slots keep aw in registers)
      if (part_w && j >= first) part_w[(q * C + c) * K + j - first] = aw[j];
    return;
  }
  if (part_b) {
    double acc = 0.0;
    for (int64_t t = t0; t < t1; ++t) acc += wide(g[t * C]);
    part_b[q * C + c] = acc;
  }
  if (!part_w) return;
  for (int k = 0; k < K; ++k) {
    double acc = 0.0;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t s = t - (K - 1) + k;
      if (s >= 0) acc += wide(g[t * C]) * wide(xb[s * x_stride_l]);
    }
    part_w[(q * C + c) * K + k] = acc;
  }
}

// causal_conv1d_silu_backward in one pass, K <= kMaxTaps: thread x of block (bx, q) owns the V
// channels c0 .. c0 + V − 1, c0 = V·(bx·threads + x), of slice q (the partials kernel's slices)
// and walks t = t0 .. t1 + K − 2. At each step below L it forms v_t from the last K rows of x
// (the forward's sum: bias first, taps in order) and g_t = T(dout_t·SiLU'(v_t)), silu_grad's
// value; for t < t1 it adds g_t to the partials as the partials kernel adds dout'; and it writes
// dx[s], s = t − (K−1) in [t0, t1), from the last K values of g (zeros past L, their taps
// skipped), taps in increasing k as the dx kernels. So dx, part_w and part_b get the bits of
// silu_grad followed by the backward, and the K − 1 steps past the slice, whose g the next slice
// forms as well, are the only work done twice.
// The walk is bound by its instructions (bench/RESULTS.md): K is a template parameter, so the
// windows hold exactly K rows and no tap is tested, and the steps that can meet a row outside
// [0, L) or past the slice (t < K − 1, t >= t1) run a checked copy of the step, the others
// none; indices are 32 bits (the launcher checks B·L·C and the strides, and falls back to the
// two kernels past them). V = 1 (threads = kThreads) serves any layout; V = 4 (threads =
// kVecThreads) loads and stores V channels at once (x's strides, C and the pointers multiples
// of V elements). The raw x and dout rows of the next D steps are in flight ahead of the one
// computed.
// x (B, L, C) strided, dout and dx (B, L, C) contiguous; w (C, K); bias (C) or null; dx,
// part_w, part_b may be null.
template <class T, int V, int K>
__global__ void __launch_bounds__(V == 1 ? kThreads : kVecThreads)
    conv_silu_backward_kernel(T* dx, double* part_w, double* part_b, const T* dout, const T* x, const T* w,
                              const T* bias, int L, int C, int nchunks, int x_stride_b, int x_stride_l) {
  using Acc = acc_t<T>;
  using P = Pack<T, V>;
  constexpr int threads = V == 1 ? kThreads : kVecThreads;
  constexpr int D = sizeof(T) == 2 ? 4 : 2;  // steps of loads in flight, as registers allow
  const int c0 = (blockIdx.x * threads + threadIdx.x) * V;
  if (c0 >= C) return;
  const int q = blockIdx.y, b = q / nchunks, t0 = (q % nchunks) * kTimeChunk;
  const int t1 = L - t0 < kTimeChunk ? L : t0 + kTimeChunk, tend = t1 + K - 1;
  const T* xb = x + b * x_stride_b + c0;
  const T* gb = dout + b * L * C + c0;
  // wk[k]: tap k; win[j], gw[j]: rows t − (K−1) + j of x and g. Constant indices: registers.
  Acc wk[K][V], win[K][V] = {}, gw[K][V] = {}, bi[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    bi[v] = bias ? Acc(bias[c0 + v]) : Acc(0);
#pragma unroll
    for (int k = 0; k < K; ++k) wk[k][v] = Acc(w[(c0 + v) * K + k]);
  }
#pragma unroll
  for (int j = 1; j < K; ++j) {  // rows t0 − K + j, shifted into place by the first step
    const int s = t0 - K + j;
    load_piece<T, V>(win[j], s >= 0 ? xb + s * x_stride_l : xb, s >= 0);
  }
  P px[D], pg[D];
  const auto fetch = [&](int t, P& xo, P& go) {
    const bool in = t < L;
    xo = in ? *reinterpret_cast<const P*>(xb + t * x_stride_l) : P{};
    go = in ? *reinterpret_cast<const P*>(gb + t * C) : P{};
  };
#pragma unroll
  for (int j = 0; j < D; ++j) fetch(t0 + j, px[j], pg[j]);
  double aw[K][V] = {}, ab[V] = {};
  // One step; `checked`: t may be < K − 1 (rows before 0 in the window) or >= t1 (past the
  // slice, maybe past L).
  const auto step = [&](int t, auto checked) {
    constexpr bool kChecked = decltype(checked)::value;
    const bool in = !kChecked || t < L;
#pragma unroll
    for (int j = 0; j < K - 1; ++j)
#pragma unroll
      for (int v = 0; v < V; ++v) {
        win[j][v] = win[j + 1][v];
        gw[j][v] = gw[j + 1][v];
      }
    const P cx = px[0], cg = pg[0];
#pragma unroll
    for (int j = 0; j < D - 1; ++j) {
      px[j] = px[j + 1];
      pg[j] = pg[j + 1];
    }
    fetch(t + D, px[D - 1], pg[D - 1]);
#pragma unroll
    for (int v = 0; v < V; ++v) {
      win[K - 1][v] = Acc(cx.v[v]);
      Acc a = bi[v];
#pragma unroll
      for (int j = 0; j < K; ++j)  // tap j meets row t − (K−1) + j
        if (!kChecked || t - (K - 1) + j >= 0) a += wk[j][v] * win[j][v];
      gw[K - 1][v] = in ? Acc(conv_result<T>(a, true, true, Acc(cg.v[v]))) : Acc(0);
    }
    if (!kChecked || t < t1) {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const double gt = gw[K - 1][v];
        ab[v] += gt;
#pragma unroll
        for (int j = 0; j < K; ++j)
          if (!kChecked || t - (K - 1) + j >= 0) aw[j][v] += gt * double(win[j][v]);
      }
    }
    const int s = t - (K - 1);
    if (dx && s >= t0) {  // s < t1 <= L: the walk ends at t1 + K − 2
      P o;
#pragma unroll
      for (int v = 0; v < V; ++v) {
        Acc a = Acc(0);
#pragma unroll
        for (int k = 0; k < K; ++k)  // tap k meets g row s + K − 1 − k = t − k: slot K − 1 − k
          if (!kChecked || t - k < L) a += wk[k][v] * gw[K - 1 - k][v];
        o.v[v] = T(a);
      }
      *reinterpret_cast<P*>(dx + (b * L + s) * C + c0) = o;
    }
  };
  // [t0, ta): rows before 0 in the window; [ta, t1): no check holds (t1 <= L); [t1, tend): past
  // the slice.
  const int ta = min(max(t0, K - 1), t1);
  int t = t0;
  for (; t < ta; ++t) step(t, std::true_type{});
  for (; t < t1; ++t) step(t, std::false_type{});
  for (; t < tend; ++t) step(t, std::true_type{});
#pragma unroll
  for (int v = 0; v < V; ++v) {
    if (part_b) part_b[q * C + c0 + v] = ab[v];
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (part_w) part_w[(q * C + c0 + v) * K + k] = aw[k][v];
  }
}

// One recurrent step: the state row of (b, c) shifted left by one, x written into its last
// column, then out = bias + Σ_k w[c,k]·state[k] (bias first, taps in order, as the CPU step).
// Decoding runs it once a layer a token, and its time is its latency: with K <= kMaxTaps the
// window is loaded into registers with the taps, x and the bias before anything is stored, so
// the step waits on one round trip to memory (a loop over the state in memory waited on each
// store before the next load, and read the stored window back). kPacked (K = kMaxTaps, Mamba's
// 4, with the state and the weights aligned to whole rows): a thread's state row and tap row
// each move as one piece (Pack, 8 to 32 bytes) instead of one access an element, which a warp
// otherwise spreads over four times the memory instructions at a 16-byte stride.
// Launch: grid ceil(B·C / kThreads), block kThreads; thread i owns (b, c) = (i / C, i mod C):
// its K state values state[(b·C + c)·K ..] (contiguous (B, C, K)), x[b·x_ld + c] and
// out[b·out_ld + c]; nothing else.
template <class T, bool kPacked>
__global__ void __launch_bounds__(kThreads)
    conv_step_kernel(T* out, int64_t out_ld, T* state, const T* x, int64_t x_ld, const T* w, const T* bias,
                     int64_t B, int64_t C, int K, bool silu) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= B * C) return;
  using Acc = acc_t<T>;
  using Row = Pack<T, kMaxTaps>;
  const int64_t b = i / C, c = i % C;
  T* s = state + i * K;
  const T xn = x[b * x_ld + c];
  Acc acc = bias ? Acc(bias[c]) : Acc(0);
  if (kPacked || K <= kMaxTaps) {
    Row win;  // the new window: the old s[1 .. K−1], then x
    Acc wk[kMaxTaps];
    if constexpr (kPacked) {
      const Row old = *reinterpret_cast<const Row*>(s), taps = *reinterpret_cast<const Row*>(w + c * kMaxTaps);
#pragma unroll
      for (int k = 0; k < kMaxTaps; ++k) {
        win.v[k] = k + 1 < kMaxTaps ? old.v[k + 1] : xn;
        wk[k] = Acc(taps.v[k]);
      }
      *reinterpret_cast<Row*>(s) = win;
    } else {
#pragma unroll
      for (int k = 0; k < kMaxTaps; ++k) {
        win.v[k] = k + 1 < K ? s[k + 1] : xn;
        wk[k] = k < K ? Acc(w[c * K + k]) : Acc(0);
      }
#pragma unroll
      for (int k = 0; k < kMaxTaps; ++k)
        if (k < K) s[k] = win.v[k];
    }
#pragma unroll
    for (int k = 0; k < kMaxTaps; ++k)
      if (k < K) acc += wk[k] * Acc(win.v[k]);
  } else {
    for (int k = 0; k + 1 < K; ++k) s[k] = s[k + 1];
    s[K - 1] = xn;
    for (int k = 0; k < K; ++k) acc += Acc(w[c * K + k]) * Acc(s[k]);
  }
  out[b * out_ld + c] = conv_result<T>(acc, silu);
}

}  // namespace

template <class T>
void causal_conv1d_step_cuda(T* out, int64_t out_ld, T* state, const T* x, int64_t x_ld, const T* w, const T* bias,
                             int64_t B, int64_t C, int64_t K, bool silu) {
  const char* op = "causal_conv1d_step_cuda";
  SIMBA_CHECK(B >= 0 && C >= 1 && K >= 1 && K <= INT_MAX,
              op << ": sizes must be B >= 0, C >= 1, 1 <= K <= INT_MAX, got B=" << B << " C=" << C << " K=" << K);
  cuda_check_device_pointer(out, op, "out");
  cuda_check_device_pointer(state, op, "state");
  cuda_check_device_pointer(x, op, "x");
  cuda_check_device_pointer(w, op, "w");
  cuda_check_device_pointer(bias, op, "bias");
  if (B == 0) return;
  cudaStream_t stream = cuda_stream(cuda_current_device());
  const auto whole_rows = [](const T* p) { return reinterpret_cast<uintptr_t>(p) % sizeof(Pack<T, kMaxTaps>) == 0; };
  const auto kernel = K == kMaxTaps && whole_rows(state) && whole_rows(w) ? conv_step_kernel<T, true>
                                                                          : conv_step_kernel<T, false>;
  kernel<<<blocks_for(B * C), kThreads, 0, stream>>>(out, out_ld, state, x, x_ld, w, bias, B, C, int(K), silu);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

namespace {

// The device checks and the launch of causal_conv1d_forward_cuda (dsilu null) and
// causal_conv1d_silu_grad_cuda (dsilu the gradient of SiLU's output), after their argument checks.
template <class T>
void launch_conv_rows(const char* op, T* out, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t C,
                      int64_t K, int64_t x_stride_b, int64_t x_stride_l, bool silu, const T* dsilu) {
  SIMBA_CHECK(K <= INT_MAX, op << ": kernel size K=" << K << " is too large");
  cuda_check_device_pointer(out, op, "out");
  cuda_check_device_pointer(x, op, "x");
  cuda_check_device_pointer(w, op, "w");
  cuda_check_device_pointer(bias, op, "bias");
  cuda_check_device_pointer(dsilu, op, "dout");
  if (B * L == 0) return;
  cudaStream_t stream = cuda_stream(cuda_current_device());
  SIMBA_CHECK(B * L <= INT_MAX && blocks_for(C) <= 65535, op << ": B·L=" << B * L << " rows or C=" << C
                                                              << " channels exceed the CUDA grid limits");
  constexpr int V = kPiece<T>;
  if (K <= kMaxTaps && C % V == 0 && x_stride_b % V == 0 && x_stride_l % V == 0 && starts_piece(x) &&
      starts_piece(out) && starts_piece(dsilu)) {
    const int64_t tiles = B * ((L + kConvSteps - 1) / kConvSteps);
    const dim3 grid(unsigned(tiles), unsigned((C / V + kVecThreads - 1) / kVecThreads));
    const auto kernel = dsilu ? conv_forward_vec_kernel<T, V, true> : conv_forward_vec_kernel<T, V, false>;
    kernel<<<grid, kVecThreads, 0, stream>>>(out, x, w, bias, L, C, int(K), x_stride_b, x_stride_l, silu, dsilu);
  } else {
    conv_forward_kernel<T><<<dim3(unsigned(B * L), blocks_for(C)), kThreads, 0, stream>>>(
        out, x, w, bias, L, C, int(K), x_stride_b, x_stride_l, silu, dsilu);
  }
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

template <class T>
void causal_conv1d_forward_cuda(T* out, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t C,
                                int64_t K, int64_t x_stride_b, int64_t x_stride_l, bool silu) {
  const char* op = "causal_conv1d_forward_cuda";
  kernel_check::conv_forward(op, out, x, w, B, L, C, K);
  launch_conv_rows(op, out, x, w, bias, B, L, C, K, x_stride_b, x_stride_l, silu, static_cast<const T*>(nullptr));
}

template <class T>
void causal_conv1d_silu_grad_cuda(T* dv, const T* dout, const T* x, const T* w, const T* bias, int64_t B, int64_t L,
                                  int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l) {
  const char* op = "causal_conv1d_silu_grad_cuda";
  kernel_check::conv_silu_grad(op, dv, dout, x, w, B, L, C, K);
  launch_conv_rows(op, dv, x, w, bias, B, L, C, K, x_stride_b, x_stride_l, true, dout);
}

namespace {

// The device check of the backward launchers' pointers (null ones pass: not wanted, no bias).
void check_backward_pointers(const char* op, const void* dx, const void* dw, const void* dbias, const void* dout,
                             const void* x, const void* w, const void* bias) {
  for (const auto& [p, name] : {std::pair<const void*, const char*>{dx, "dx"}, {dw, "dw"}, {dbias, "dbias"},
                                {dout, "dout"}, {x, "x"}, {w, "w"}, {bias, "bias"}})
    cuda_check_device_pointer(p, op, name);
}

// dw and dbias of the backward kernels, from double partials over slices of kTimeChunk steps
// of one batch row (Q = B·nchunks slices): the partials' buffers (w: (Q, C, K), b: (Q, C), null
// where not wanted), freed (stream-ordered) with the object after the launches, and their
// fixed-order sum (cuda_reduce::launch_sum_partials) into dw and dbias.
struct SlicePartials {
  int64_t nchunks, Q, C, K;
  Storage scratch;
  double* w;
  double* b;

  SlicePartials(const char* op, int64_t B, int64_t L, int64_t C_, int64_t K_, bool want_w, bool want_b, int device)
      : nchunks((L + kTimeChunk - 1) / kTimeChunk),
        Q(slices(op, B, nchunks)),
        C(C_),
        K(K_),
        scratch(sizeof(double) * size_t(std::max<int64_t>(1, (want_w ? Q * C * K : 0) + (want_b ? Q * C : 0))),
                Device{DeviceType::CUDA, device}),
        w(want_w ? static_cast<double*>(scratch.data()) : nullptr),
        b(want_b ? static_cast<double*>(scratch.data()) + (want_w ? Q * C * K : 0) : nullptr) {}

  // B·nchunks, checked before anything is allocated for it: the launches' grid y.
  static int64_t slices(const char* op, int64_t B, int64_t nchunks) {
    SIMBA_CHECK(B * nchunks <= 65535, op << ": B·ceil(L/" << kTimeChunk << ")=" << B * nchunks
                                         << " exceeds the CUDA grid limit 65535 (shorten the batch or the sequence)");
    return B * nchunks;
  }

  template <class T>
  void sum(cudaStream_t stream, T* dw, T* dbias) const {
    if (dw) cuda_reduce::launch_sum_partials(stream, dw, w, Q, C * K);
    if (dbias) cuda_reduce::launch_sum_partials(stream, dbias, b, Q, C);
    SIMBA_CUDA_CHECK(cudaGetLastError());
  }
};

}  // namespace

template <class T>
void causal_conv1d_backward_cuda(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, int64_t B,
                                 int64_t L, int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l) {
  const char* op = "causal_conv1d_backward_cuda";
  kernel_check::conv_backward(op, dout, x, w, B, L, C, K);
  SIMBA_CHECK(K <= INT_MAX, op << ": kernel size K=" << K << " is too large");
  check_backward_pointers(op, dx, dw, dbias, dout, x, w, nullptr);
  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  if (dx && B * L > 0) {
    SIMBA_CHECK(B * L <= INT_MAX && blocks_for(C) <= 65535, op << ": B·L=" << B * L << " rows or C=" << C
                                                                << " channels exceed the CUDA grid limits");
    constexpr int V = kPiece<T>;
    if (K <= kMaxTaps && C % V == 0 && starts_piece(dx) && starts_piece(dout)) {
      const int64_t tiles = B * ((L + kConvSteps - 1) / kConvSteps);
      conv_backward_dx_vec_kernel<T, V><<<dim3(unsigned(tiles), unsigned((C / V + kVecThreads - 1) / kVecThreads)),
                                          kVecThreads, 0, stream>>>(dx, dout, w, L, C, int(K));
    } else {
      conv_backward_dx_kernel<T><<<dim3(unsigned(B * L), blocks_for(C)), kThreads, 0, stream>>>(dx, dout, w, L, C,
                                                                                             int(K));
    }
    SIMBA_CUDA_CHECK(cudaGetLastError());
  }
  if (!dw && !dbias) return;
  const SlicePartials part(op, B, L, C, K, dw != nullptr, dbias != nullptr, device);
  if (part.Q > 0) {
    conv_backward_partials_kernel<T><<<dim3(blocks_for(C), unsigned(part.Q)), kThreads, 0, stream>>>(
        part.w, part.b, dout, x, L, C, int(K), part.nchunks, x_stride_b, x_stride_l);
    SIMBA_CUDA_CHECK(cudaGetLastError());
  }
  part.sum(stream, dw, dbias);
}

template <class T>
void causal_conv1d_silu_backward_cuda(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, const T* bias,
                                      int64_t B, int64_t L, int64_t C, int64_t K, int64_t x_stride_b,
                                      int64_t x_stride_l) {
  const char* op = "causal_conv1d_silu_backward_cuda";
  kernel_check::conv_backward(op, dout, x, w, B, L, C, K);
  const int device = cuda_current_device();
  // The one-pass kernel's windows hold kMaxTaps taps and it indexes in 32 bits; past that, the
  // two kernels.
  const int64_t nchunks = (L + kTimeChunk - 1) / kTimeChunk;
  const bool fits = std::max({B * L * C, B * x_stride_b + L * x_stride_l + C, B * nchunks * C * K}) <= INT_MAX;
  if (K > kMaxTaps || !fits) {
    Storage dv(sizeof(T) * size_t(std::max<int64_t>(1, B * L * C)), Device{DeviceType::CUDA, device});
    causal_conv1d_silu_grad_cuda(static_cast<T*>(dv.data()), dout, x, w, bias, B, L, C, K, x_stride_b, x_stride_l);
    causal_conv1d_backward_cuda(dx, dw, dbias, static_cast<const T*>(dv.data()), x, w, B, L, C, K, x_stride_b,
                                x_stride_l);
    return;
  }
  check_backward_pointers(op, dx, dw, dbias, dout, x, w, bias);
  if (!dx && !dw && !dbias) return;
  cudaStream_t stream = cuda_stream(device);
  SIMBA_CHECK(blocks_for(C) <= 65535, op << ": C=" << C << " channels exceed the CUDA grid limit");
  const SlicePartials part(op, B, L, C, K, dw != nullptr, dbias != nullptr, device);
  if (part.Q > 0) {
    constexpr int V = 4;
    const bool vec = C % V == 0 && x_stride_b % V == 0 && x_stride_l % V == 0 &&
                     reinterpret_cast<uintptr_t>(x) % (V * sizeof(T)) == 0 &&
                     reinterpret_cast<uintptr_t>(dout) % (V * sizeof(T)) == 0 &&
                     reinterpret_cast<uintptr_t>(dx) % (V * sizeof(T)) == 0;
    const dim3 grid(vec ? unsigned((C / V + kVecThreads - 1) / kVecThreads) : blocks_for(C), unsigned(part.Q));
    const auto launch = [&](auto kernel) {
      kernel<<<grid, vec ? kVecThreads : kThreads, 0, stream>>>(dx, part.w, part.b, dout, x, w, bias, int(L), int(C),
                                                                 int(part.nchunks), int(x_stride_b), int(x_stride_l));
    };
    switch (K * (vec ? 1 : -1)) {
      case 1: launch(conv_silu_backward_kernel<T, V, 1>); break;
      case 2: launch(conv_silu_backward_kernel<T, V, 2>); break;
      case 3: launch(conv_silu_backward_kernel<T, V, 3>); break;
      case 4: launch(conv_silu_backward_kernel<T, V, 4>); break;
      case -1: launch(conv_silu_backward_kernel<T, 1, 1>); break;
      case -2: launch(conv_silu_backward_kernel<T, 1, 2>); break;
      case -3: launch(conv_silu_backward_kernel<T, 1, 3>); break;
      default: launch(conv_silu_backward_kernel<T, 1, 4>); break;
    }
    SIMBA_CUDA_CHECK(cudaGetLastError());
  }
  part.sum(stream, dw, dbias);
}

#define SIMBA_INSTANTIATE_CONV_CUDA(T)                                                                         \
  template void causal_conv1d_forward_cuda<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                              int64_t, int64_t, bool);                                              \
  template void causal_conv1d_backward_cuda<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                               int64_t, int64_t, int64_t);                                          \
  template void causal_conv1d_silu_grad_cuda<T>(T*, const T*, const T*, const T*, const T*, int64_t, int64_t,       \
                                                int64_t, int64_t, int64_t, int64_t);                                \
  template void causal_conv1d_silu_backward_cuda<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int64_t,    \
                                                    int64_t, int64_t, int64_t, int64_t, int64_t);                   \
  template void causal_conv1d_step_cuda<T>(T*, int64_t, T*, const T*, int64_t, const T*, const T*, int64_t, int64_t, \
                                           int64_t, bool);
SIMBA_INSTANTIATE_CONV_CUDA(float)
SIMBA_INSTANTIATE_CONV_CUDA(double)
SIMBA_INSTANTIATE_CONV_CUDA(bfloat16)
#undef SIMBA_INSTANTIATE_CONV_CUDA

}  // namespace simba
