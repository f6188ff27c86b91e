// ssm/selective_scan.cpp: the selective-scan kernels declared in ssm/selective_scan.h: the
// sequential reference (the spec) and the fast CPU path, forward and backward.
//
// Backward math. Let dy_t = dout_t·silu(z_t) (dout_t without z) and let G_t[d,n] = ∂ℓ/∂h_t be
// the total gradient reaching state h_t through every later step. From (1)-(4) of the header:
//   G_t     = C_t[n]·dy_t[d] + a_{t+1}·G_{t+1},   a_L·G_L := dh_last (0 if absent)     (5)
//   dC_t[n] = Σ_d dy_t[d]·h_t[d,n]                                                   (6)
//   dB_t[n] = Σ_d G_t[d,n]·Δ_t[d]·u_t[d]                                              (7)
//   du_t[d] = Σ_n G_t[d,n]·Δ_t[d]·B_t[n] + Dskip[d]·dy_t[d]                           (8)
//   dΔ_t[d] = Σ_n G_t[d,n]·(A[d,n]·a_t[d,n]·h_{t-1}[d,n] + B_t[n]·u_t[d])             (9)
//   dA[d,n] = Σ_{b,t} G_t[d,n]·Δ_t[d]·a_t[d,n]·h_{t-1}[d,n]                           (10)
//   dD[d]   = Σ_{b,t} dy_t[d]·u_t[d]                                                  (11)
//   dz_t[d] = dout_t[d]·y_t[d]·σ(z)·(1 + z·(1 − σ(z))),  the derivative of silu     (12)
//   dh0     = a_0·G_0                                                                  (13)
// (9) and (10) use ∂a_t/∂Δ_t = A·a_t and ∂a_t/∂A = Δ_t·a_t from (1).
//
// Fast path design.
// - Work unit = (batch, block of W channels) in the forward, (batch, group of consecutive
//   blocks) in the backward. Channels are contiguous in every (B, L, Di) row, so each time
//   step is a few contiguous loads, and a block's state h[n][c] (N·W values) stays in L1/L2.
//   Loops over c have the compile-time trip count W and `omp simd`, so exp (1) runs as the
//   vectorised polynomial exp_fast (tensor/vector_math.h). A partial last block is padded with
//   Δ = u = dout = 0, which keeps a = 1 and h = G = 0 there.
// - Backward never stores all L states: a first sweep keeps h at every kChunk-th step, then
//   chunks are processed last to first, each recomputing its kChunk states (and a_t) from its
//   saved start state before running (5)-(13) backwards through it. Scratch per thread is
//   O((L/kChunk + kChunk)·N·W).
// - Determinism: dB, dC (summed over channels) and dA, dD (summed over batch) are written to
//   per-unit partial buffers and then summed in a fixed order. A unit's result depends only
//   on its inputs (per-thread scratch is re-initialised per unit) and the grouping only on
//   the sizes, so results are bit-identical run to run and for any number of threads, and
//   units can be scheduled dynamically (which absorbs cores shared with other work).
#include "ssm/selective_scan.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ssm/selective_scan_check.h"
#include "tensor/half_types.h"
#include "tensor/storage.h"
#include "tensor/vector_math.h"

namespace simba {
namespace {

using scan_check::check_grads;
using scan_check::check_inputs;
using scan_check::check_rows;

// Channels per work unit (W below). The forward wants a small state block that lives in L1;
// the backward sums dB, dC over the block's channels at every (t, n), and a wider block
// spreads the horizontal part of that sum over more channels.
constexpr int64_t kForwardBlock = 32;
constexpr int64_t kBackwardBlock = 128;
constexpr int64_t kChunk = 32;  // time steps per backward recompute chunk
static_assert(kChunk % kScanCheckpointEvery == 0, "a chunk starts at a checkpoint");
// The backward splits each batch row's channels into enough groups to give at least this
// many work units, so small batches still use every core (the split depends on sizes only).
constexpr int64_t kMinBackwardUnits = 32;

template <class T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// ---- fast-path building blocks -------------------------------------------------------------

// Copies the nc valid channels of a row segment into a W-wide buffer, zero padded.
template <int64_t W, class T>
inline void load_block(T* dst, const T* src, int64_t nc) {
  if (nc == W) {
#pragma omp simd
    for (int64_t c = 0; c < W; ++c) dst[c] = src[c];
    return;
  }
  for (int64_t c = 0; c < nc; ++c) dst[c] = src[c];
  for (int64_t c = nc; c < W; ++c) dst[c] = T(0);
}

// Writes the nc valid channels of a W-wide buffer to a row segment.
template <int64_t W, class T>
inline void store_block(T* dst, const T* src, int64_t nc) {
  if (nc == W) {
#pragma omp simd
    for (int64_t c = 0; c < W; ++c) dst[c] = src[c];
    return;
  }
  for (int64_t c = 0; c < nc; ++c) dst[c] = src[c];
}

// Transposes rows [c0, c0+nc) of a (Di, N) or (·, Di, N) block into [n][c] order (the
// vectorised layout), zero padded; src == nullptr gives zeros (absent h0 / dh_last).
template <int64_t W, class T>
void load_nc(T* dst, const T* src, int64_t nc, int64_t N) {
  std::fill(dst, dst + N * W, T(0));
  if (!src) return;
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t n = 0; n < N; ++n) dst[n * W + c] = src[c * N + n];
}

// The inverse of load_nc for the nc valid channels.
template <int64_t W, class T>
void store_nc(T* dst, const T* src, int64_t nc, int64_t N) {
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t n = 0; n < N; ++n) dst[c * N + n] = src[n * W + c];
}

