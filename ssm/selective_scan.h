// ssm/selective_scan.h: the Mamba-1 selective scan (S6) compute kernels, CPU and CUDA.
//
// Per batch b, channel d, state n and time t (implements mamba_ssm's
// selective_scan_ref, with the softplus of Δ and A = -exp(A_log) left to the
// caller):
//   a_t[d,n] = exp(Δ_t[d]·A[d,n])                                   (1)
//   h_t[d,n] = a_t[d,n]·h_{t-1}[d,n] + Δ_t[d]·B_t[n]·u_t[d]          (2)  h_{-1} = h0 or 0
//   y_t[d]   = Σ_n C_t[n]·h_t[d,n] + Dskip[d]·u_t[d]                 (3)
//   out_t[d] = y_t[d]·silu(z_t[d])  (or y_t[d] without z)           (4)  silu(v) = v·σ(v)
//
// Three implementations with identical signatures:
//   *_ref: plain sequential loops, the specification; every fast path is tested against it.
//   *_cpu: the fast CPU path (OpenMP over (batch, channel block), vectorised across
//   channels, states recomputed in backward instead of stored). ssm/selective_scan.cpp.
//   *_cuda: the CUDA kernels (a channel's N states split over a few lanes, in registers;
//   chunks streamed through shared memory; backward recomputed per chunk from saved
//   chunk-boundary states). ssm/selective_scan.cu, built with the CUDA backend only.
// T = float, double or bfloat16 (computed in float, each output rounded once). For *_cuda every
// pointer is CUDA device memory on the current device, the call returns once the work is queued
// on that device's stream (tensor/cuda_check.cuh), and N <= 64.
// All are deterministic: the same inputs give bit-identical outputs on every run (and for
// any number of CPU threads).
//
// Layout. Sequence operands are "(B, L, W) rows": element (b, t, w) lives at
// p[(b·L + t)·ld + w] with row stride ld >= W, so u/z can be column views of the in_proj
// output (width 2·Di) and B/C column views of the x_proj output (width R + 2N), no copies.
// A is (Di, N) and the states h0 / h_last / dh0 / dh_last are (B, Di, N), all contiguous.
// Dimension letters: B batch, L sequence length, Di inner channels, N state size.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace simba {

// Checkpoints: the state entering every kScanCheckpointEvery-th step, h_{t-1} for
// t = 0, k, 2k, ... (h0 or 0 at t = 0), as acc_t<T> (B, ceil(L / k), Di, N) contiguous. A
// training forward writes them (checkpoints != nullptr) and its backward reads them, so the
// backward does not run the recurrence once more to find its chunks' entry states: a
// (B, L/16, Di, N) tensor kept between the two (1/16 of the states; 50 MB a layer at
// B 8 × L 1024 × Di 1536 × N 16 in float32) instead of a sweep over the inputs. The
// reference ignores them in its backward (it recomputes everything).
constexpr int64_t kScanCheckpointEvery = 16;

inline int64_t scan_checkpoint_count(int64_t L) { return (L + kScanCheckpointEvery - 1) / kScanCheckpointEvery; }

// A (B, L, width) operand stored as rows `ld` elements apart (see the layout note above).
template <class T>
struct SeqView {
  T* p;
  int64_t ld;
};

// out:    (B, L, Di) rows, written.
// h_last: (B, Di, N) contiguous, the final state h_{L-1}; nullptr to skip. Passing it as
//         h0 of the next call continues the scan exactly (recurrent step / segment hand-off);
//         it may be the same buffer as h0, which then updates the state in place.
// u, delta: (B, L, Di) rows; delta > 0 already (softplus applied by the caller).
// A:      (Di, N) contiguous, A = -exp(A_log).
// Bm, Cm: (B, L, N) rows, shared by all channels.
// Dskip:  (Di) or nullptr (no skip term).
// z:      (B, L, Di) rows; z.p == nullptr means no gate.
// h0:     (B, Di, N) contiguous initial state, or nullptr for zeros.
// checkpoints: written if not nullptr (see kScanCheckpointEvery).
template <class T>
void selective_scan_forward_cpu(SeqView<T> out, T* h_last, SeqView<const T> u,
                                SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                                SeqView<const T> Cm, const T* Dskip, SeqView<const T> z,
                                const T* h0, int64_t B, int64_t L, int64_t Di, int64_t N,
                                acc_t<T>* checkpoints = nullptr);