// One time step of (1)-(2) for a channel block: h_out = a·h_in + Δ·B_t·u with a = exp(Δ·A).
// dx = Δ·u. kAccumulateY also adds C_t·h_out into y (3); kStoreA keeps a for the backward.
// h_out may equal h_in.
template <int64_t W, bool kAccumulateY, bool kStoreA, class T>
inline void advance_state(T* h_out, T* a_out, T* y, const T* h_in, const T* At, const T* dt,
                          const T* dx, const T* Bt, const T* Ct, int64_t N) {
  for (int64_t n = 0; n < N; ++n) {
    const T bn = Bt[n];
    const T* An = At + n * W;
    const T* hi = h_in + n * W;
    T* ho = h_out + n * W;
    if constexpr (kAccumulateY) {
      const T cn = Ct[n];
#pragma omp simd
      for (int64_t c = 0; c < W; ++c) {
        const T h = exp_fast(dt[c] * An[c]) * hi[c] + dx[c] * bn;
        ho[c] = h;
        y[c] += cn * h;
      }
    } else if constexpr (kStoreA) {
      T* an = a_out + n * W;
#pragma omp simd
      for (int64_t c = 0; c < W; ++c) {
        const T a = exp_fast(dt[c] * An[c]);
        an[c] = a;
        ho[c] = a * hi[c] + dx[c] * bn;
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < W; ++c) ho[c] = exp_fast(dt[c] * An[c]) * hi[c] + dx[c] * bn;
    }
  }
}

// Loads Δ_t and u_t of one block and forms Δ·u.
template <int64_t W, class T>
inline void load_step(T* dt, T* x, T* dx, SeqView<const T> delta, SeqView<const T> u, int64_t r,
                      int64_t c0, int64_t nc) {
  load_block<W>(dt, delta.p + r * delta.ld + c0, nc);
  load_block<W>(x, u.p + r * u.ld + c0, nc);
#pragma omp simd
  for (int64_t c = 0; c < W; ++c) dx[c] = dt[c] * x[c];
}


// ---- bfloat16 storage ----------------------------------------------------------------------
// A bfloat16 scan computes in float (acc_t): every operand is widened once into a dense float
// buffer (exact), the float kernel runs, and every output is rounded once. The checks run on
// the bfloat16 views first, so a bad call fails before anything is read.

// `rows` rows of `width` elements of v as dense float rows; empty for an absent operand.
std::vector<float> widen_rows(SeqView<const bfloat16> v, int64_t rows, int64_t width) {
  std::vector<float> w;
  if (!v.p) return w;
  w.resize(rows * width);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c) w[r * width + c] = v.p[r * v.ld + c];
  return w;
}

std::vector<float> widen(const bfloat16* p, int64_t n) { return widen_rows({p, n}, 1, n); }

SeqView<const float> rows_view(const std::vector<float>& w, int64_t width) {
  return {w.empty() ? nullptr : w.data(), width};
}

// The buffer's data, or nullptr for an absent operand (const or not, as the vector).
template <class V>
auto ptr(V& w) {
  return w.empty() ? nullptr : w.data();
}

// A float buffer for an output of `rows` x `width` that is wanted (want) or not (empty).
std::vector<float> out_buffer(bool want, int64_t rows, int64_t width) {
  return std::vector<float>(want ? rows * width : 0);
}

SeqView<float> out_view(std::vector<float>& w, int64_t width) { return {w.empty() ? nullptr : w.data(), width}; }

// Rounds the float rows back into v (nothing for an absent output).
void narrow_rows(SeqView<bfloat16> v, const std::vector<float>& w, int64_t rows, int64_t width) {
  if (!v.p) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c) v.p[r * v.ld + c] = bfloat16(w[r * width + c]);
}

void narrow(bfloat16* p, const std::vector<float>& w) { narrow_rows({p, int64_t(w.size())}, w, 1, int64_t(w.size())); }

template <class Fwd>
void forward_in_float(Fwd fwd, const char* op, SeqView<bfloat16> out, bfloat16* h_last,
                      SeqView<const bfloat16> u, SeqView<const bfloat16> delta, const bfloat16* A,
                      SeqView<const bfloat16> Bm, SeqView<const bfloat16> Cm, const bfloat16* Dskip,
                      SeqView<const bfloat16> z, const bfloat16* h0, int64_t B, int64_t L, int64_t Di,
                      int64_t N, float* checkpoints) {
  check_inputs(op, u, delta, A, Bm, Cm, z, B, L, Di, N);
  check_rows(op, "out", out, Di, "Di");
  const int64_t R = B * L;
  const auto fu = widen_rows(u, R, Di), fdelta = widen_rows(delta, R, Di), fz = widen_rows(z, R, Di);
  const auto fB = widen_rows(Bm, R, N), fC = widen_rows(Cm, R, N);
  const auto fA = widen(A, Di * N), fD = widen(Dskip, Di), fh0 = widen(h0, B * Di * N);
  auto fout = out_buffer(true, R, Di), fh = out_buffer(h_last != nullptr, B * Di, N);
  fwd(out_view(fout, Di), ptr(fh), rows_view(fu, Di), rows_view(fdelta, Di), ptr(fA), rows_view(fB, N),
      rows_view(fC, N), ptr(fD), rows_view(fz, Di), ptr(fh0), B, L, Di, N, checkpoints);
  narrow_rows(out, fout, R, Di);
  narrow(h_last, fh);  // after h0 was read: h_last may be h0
}

template <class Bwd>
void backward_in_float(Bwd bwd, const char* op, SeqView<bfloat16> du, SeqView<bfloat16> ddelta,
                       bfloat16* dA, SeqView<bfloat16> dB, SeqView<bfloat16> dC, bfloat16* dD,
                       SeqView<bfloat16> dz, bfloat16* dh0, SeqView<const bfloat16> dout,
                       const bfloat16* dh_last, SeqView<const bfloat16> u,
                       SeqView<const bfloat16> delta, const bfloat16* A, SeqView<const bfloat16> Bm,
                       SeqView<const bfloat16> Cm, const bfloat16* Dskip, SeqView<const bfloat16> z,
                       const bfloat16* h0, int64_t B, int64_t L, int64_t Di, int64_t N,
                       const float* checkpoints) {
  check_inputs(op, u, delta, A, Bm, Cm, z, B, L, Di, N);
  check_grads(op, du, ddelta, dA, dB, dC, dD, dz, dout, Dskip, z, Di, N);
  const int64_t R = B * L;
  const auto fu = widen_rows(u, R, Di), fdelta = widen_rows(delta, R, Di), fz = widen_rows(z, R, Di);
  const auto fdout = widen_rows(dout, R, Di), fB = widen_rows(Bm, R, N), fC = widen_rows(Cm, R, N);
  const auto fA = widen(A, Di * N), fD = widen(Dskip, Di), fh0 = widen(h0, B * Di * N);
  const auto fdh_last = widen(dh_last, B * Di * N);
  auto fdu = out_buffer(true, R, Di), fddelta = out_buffer(true, R, Di), fdz = out_buffer(dz.p != nullptr, R, Di);
  auto fdB = out_buffer(true, R, N), fdC = out_buffer(true, R, N), fdA = out_buffer(true, Di, N);
  auto fdD = out_buffer(dD != nullptr, 1, Di), fdh0 = out_buffer(dh0 != nullptr, B * Di, N);
  bwd(out_view(fdu, Di), out_view(fddelta, Di), ptr(fdA), out_view(fdB, N), out_view(fdC, N), ptr(fdD),
      out_view(fdz, Di), ptr(fdh0), rows_view(fdout, Di), ptr(fdh_last), rows_view(fu, Di),
      rows_view(fdelta, Di), ptr(fA), rows_view(fB, N), rows_view(fC, N), ptr(fD), rows_view(fz, Di),
      ptr(fh0), B, L, Di, N, checkpoints);
  narrow_rows(du, fdu, R, Di);
  narrow_rows(ddelta, fddelta, R, Di);
  narrow_rows(dz, fdz, R, Di);
  narrow_rows(dB, fdB, R, N);
  narrow_rows(dC, fdC, R, N);
  narrow(dA, fdA);
  narrow(dD, fdD);
  narrow(dh0, fdh0);
}

}  // namespace

// ---- reference -----------------------------------------------------------------------------