template <class T>
void selective_scan_forward_cuda(SeqView<T> out, T* h_last, SeqView<const T> u,
                                 SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                                 SeqView<const T> Cm, const T* Dskip, SeqView<const T> z,
                                 const T* h0, int64_t B, int64_t L, int64_t Di, int64_t N,
                                acc_t<T>* checkpoints = nullptr);
template <class T>
void selective_scan_forward_ref(SeqView<T> out, T* h_last, SeqView<const T> u,
                                SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                                SeqView<const T> Cm, const T* Dskip, SeqView<const T> z,
                                const T* h0, int64_t B, int64_t L, int64_t Di, int64_t N,
                                acc_t<T>* checkpoints = nullptr);

// Gradients of Σ dout·out + Σ dh_last·h_last with respect to every input. Outputs are
// OVERWRITTEN (never accumulated); their shapes and layouts mirror the inputs:
//   du, ddelta: (B, L, Di) rows;  dA: (Di, N), summed over batch and time;
//   dB, dC: (B, L, N) rows, summed over channels;  dD: (Di), summed over batch and time;
//   dz: (B, L, Di) rows;  dh0: (B, Di, N).
// dD, dz.p and dh0 may be nullptr (not wanted); dz needs z, dD needs Dskip.
// dout: (B, L, Di) rows. dh_last: (B, Di, N) or nullptr (h_last not used downstream).
// The remaining inputs and sizes are exactly those given to the forward; checkpoints, if not
// nullptr, are those the forward wrote from them.
template <class T>
void selective_scan_backward_cpu(SeqView<T> du, SeqView<T> ddelta, T* dA, SeqView<T> dB,
                                 SeqView<T> dC, T* dD, SeqView<T> dz, T* dh0, SeqView<const T> dout,
                                 const T* dh_last, SeqView<const T> u, SeqView<const T> delta,
                                 const T* A, SeqView<const T> Bm, SeqView<const T> Cm,
                                 const T* Dskip, SeqView<const T> z, const T* h0, int64_t B,
                                 int64_t L, int64_t Di, int64_t N,
                                 const acc_t<T>* checkpoints = nullptr);
template <class T>
void selective_scan_backward_cuda(SeqView<T> du, SeqView<T> ddelta, T* dA, SeqView<T> dB,
                                  SeqView<T> dC, T* dD, SeqView<T> dz, T* dh0,
                                  SeqView<const T> dout, const T* dh_last, SeqView<const T> u,
                                  SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                                  SeqView<const T> Cm, const T* Dskip, SeqView<const T> z,
                                  const T* h0, int64_t B, int64_t L, int64_t Di, int64_t N,
                                 const acc_t<T>* checkpoints = nullptr);
template <class T>
void selective_scan_backward_ref(SeqView<T> du, SeqView<T> ddelta, T* dA, SeqView<T> dB,
                                 SeqView<T> dC, T* dD, SeqView<T> dz, T* dh0, SeqView<const T> dout,
                                 const T* dh_last, SeqView<const T> u, SeqView<const T> delta,
                                 const T* A, SeqView<const T> Bm, SeqView<const T> Cm,
                                 const T* Dskip, SeqView<const T> z, const T* h0, int64_t B,
                                 int64_t L, int64_t Di, int64_t N,
                                 const acc_t<T>* checkpoints = nullptr);

}  // namespace simba