template <class T>
void selective_scan_forward_ref(SeqView<T> out, T* h_last, SeqView<const T> u,
                                SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                                SeqView<const T> Cm, const T* Dskip, SeqView<const T> z,
                                const T* h0, int64_t B, int64_t L, int64_t Di, int64_t N,
                                acc_t<T>* checkpoints) {
  const char* op = "selective_scan_forward_ref";
  if constexpr (std::is_same_v<T, bfloat16>) {
    forward_in_float(selective_scan_forward_ref<float>, op, out, h_last, u, delta, A, Bm, Cm, Dskip, z, h0, B, L, Di, N,
                     checkpoints);
  } else {
    check_inputs(op, u, delta, A, Bm, Cm, z, B, L, Di, N);
    check_rows(op, "out", out, Di, "Di");
    const int64_t nck = scan_checkpoint_count(L);
    std::vector<T> h(N);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t d = 0; d < Di; ++d) {
        for (int64_t n = 0; n < N; ++n) h[n] = h0 ? h0[(b * Di + d) * N + n] : T(0);
        for (int64_t t = 0; t < L; ++t) {
          const int64_t r = b * L + t;
          if (checkpoints && t % kScanCheckpointEvery == 0)
            for (int64_t n = 0; n < N; ++n)
              checkpoints[((b * nck + t / kScanCheckpointEvery) * Di + d) * N + n] = h[n];
          const T dt = delta.p[r * delta.ld + d], x = u.p[r * u.ld + d];
          T y = 0;
          for (int64_t n = 0; n < N; ++n) {
            h[n] = std::exp(dt * A[d * N + n]) * h[n] + dt * Bm.p[r * Bm.ld + n] * x;  // (1)-(2)
            y += Cm.p[r * Cm.ld + n] * h[n];                                           // (3)
          }
          if (Dskip) y += Dskip[d] * x;
          if (z.p) {
            const T zv = z.p[r * z.ld + d];
            y *= zv * sigmoid(zv);  // (4)
          }
          out.p[r * out.ld + d] = y;
        }
        if (h_last)
          for (int64_t n = 0; n < N; ++n) h_last[(b * Di + d) * N + n] = h[n];
      }
    }
  }
}

template <class T>
void selective_scan_backward_ref(SeqView<T> du, SeqView<T> ddelta, T* dA, SeqView<T> dB,
                                 SeqView<T> dC, T* dD, SeqView<T> dz, T* dh0, SeqView<const T> dout,
                                 const T* dh_last, SeqView<const T> u, SeqView<const T> delta,
                                 const T* A, SeqView<const T> Bm, SeqView<const T> Cm,
                                 const T* Dskip, SeqView<const T> z, const T* h0, int64_t B,
                                 int64_t L, int64_t Di, int64_t N,
                                 const acc_t<T>* checkpoints) {
  const char* op = "selective_scan_backward_ref";
  if constexpr (std::is_same_v<T, bfloat16>) {
    backward_in_float(selective_scan_backward_ref<float>, op, du, ddelta, dA, dB, dC, dD, dz, dh0, dout, dh_last, u, delta, A, Bm, Cm, Dskip, z, h0, B, L, Di, N,
                      checkpoints);
  } else {
    (void)checkpoints;  // the specification recomputes every state
    check_inputs(op, u, delta, A, Bm, Cm, z, B, L, Di, N);
    check_grads(op, du, ddelta, dA, dB, dC, dD, dz, dout, Dskip, z, Di, N);
    std::fill(dA, dA + Di * N, T(0));
    if (dD) std::fill(dD, dD + Di, T(0));
    for (int64_t r = 0; r < B * L; ++r)
      for (int64_t n = 0; n < N; ++n) dB.p[r * dB.ld + n] = dC.p[r * dC.ld + n] = T(0);

    std::vector<T> hs((L + 1) * N);  // hs[(t+1)·N + n] = h_t[n], hs[n] = h_{-1}[n]
    std::vector<T> G(N);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t d = 0; d < Di; ++d) {
        for (int64_t n = 0; n < N; ++n) hs[n] = h0 ? h0[(b * Di + d) * N + n] : T(0);
        for (int64_t t = 0; t < L; ++t) {
          const int64_t r = b * L + t;
          const T dt = delta.p[r * delta.ld + d], x = u.p[r * u.ld + d];
          for (int64_t n = 0; n < N; ++n)
            hs[(t + 1) * N + n] =
                std::exp(dt * A[d * N + n]) * hs[t * N + n] + dt * Bm.p[r * Bm.ld + n] * x;
        }
        // G holds a_{t+1}·G_{t+1} on entry to step t, the second term of (5).
        for (int64_t n = 0; n < N; ++n) G[n] = dh_last ? dh_last[(b * Di + d) * N + n] : T(0);
        for (int64_t t = L - 1; t >= 0; --t) {
          const int64_t r = b * L + t;
          const T dt = delta.p[r * delta.ld + d], x = u.p[r * u.ld + d];
          const T go = dout.p[r * dout.ld + d];
          const T* ht = &hs[(t + 1) * N];
          const T* hp = &hs[t * N];
          T dy = go;
          if (z.p) {
            const T zv = z.p[r * z.ld + d], s = sigmoid(zv);
            dy = go * zv * s;
            if (dz.p) {
              T y = Dskip ? Dskip[d] * x : T(0);
              for (int64_t n = 0; n < N; ++n) y += Cm.p[r * Cm.ld + n] * ht[n];
              dz.p[r * dz.ld + d] = go * y * s * (T(1) + zv * (T(1) - s));  // (12)
            }
          }
          if (dD) dD[d] += dy * x;  // (11)
          T gu = Dskip ? Dskip[d] * dy : T(0);
          T gdelta = 0;
          for (int64_t n = 0; n < N; ++n) {
            const T bn = Bm.p[r * Bm.ld + n], cn = Cm.p[r * Cm.ld + n];
            const T a = std::exp(dt * A[d * N + n]);
            const T g = G[n] + cn * dy;                         // (5)
            dC.p[r * dC.ld + n] += dy * ht[n];                  // (6)
            dB.p[r * dB.ld + n] += g * dt * x;                  // (7)
            gu += g * dt * bn;                                  // (8)
            gdelta += g * (A[d * N + n] * a * hp[n] + bn * x);  // (9)
            dA[d * N + n] += g * dt * a * hp[n];                // (10)
            G[n] = g * a;
          }
          du.p[r * du.ld + d] = gu;
          ddelta.p[r * ddelta.ld + d] = gdelta;
        }
        if (dh0)
          for (int64_t n = 0; n < N; ++n) dh0[(b * Di + d) * N + n] = G[n];  // (13)
      }
    }
  }
}

// ---- fast path -----------------------------------------------------------------------------

template <class T>
void selective_scan_forward_cpu(SeqView<T> out, T* h_last, SeqView<const T> u,
                                SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                                SeqView<const T> Cm, const T* Dskip, SeqView<const T> z,
                                const T* h0, int64_t B, int64_t L, int64_t Di, int64_t N,
                                acc_t<T>* checkpoints) {
  const char* op = "selective_scan_forward_cpu";
  if constexpr (std::is_same_v<T, bfloat16>) {
    forward_in_float(selective_scan_forward_cpu<float>, op, out, h_last, u, delta, A, Bm, Cm, Dskip, z, h0, B, L, Di, N,
                     checkpoints);
  } else {
    constexpr int64_t W = kForwardBlock;
    check_inputs(op, u, delta, A, Bm, Cm, z, B, L, Di, N);
    check_rows(op, "out", out, Di, "Di");
    const int64_t nblk = (Di + W - 1) / W, nck = scan_checkpoint_count(L);
    const int64_t units = B * nblk;
    // Per thread: At, h ([n][c] each) and the rows D, Δ, u, Δ·u, y, z.
    const int64_t per_thread = (2 * N + 6) * W;
    Storage scratch(sizeof(T) * per_thread * max_threads(), cpu());

  #pragma omp parallel
    {
      T* At = static_cast<T*>(scratch.data()) + per_thread * thread_id();
      T* h = At + N * W;
      T* Dv = h + N * W;
      T* dt = Dv + W;
      T* x = dt + W;
      T* dx = x + W;
      T* y = dx + W;
      T* zz = y + W;
  #pragma omp for schedule(dynamic)
      for (int64_t unit = 0; unit < units; ++unit) {
        const int64_t b = unit / nblk, c0 = unit % nblk * W;
        const int64_t nc = std::min(W, Di - c0);
        load_nc<W>(At, A + c0 * N, nc, N);
        load_nc<W>(h, h0 ? h0 + (b * Di + c0) * N : nullptr, nc, N);
        if (Dskip)
          load_block<W>(Dv, Dskip + c0, nc);
        else
          std::fill(Dv, Dv + W, T(0));
        for (int64_t t = 0; t < L; ++t) {
          const int64_t r = b * L + t;
          if (checkpoints && t % kScanCheckpointEvery == 0)
            store_nc<W>(checkpoints + ((b * nck + t / kScanCheckpointEvery) * Di + c0) * N, h, nc, N);
          load_step<W>(dt, x, dx, delta, u, r, c0, nc);
  #pragma omp simd
          for (int64_t c = 0; c < W; ++c) y[c] = Dv[c] * x[c];
          advance_state<W, true, false, T>(h, nullptr, y, h, At, dt, dx, Bm.p + r * Bm.ld,
                                           Cm.p + r * Cm.ld, N);
          if (z.p) {
            load_block<W>(zz, z.p + r * z.ld + c0, nc);
  #pragma omp simd
            for (int64_t c = 0; c < W; ++c) y[c] *= zz[c] / (T(1) + exp_fast(-zz[c]));  // (4)
          }
          store_block<W>(out.p + r * out.ld + c0, y, nc);
        }
        if (h_last) store_nc<W>(h_last + (b * Di + c0) * N, h, nc, N);
      }
    }
  }
}

template <class T>
void selective_scan_backward_cpu(SeqView<T> du, SeqView<T> ddelta, T* dA, SeqView<T> dB,
                                 SeqView<T> dC, T* dD, SeqView<T> dz, T* dh0, SeqView<const T> dout,
                                 const T* dh_last, SeqView<const T> u, SeqView<const T> delta,
                                 const T* A, SeqView<const T> Bm, SeqView<const T> Cm,
                                 const T* Dskip, SeqView<const T> z, const T* h0, int64_t B,
                                 int64_t L, int64_t Di, int64_t N,
                                 const acc_t<T>* checkpoints) {
  const char* op = "selective_scan_backward_cpu";
  if constexpr (std::is_same_v<T, bfloat16>) {
    backward_in_float(selective_scan_backward_cpu<float>, op, du, ddelta, dA, dB, dC, dD, dz, dh0, dout, dh_last, u, delta, A, Bm, Cm, Dskip, z, h0, B, L, Di, N,
                      checkpoints);
  } else {
    constexpr int64_t W = kBackwardBlock;
    check_inputs(op, u, delta, A, Bm, Cm, z, B, L, Di, N);
    check_grads(op, du, ddelta, dA, dB, dC, dD, dz, dout, Dskip, z, Di, N);
    const int64_t nblk = (Di + W - 1) / W;
    // Units are (batch, group of consecutive channel blocks); the grouping is fixed by the sizes.
    const int64_t groups = std::min(nblk, std::max<int64_t>(1, (kMinBackwardUnits + B - 1) / B));
    const int64_t blk_per_group = (nblk + groups - 1) / groups;
    const int64_t units = B * groups;
    const int64_t nchunks = (L + kChunk - 1) / kChunk, nck = scan_checkpoint_count(L);

    // Partial sums, reduced in a fixed order at the end: dB/dC per (group, b, t, n) summed over
    // groups, dA/dD per (b, d, n) summed over the batch.
    Storage partial(sizeof(T) * (2 * groups * B * L * N + B * Di * N + B * Di), cpu());
    T* dBp = static_cast<T*>(partial.data());
    T* dCp = dBp + groups * B * L * N;
    T* dAp = dCp + groups * B * L * N;
    T* dDp = dAp + B * Di * N;

    // Per thread, [n][c] arrays: At, G, dA accumulator, chunk start states (nchunks), chunk
    // states h_{t0-1..t1-1} (kChunk+1) and a_t (kChunk); the chunk's rows Δ, u, Δ·u (kChunk
    // each, kept from the recompute for the reverse pass); rows: D, dout, z, σ(z), dy, y, du,
    // dΔ, dD accumulator, and Δ, u, Δ·u for the sweep.
    const int64_t nc_arr = N * W;
    const int64_t per_thread = nc_arr * (3 + nchunks + 2 * kChunk + 1) + (3 * kChunk + 12) * W;
    Storage scratch(sizeof(T) * per_thread * max_threads(), cpu());
    const bool has_z = z.p != nullptr;

  #pragma omp parallel
    {
      T* At = static_cast<T*>(scratch.data()) + per_thread * thread_id();
      T* G = At + nc_arr;
      T* dAacc = G + nc_arr;
      T* hsave = dAacc + nc_arr;
      T* hbuf = hsave + nchunks * nc_arr;
      T* abuf = hbuf + (kChunk + 1) * nc_arr;
      T* dtbuf = abuf + kChunk * nc_arr;
      T* xbuf = dtbuf + kChunk * W;
      T* dxbuf = xbuf + kChunk * W;
      T* Dv = dxbuf + kChunk * W;
      T* dt = Dv + W;
      T* x = dt + W;
      T* dx = x + W;
      T* go = dx + W;
      T* zz = go + W;
      T* sg = zz + W;
      T* dy = sg + W;
      T* y = dy + W;
      T* gu = y + W;
      T* gdelta = gu + W;
      T* dDacc = gdelta + W;

  #pragma omp for schedule(dynamic)
      for (int64_t unit = 0; unit < units; ++unit) {
        const int64_t b = unit / groups, g = unit % groups;
        T* dBrows = dBp + (g * B + b) * L * N;
        T* dCrows = dCp + (g * B + b) * L * N;
        std::fill(dBrows, dBrows + L * N, T(0));
        std::fill(dCrows, dCrows + L * N, T(0));
        const int64_t blk_end = std::min(nblk, (g + 1) * blk_per_group);
        for (int64_t blk = g * blk_per_group; blk < blk_end; ++blk) {
          const int64_t c0 = blk * W, nc = std::min(W, Di - c0);
          load_nc<W>(At, A + c0 * N, nc, N);
          if (Dskip)
            load_block<W>(Dv, Dskip + c0, nc);
          else
            std::fill(Dv, Dv + W, T(0));
          std::fill(dAacc, dAacc + nc_arr, T(0));
          std::fill(dDacc, dDacc + W, T(0));

          // The state entering each chunk: the forward's checkpoints, or a sweep (the last chunk
          // is recomputed below anyway).
          if (checkpoints) {
            for (int64_t k = 0; k < nchunks; ++k)
              load_nc<W>(hsave + k * nc_arr,
                         checkpoints + ((b * nck + k * (kChunk / kScanCheckpointEvery)) * Di + c0) * N, nc, N);
          } else {
            load_nc<W>(hsave, h0 ? h0 + (b * Di + c0) * N : nullptr, nc, N);
            for (int64_t k = 1; k < nchunks; ++k) {
              T* hk = hsave + k * nc_arr;
              std::copy(hk - nc_arr, hk, hk);
              for (int64_t t = (k - 1) * kChunk; t < k * kChunk; ++t) {
                const int64_t r = b * L + t;
                load_step<W>(dt, x, dx, delta, u, r, c0, nc);
                advance_state<W, false, false, T>(hk, nullptr, nullptr, hk, At, dt, dx,
                                                  Bm.p + r * Bm.ld, nullptr, N);
              }
            }
          }

          load_nc<W>(G, dh_last ? dh_last + (b * Di + c0) * N : nullptr, nc, N);
          for (int64_t k = nchunks - 1; k >= 0; --k) {
            const int64_t t0 = k * kChunk, t1 = std::min(L, t0 + kChunk);
            std::copy(hsave + k * nc_arr, hsave + (k + 1) * nc_arr, hbuf);
            for (int64_t t = t0; t < t1; ++t) {
              const int64_t r = b * L + t, i = t - t0;
              load_step<W>(dtbuf + i * W, xbuf + i * W, dxbuf + i * W, delta, u, r, c0, nc);
              advance_state<W, false, true, T>(hbuf + (i + 1) * nc_arr, abuf + i * nc_arr, nullptr,
                                               hbuf + i * nc_arr, At, dtbuf + i * W, dxbuf + i * W,
                                               Bm.p + r * Bm.ld, nullptr, N);
            }
            for (int64_t t = t1 - 1; t >= t0; --t) {
              const int64_t r = b * L + t, i = t - t0;
              const T* dtr = dtbuf + i * W;
              const T* xr = xbuf + i * W;
              const T* dxr = dxbuf + i * W;
              load_block<W>(go, dout.p + r * dout.ld + c0, nc);
              if (has_z) {
                load_block<W>(zz, z.p + r * z.ld + c0, nc);
  #pragma omp simd
                for (int64_t c = 0; c < W; ++c) {
                  sg[c] = T(1) / (T(1) + exp_fast(-zz[c]));
                  dy[c] = go[c] * zz[c] * sg[c];
                }
              } else {
                std::copy(go, go + W, dy);
              }
  #pragma omp simd
              for (int64_t c = 0; c < W; ++c) {
                y[c] = Dv[c] * xr[c];
                gu[c] = Dv[c] * dy[c];  // second term of (8)
                gdelta[c] = T(0);
                dDacc[c] += dy[c] * xr[c];  // (11)
              }
              const T* Bt = Bm.p + r * Bm.ld;
              const T* Ct = Cm.p + r * Cm.ld;
              T* dBt = dBrows + t * N;
              T* dCt = dCrows + t * N;
              for (int64_t n = 0; n < N; ++n) {
                const T bn = Bt[n], cn = Ct[n];
                const T* ht = hbuf + (i + 1) * nc_arr + n * W;
                const T* hp = hbuf + i * nc_arr + n * W;
                const T* an = abuf + i * nc_arr + n * W;
                const T* Atn = At + n * W;
                T* Gn = G + n * W;
                T* dAn = dAacc + n * W;
                T sB = 0, sC = 0;
  #pragma omp simd reduction(+ : sB, sC)
                for (int64_t c = 0; c < W; ++c) {
                  const T gt = Gn[c] + cn * dy[c];  // (5)
                  y[c] += cn * ht[c];               // (3), for (12)
                  sC += dy[c] * ht[c];              // (6)
                  sB += gt * dxr[c];                // (7)
                  gu[c] += gt * dtr[c] * bn;        // (8)
                  const T w = gt * an[c] * hp[c];
                  gdelta[c] += w * Atn[c] + gt * bn * xr[c];  // (9)
                  dAn[c] += w * dtr[c];                       // (10)
                  Gn[c] = gt * an[c];
                }
                dBt[n] += sB;
                dCt[n] += sC;
              }
              store_block<W>(du.p + r * du.ld + c0, gu, nc);
              store_block<W>(ddelta.p + r * ddelta.ld + c0, gdelta, nc);
              if (dz.p) {
  #pragma omp simd
                for (int64_t c = 0; c < W; ++c)
                  y[c] = go[c] * y[c] * sg[c] * (T(1) + zz[c] * (T(1) - sg[c]));  // (12)
                store_block<W>(dz.p + r * dz.ld + c0, y, nc);
              }
            }
          }
          if (dh0) store_nc<W>(dh0 + (b * Di + c0) * N, G, nc, N);  // (13)
          store_nc<W>(dAp + (b * Di + c0) * N, dAacc, nc, N);
          std::copy(dDacc, dDacc + nc, dDp + b * Di + c0);
        }
      }

      // Fixed-order reductions (the implicit barrier above makes every partial complete).
  #pragma omp for schedule(static)
      for (int64_t r = 0; r < B * L; ++r) {
        for (int64_t n = 0; n < N; ++n) {
          T sB = 0, sC = 0;
          for (int64_t gi = 0; gi < groups; ++gi) {
            sB += dBp[(gi * B * L + r) * N + n];
            sC += dCp[(gi * B * L + r) * N + n];
          }
          dB.p[r * dB.ld + n] = sB;
          dC.p[r * dC.ld + n] = sC;
        }
      }
  #pragma omp for schedule(static)
      for (int64_t e = 0; e < Di * N; ++e) {
        T s = 0;
        for (int64_t b = 0; b < B; ++b) s += dAp[b * Di * N + e];
        dA[e] = s;
      }
      if (dD) {
  #pragma omp for schedule(static)
        for (int64_t d = 0; d < Di; ++d) {
          T s = 0;
          for (int64_t b = 0; b < B; ++b) s += dDp[b * Di + d];
          dD[d] = s;
        }
      }
    }
  }
}

#define SIMBA_SELECTIVE_SCAN_INSTANTIATE(T)                                                              \
  template void selective_scan_forward_cpu<T>(                                                             \
      SeqView<T>, T*, SeqView<const T>, SeqView<const T>, const T*, SeqView<const T>, SeqView<const T>,    \
      const T*, SeqView<const T>, const T*, int64_t, int64_t, int64_t, int64_t, acc_t<T>*);                \
  template void selective_scan_forward_ref<T>(                                                             \
      SeqView<T>, T*, SeqView<const T>, SeqView<const T>, const T*, SeqView<const T>, SeqView<const T>,    \
      const T*, SeqView<const T>, const T*, int64_t, int64_t, int64_t, int64_t, acc_t<T>*);                \
  template void selective_scan_backward_cpu<T>(                                                            \
      SeqView<T>, SeqView<T>, T*, SeqView<T>, SeqView<T>, T*, SeqView<T>, T*, SeqView<const T>, const T*,  \
      SeqView<const T>, SeqView<const T>, const T*, SeqView<const T>, SeqView<const T>, const T*,          \
      SeqView<const T>, const T*, int64_t, int64_t, int64_t, int64_t, const acc_t<T>*);                    \
  template void selective_scan_backward_ref<T>(                                                            \
      SeqView<T>, SeqView<T>, T*, SeqView<T>, SeqView<T>, T*, SeqView<T>, T*, SeqView<const T>, const T*,  \
      SeqView<const T>, SeqView<const T>, const T*, SeqView<const T>, SeqView<const T>, const T*,          \
      SeqView<const T>, const T*, int64_t, int64_t, int64_t, int64_t, const acc_t<T>*);

SIMBA_SELECTIVE_SCAN_INSTANTIATE(float)
SIMBA_SELECTIVE_SCAN_INSTANTIATE(double)
SIMBA_SELECTIVE_SCAN_INSTANTIATE(bfloat16)
#undef SIMBA_SELECTIVE_SCAN_INSTANTIATE

}  // namespace simba
