// ssm/selective_scan.cu: the CUDA selective-scan kernels declared in ssm/selective_scan.h,
// forward (1)-(4) and backward (5)-(13) (the equations are in ssm/selective_scan.h and
// ssm/selective_scan.cpp).
//
// Common design.
// - A channel's N states are split over LPC consecutive lanes, kStatesPerLane each, held in
//   registers (LPC = the power of two with LPC·kStatesPerLane >= N: N = 16 gives 4 lanes a
//   channel). Splitting the states multiplies the threads walking the sequence by LPC: B·Di
//   threads alone leave most of the GPU idle at training shapes. Sums over a channel's states
//   (y in (3), the sums over n of (8) and (9)) are shuffles among its lanes.
// - A block owns CH consecutive channels of one batch row and walks the sequence in chunks. A
//   chunk's tiles (the (B, L, Di) operands: steps x CH channels; B, C: steps x N) are copied
//   into shared memory by the whole block with 16-byte asynchronous copies, the next chunk's
//   copy in flight while the current chunk is computed (two stages). Every global access is a
//   row segment: the backward's results go out through shared tiles, consecutive threads on
//   consecutive channels; the forward's outputs are stored by the lanes that hold their sums, a
//   warp writing LPC rows of 32/LPC consecutive channels.
// - exp(Δ·A) is computed as exp2(Δ·A·log2 e) with A·log2 e formed once per state.
// - B and C are read as acc = acc_t<T> (float for bfloat16): a bfloat16 chunk is widened once
//   into a float tile by the block, not once per lane.
// - States padded past N have A = B = C = 0, so they stay 0 and add nothing; channels past Di
//   (in the last block) compute on zero tiles and store nothing.
// - Deterministic: no atomics; every sum has an order fixed by the sizes alone, so results are
//   bit-identical run to run.
//
// Storage types float, double and bfloat16; every kernel computes in acc_t<T> and rounds each
// output once.
#include "ssm/selective_scan.h"

#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "ssm/selective_scan_check.h"
#include "tensor/cuda_check.cuh"
#include "tensor/cuda_fast_math.cuh"
#include "tensor/cuda_reduce.cuh"
#include "tensor/dtype.h"
#include "tensor/storage.h"

namespace simba {
namespace {

using scan_check::check_grads;
using scan_check::check_inputs;
using scan_check::check_rows;
using fast_math::exp2;
using fast_math::sigmoid;

constexpr int kMaxN = 64;
constexpr int kStatesPerLane = 4;


// v[j] = p[j], j < kStatesPerLane, p 16-byte aligned: vector loads from shared memory.
__device__ inline void load_states(const float* p, float (&v)[kStatesPerLane]) {
  const float4 q = *reinterpret_cast<const float4*>(p);
  v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}
__device__ inline void load_states(const double* p, double (&v)[kStatesPerLane]) {
  const double2 a = *reinterpret_cast<const double2*>(p), b = *reinterpret_cast<const double2*>(p + 2);
  v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
}
static_assert(kStatesPerLane == 4, "load_states reads four states");

// Sums y[q] over the LPC lanes of a channel (consecutive lanes g = 0 .. LPC-1), each step's
// sum ending in one lane: afterwards y[LPC·i] of lane g holds the sum for step q = LPC·i + g,
// i < K / LPC. Each round of the butterfly (offset o) pairs lane g with lane g ^ o; the lane
// whose bit o is set keeps the steps with that bit set and sends the others, so a round adds
// half of the values a lane still holds, and a step's sum costs LPC - 1 shuffles in all
// instead of one shuffle per lane and round. Entries whose index has a bit below LPC set are
// spent afterwards.
template <int LPC, int K, class T>
__device__ inline void lanes_sum_spread(T (&y)[K], int g) {
  static_assert(K % LPC == 0, "whole rounds of steps");
#pragma unroll
  for (int o = LPC / 2; o > 0; o /= 2) {
    const bool hi = (g & o) != 0;
#pragma unroll
    for (int j = 0; j < K; ++j) {
      // j a step this lane still holds (no bit of LPC above o set) with bit o clear: pair (j, j | o).
      if ((j & (LPC - 1) & ~(o - 1)) == 0) {
        const T send = hi ? y[j] : y[j | o], keep = hi ? y[j | o] : y[j];
        y[j] = keep + __shfl_xor_sync(0xffffffffu, send, o);
      }
    }
  }
}

// p[0] + p[1] + … + p[LPC - 1], added in lane order (the fixed order of the backward's
// finishing step), read in 16-byte pieces where LPC allows; p 16-byte aligned then.
template <int LPC, class T>
__device__ inline T lanes_in_order(const T* p) {
  T sum = 0;
  if constexpr (LPC % kStatesPerLane == 0) {
#pragma unroll
    for (int l = 0; l < LPC; l += kStatesPerLane) {
      T v[kStatesPerLane];
      load_states(p + l, v);
#pragma unroll
      for (int j = 0; j < kStatesPerLane; ++j) sum += v[j];
    }
  } else {
#pragma unroll
    for (int l = 0; l < LPC; ++l) sum += p[l];
  }
  return sum;
}

// Copies rows t0 .. t0+tc-1, columns col0 .. col0+ncols-1 of the (B, L, ·) rows `src` of batch
// row b into the kRows x kWidth tile dst[s·kWidth + c]; rows tc .. kRows-1 and columns ncols ..
// kWidth-1 get zeros (the kernels walk whole tiles: a zero step leaves every state unchanged).
// Every one of the kThreads threads of the block calls it. When the rows are whole 16-byte
// pieces (`pieces`, rows_in_pieces below, and a full-width tile) the pieces go as asynchronous
// copies (completed by the caller's __pipeline_wait_prior and barrier), each thread taking the
// pieces ≡ threadIdx.x (mod kThreads) and zeroing those past tc in the same pass; otherwise
// the tile is copied element by element. The tile sizes are compile-time constants, so the
// piece loop is unrolled and its index arithmetic is shifts and masks. `pieces` is a kernel
// argument, read from the constant bank: a condition the kernel derived from each view would be
// hoisted out of the chunk loop and held, one per view, and the bfloat16 backward at its
// register limit spilled them (bench/RESULTS.md). The test of base's alignment, implied by
// `pieces`, stays because without it nvcc 13.0 gives the float32 backward 200 registers a
// thread, and 2 blocks an SM instead of 3.
template <int kRows, int kWidth, int kThreads, class T>
__device__ inline void load_tile(T* dst, SeqView<const T> src, int64_t b, int64_t L, int64_t t0, int tc,
                                 int64_t col0, int ncols, bool pieces) {
  constexpr int kPer = 16 / sizeof(T);  // elements per 16-byte piece
  const T* base = src.p + (b * L + t0) * src.ld + col0;
  if constexpr (kWidth % kPer == 0) {
    if (pieces && ncols == kWidth && reinterpret_cast<uintptr_t>(base) % 16 == 0) {
      constexpr int kPieces = kWidth / kPer, kCount = kRows * kPieces;
#pragma unroll
      for (int k = 0; k < (kCount + kThreads - 1) / kThreads; ++k) {
        const int i = threadIdx.x + k * kThreads;
        if (kCount % kThreads != 0 && i >= kCount) break;
        const int s = i / kPieces, q = i % kPieces;
        if (s < tc)
          __pipeline_memcpy_async(dst + s * kWidth + q * kPer, base + s * src.ld + q * kPer, 16);
        else
          *reinterpret_cast<uint4*>(dst + s * kWidth + q * kPer) = make_uint4(0, 0, 0, 0);
      }
      return;
    }
  }
  for (int i = threadIdx.x; i < kRows * kWidth; i += kThreads) {
    const int s = i / kWidth, c = i % kWidth;
    dst[i] = s < tc && c < ncols ? base[s * src.ld + c] : T(0);
  }
}

// Widens a staged tile of n elements into acc (bfloat16 -> float); every thread calls it, and
// the caller's barrier publishes the result.
template <class T>
__device__ inline void widen_tile(acc_t<T>* dst, const T* src, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = acc_t<T>(src[i]);
}

// Whether every row of every view starts on a 16-byte boundary (p aligned, ld a whole number of
// 16-byte pieces): load_tile's `pieces`. A tile's first column is a multiple of the channels a
// block owns, whose bytes are a multiple of 16, so its rows start on a boundary too.
template <class... V>
bool rows_in_pieces(V... views) {
  return ((reinterpret_cast<uintptr_t>(views.p) % 16 == 0 && views.ld * sizeof(*views.p) % 16 == 0) && ...);
}

// ---- forward ------------------------------------------------------------------------------
//
// A block is kFwdCh channels x LPC lanes; chunks of kFwdChunk steps. Once a chunk's tiles have
// arrived the block forms each (step, channel)'s pair {Δ, Δ·u} in acc once (FwdStep), so that a
// lane reads one entry a step and the LPC lanes of a channel do not each widen and multiply the
// same two values. A lane then walks the chunk in groups of kUnroll steps, fully unrolled: the
// exponentials and loads of a group do not depend on the state, so they overlap the
// recurrence's chain. After a group the lanes' partial sums of y (3) are added across the
// channel's lanes with each step's sum ending in one lane (lanes_sum_spread), and that lane adds
// the skip term, applies the gate (4) and stores the output itself.
//
// The same kernel in mode Save computes the states only (no y, no out) and stores the state
// entering every kBwdChunk-th step into hsave: the backward's first sweep. Mode OutputSave is
// Output storing them too (a training forward's checkpoints, ssm/selective_scan.h), so that its
// backward needs no sweep; a mode of its own, because the stores' code in Output measurably
// slowed the forwards that do not save (bench/RESULTS.md).
//
// Segments. One block walks its channels' whole sequence, so B·Di/kFwdCh blocks are all the
// parallelism there is: at batch 1 and Di 1536 that is 48 blocks for an H200's 132
// multiprocessors, most of which would sit idle through one long prompt. The sequence is
// therefore cut into P segments of whole chunks (gridDim.z = P, chosen by launch_forward)
// and the recurrence (2), h_t = a_t·h_{t-1} + Δ_t·u_t·B_t, linear in h, is split at their
// borders: mode Summary first runs every segment but the last from h = 0, keeping its end
// state e_p and Σ_t Δ_t over it, whose decay is Π_t a_t = exp2(A·log2(e)·Σ_t Δ_t) by (1); a
// segment then starts from
//   h_start(p) = Π(p-1)·h_start(p-1) + e_(p-1),   h_start(0) = h0 (or 0),
// folded in order by each block for itself (P is small), and runs as if it were the whole
// sequence. The summary reads u, Δ and B once more for P-1 of the P segments: P = 1 (no
// summary) wherever the grid fills the GPU already.
enum class FwdMode { Output, OutputSave, Save, Summary };

constexpr int kFwdCh = 32;       // channels per forward block
constexpr int kFwdChunk = 32;    // steps per forward chunk
constexpr int kUnroll = 16;      // steps per unrolled group; divides kFwdChunk
constexpr int kBwdChunk = 16;    // steps per backward chunk: hsave's spacing
static_assert(kFwdChunk % kBwdChunk == 0 && kBwdChunk % kUnroll == 0, "chunk lengths nest");
static_assert(kBwdChunk == kScanCheckpointEvery, "hsave is the checkpoints' layout");

// One (step, channel) of a forward chunk, formed once for the channel's lanes.
template <class A>
struct alignas(2 * sizeof(A)) FwdStep {
  A dt, dx;  // Δ_t, Δ_t·u_t
};

template <class T, int LPC>
struct ForwardSmem {
  static constexpr int kNP = LPC * kStatesPerLane;  // padded state count
  using acc = acc_t<T>;
  // Byte offsets in dynamic shared memory, each 16-byte aligned: two stages of each tile.
  static constexpr size_t kSeqTile = size_t(kFwdChunk) * kFwdCh * sizeof(T);
  static constexpr size_t kStateTile = size_t(kFwdChunk) * kNP * sizeof(T);
  static constexpr size_t u = 0, delta = u + 2 * kSeqTile, z = delta + 2 * kSeqTile;
  static constexpr size_t B = z + 2 * kSeqTile, C = B + 2 * kStateTile;
  // The chunk's FwdStep entries, and B and C widened to acc when T is narrower (one stage each:
  // formed after the chunk has arrived).
  static constexpr size_t steps = C + 2 * kStateTile;
  static constexpr size_t kWideTile = std::is_same_v<T, acc> ? 0 : size_t(kFwdChunk) * kNP * sizeof(acc);
  static constexpr size_t Bw = steps + size_t(kFwdChunk) * kFwdCh * sizeof(FwdStep<acc>), Cw = Bw + kWideTile;
  static constexpr size_t bytes = Cw + kWideTile;
  static_assert(kSeqTile % 16 == 0 && kStateTile % 16 == 0, "tiles keep 16-byte alignment");
};

// The segments' summaries (mode Summary's output, the other modes' input), in acc:
// end (B, P, Di, N): e_p; dsum (B, P, Di): Σ Δ over segment p. Null when P = 1.
template <class A>
struct Segments {
  A* end;
  A* dsum;
  int64_t chunks;  // chunks per segment; the last segment may have fewer
};

// Forward, (1)-(4).
// Launch: grid (ceil(Di / kFwdCh), B, P), block kFwdCh·LPC threads, dynamic shared memory
// ForwardSmem<T, LPC>::bytes. Thread i owns channel d = blockIdx.x·kFwdCh + i / LPC of batch
// row b = blockIdx.y and its states n = (i % LPC)·kStatesPerLane + j, j < kStatesPerLane, over
// segment p = blockIdx.z: the chunks [p·seg.chunks, (p+1)·seg.chunks) of kFwdChunk steps; it
// stores the outputs of its channel at the steps ≡ i % LPC (mod LPC).
// Shapes/layout as in ssm/selective_scan.h: out, u, delta, z (B, L, Di) rows; Bm, Cm (B, L, N)
// rows; A (Di, N); Dskip (Di) or null; h0, h_last (B, Di, N) or null. Every segment reads h0,
// the last writes h_last: h_last may equal h0 only when P = 1 (a thread reads its h0 entries
// before it writes the same h_last entries, and no other thread touches them).
// Mode Save: out, Cm, Dskip, z and h_last are not used; hsave (B, ceil(L / kBwdChunk), Di, N)
// receives h_{t-1} for every t = k·kBwdChunk (h0 or 0 for k = 0). Mode OutputSave is Output
// writing hsave likewise.
// Mode Summary (grid z = P - 1): like Save without hsave, from h = 0 (not h0); writes seg.end
// and seg.dsum of its segment. pieces: rows_in_pieces of the views read.
// Registers: 96 a thread. nvcc's own choice (56-80) spilled in mode OutputSave and kept fewer
// of a group's loads and exponentials in flight; 96 still fits 5 blocks of 128 threads an SM,
// more than the grids of the training shapes put there (bench/RESULTS.md).
template <class T, int LPC, FwdMode kMode>
__global__ void __maxnreg__(96)
    scan_forward_kernel(SeqView<T> out, T* h_last, acc_t<T>* hsave, Segments<acc_t<T>> seg,
                        SeqView<const T> u, SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                        SeqView<const T> Cm, const T* Dskip, SeqView<const T> z, const T* h0,
                        int64_t L, int64_t Di, int N, bool pieces) {
  constexpr bool kStatesOnly = kMode == FwdMode::Save || kMode == FwdMode::Summary;  // no y: the states only
  constexpr bool kSaves = kMode == FwdMode::Save || kMode == FwdMode::OutputSave;  // writes hsave
  using S = ForwardSmem<T, LPC>;
  using acc = acc_t<T>;
  constexpr int NP = S::kNP;
  constexpr int kSeq = kFwdChunk * kFwdCh, kState = kFwdChunk * NP;  // elements per stage
  extern __shared__ __align__(16) unsigned char smem[];
  T* su = reinterpret_cast<T*>(smem + S::u);
  T* sd = reinterpret_cast<T*>(smem + S::delta);
  T* sz = reinterpret_cast<T*>(smem + S::z);
  T* sB = reinterpret_cast<T*>(smem + S::B);
  T* sC = reinterpret_cast<T*>(smem + S::C);
  FwdStep<acc>* steps = reinterpret_cast<FwdStep<acc>*>(smem + S::steps);  // [s][c]

  const int64_t b = blockIdx.y, c0 = int64_t(blockIdx.x) * kFwdCh;
  const int ncols = Di - c0 < kFwdCh ? int(Di - c0) : kFwdCh;
  const int c = threadIdx.x / LPC, g = threadIdx.x % LPC;
  const int64_t d = c0 + c;
  const bool valid = c < ncols;
  const int64_t p = blockIdx.z, P = kMode == FwdMode::Summary ? gridDim.z + 1 : gridDim.z;
  const int64_t kfirst = p * seg.chunks;  // chunks [kfirst, kend) of the whole sequence
  const int64_t nchunks = (L + kFwdChunk - 1) / kFwdChunk;
  const int64_t kend = nchunks < kfirst + seg.chunks ? nchunks : kfirst + seg.chunks;
  const int64_t nsave = (L + kBwdChunk - 1) / kBwdChunk;

  acc A2[kStatesPerLane], h[kStatesPerLane];
#pragma unroll
  for (int j = 0; j < kStatesPerLane; ++j) {
    const int n = g * kStatesPerLane + j;
    const bool on = valid && n < N;
    A2[j] = on ? acc(A[d * N + n]) * acc(1.4426950408889634) : acc(0);  // A·log2(e)
    h[j] = on && h0 && kMode != FwdMode::Summary ? acc(h0[(b * Di + d) * N + n]) : acc(0);
    // h_start(p), folded over the earlier segments (the comment above FwdMode).
    for (int64_t q = 0; on && kMode != FwdMode::Summary && q < p; ++q) {
      const int64_t i = (b * P + q) * Di + d;
      h[j] = exp2(A2[j] * seg.dsum[i]) * h[j] + seg.end[i * N + n];
    }
  }
  acc dsum = 0;  // mode Summary: Σ Δ over the segment
  const acc Dv = !kStatesOnly && Dskip && valid ? acc(Dskip[d]) : acc(0);

  auto issue = [&](int64_t k) {
    const int stage = k & 1;
    const int64_t t0 = k * kFwdChunk;
    const int tc = L - t0 < kFwdChunk ? int(L - t0) : kFwdChunk;
    load_tile<kFwdChunk, kFwdCh, kFwdCh * LPC>(su + stage * kSeq, u, b, L, t0, tc, c0, ncols, pieces);
    load_tile<kFwdChunk, kFwdCh, kFwdCh * LPC>(sd + stage * kSeq, delta, b, L, t0, tc, c0, ncols, pieces);
    load_tile<kFwdChunk, NP, kFwdCh * LPC>(sB + stage * kState, Bm, b, L, t0, tc, 0, N, pieces);
    if (!kStatesOnly) {
      if (z.p) load_tile<kFwdChunk, kFwdCh, kFwdCh * LPC>(sz + stage * kSeq, z, b, L, t0, tc, c0, ncols, pieces);
      load_tile<kFwdChunk, NP, kFwdCh * LPC>(sC + stage * kState, Cm, b, L, t0, tc, 0, N, pieces);
    }
    __pipeline_commit();
  };

  issue(kfirst);
  for (int64_t k = kfirst; k < kend; ++k) {
    const int stage = k & 1;
    const int64_t t0 = k * kFwdChunk;
    const int tc = L - t0 < kFwdChunk ? int(L - t0) : kFwdChunk;
    if (k + 1 < kend) {
      issue(k + 1);
      __pipeline_wait_prior(1);  // chunk k's copies are done, chunk k+1's may be in flight
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();

    const T* tu = su + stage * kSeq;
    const T* td = sd + stage * kSeq;
    const T* tz = sz + stage * kSeq;
    // The chunk's FwdStep entries (zero past tc and past ncols, as the tiles are), and B, C
    // widened when T is narrower.
    for (int i = threadIdx.x; i < kSeq; i += blockDim.x) {
      const acc dt = acc(td[i]);
      steps[i] = FwdStep<acc>{dt, dt * acc(tu[i])};
    }
    const acc* wB = reinterpret_cast<const acc*>(sB + stage * kState);
    const acc* wC = reinterpret_cast<const acc*>(sC + stage * kState);
    if constexpr (!std::is_same_v<T, acc>) {
      acc* Bw = reinterpret_cast<acc*>(smem + S::Bw);
      acc* Cw = reinterpret_cast<acc*>(smem + S::Cw);
      widen_tile(Bw, sB + stage * kState, kState);
      if (!kStatesOnly) widen_tile(Cw, sC + stage * kState, kState);
      wB = Bw;
      wC = Cw;
    }
    __syncthreads();

    // Groups of kUnroll steps: the tile's rows past tc (the last chunk's tail) are zeros, so a
    // group's steps past tc have Δ = 0, a = 1 and no input, h unchanged; their y is not stored.
    for (int s0 = 0; s0 < tc; s0 += kUnroll) {
      if constexpr (kSaves) {
        if (s0 % kBwdChunk == 0 && valid) {
          const int64_t ks = (t0 + s0) / kBwdChunk;
#pragma unroll
          for (int j = 0; j < kStatesPerLane; ++j) {
            const int n = g * kStatesPerLane + j;
            if (n < N) hsave[((b * nsave + ks) * Di + d) * N + n] = h[j];
          }
        }
      }
      // The group's partial sums are added across the channel's lanes after the group, so the
      // shuffles do not split the recurrence.
      acc y[kUnroll];
#pragma unroll
      for (int q = 0; q < kUnroll; ++q) {
        const int s = s0 + q;
        const FwdStep<acc> st = steps[s * kFwdCh + c];
        if constexpr (kMode == FwdMode::Summary) dsum += st.dt;  // 0 past tc
        acc Bq[kStatesPerLane], Cq[kStatesPerLane];
        load_states(wB + s * NP + g * kStatesPerLane, Bq);
        if (!kStatesOnly) load_states(wC + s * NP + g * kStatesPerLane, Cq);
        y[q] = 0;
#pragma unroll
        for (int j = 0; j < kStatesPerLane; ++j) {
          const acc a = exp2(st.dt * A2[j]);             // (1)
          h[j] = a * h[j] + st.dx * Bq[j];                // (2)
          if (!kStatesOnly) y[q] += Cq[j] * h[j];         // (3), this lane's states
        }
      }
      if constexpr (!kStatesOnly) {
        lanes_sum_spread<LPC>(y, g);
        // This lane's steps of the group: (3)'s skip term and the gate (4), stored.
#pragma unroll
        for (int i = 0; i < kUnroll / LPC; ++i) {
          const int s = s0 + LPC * i + g;
          if (valid && s < tc) {
            acc v = y[LPC * i] + Dv * acc(tu[s * kFwdCh + c]);
            if (z.p) {
              const acc zv = acc(tz[s * kFwdCh + c]);
              v *= zv * sigmoid(zv);  // (4)
            }
            out.p[(b * L + t0 + s) * out.ld + d] = T(v);
          }
        }
      }
    }
    __syncthreads();  // the next issue() overwrites this stage, the next chunk's entries these
  }
  if (!kStatesOnly && valid && h_last && p + 1 == P) {
#pragma unroll
    for (int j = 0; j < kStatesPerLane; ++j) {
      const int n = g * kStatesPerLane + j;
      if (n < N) h_last[(b * Di + d) * N + n] = T(h[j]);
    }
  }
  if (kMode == FwdMode::Summary && valid) {
    const int64_t i = (b * P + p) * Di + d;
#pragma unroll
    for (int j = 0; j < kStatesPerLane; ++j) {
      const int n = g * kStatesPerLane + j;
      if (n < N) seg.end[i * N + n] = h[j];
    }
    if (g == 0) seg.dsum[i] = dsum;
  }
}

// ---- backward -----------------------------------------------------------------------------
//
// By recomputation, no (B, L, Di, N) tensor stored: the forward kernel in mode Save keeps
// the state entering every kBwdChunk-th step (hsave, (B, ceil(L / kBwdChunk), Di, N) in acc);
// the backward kernel then takes the chunks last to first, recomputes a chunk's states into
// registers (kBwdChunk + 1 rows of kStatesPerLane per lane) from its saved entry state, and
// runs (5)-(13) backwards through them.
//
// Before its walks the block prepares each (step, channel) of the chunk once, cooperatively:
// StepIn {Δ, Δ·u, dy, u} (dy_t = dout_t·silu(z_t), dout_t without z) and the coefficient of
// (12), so a lane reads one 16-byte entry a step and never evaluates the gate itself.
//
// The reverse walk carries only the chain of (5) through G; everything it produces that sums
// over lanes goes to shared memory instead of shuffles, so no step waits on another lane: a
// lane's partial sums over its states of (8) (Σ G·B), of the first term of (9) (Σ G·A·a·h) and
// of y (3) [step][channel][lane], and its channel's terms of (7) and (6)
// [step][dB or dC][channel][state]. After every kBwdGroup steps the block finishes them: per
// (step, channel) the lanes' partials in lane order give du, dΔ (the second term of (9) is
// u·Σ G·B), dz; per (step, state) the channels' terms (the even channels' sum plus the odd
// ones', each in channel order) give the block's partial of dB and dC, written as one partial
// per (channel block, b, t, n), which cuda_reduce::launch_sum_partials adds in a fixed order.
// dA and dD (sums over batch and time) are summed over t in registers and written as one
// partial per (b, d, n) / (b, d), likewise added.

constexpr int kBwdThreads = 128;  // threads per backward block, at most
constexpr int kBwdGroup = 8;      // steps whose sums are finished together; divides kBwdChunk

// One (step, channel) of a backward chunk, prepared once for every lane of the channel.
template <class A>
struct alignas(4 * sizeof(A)) StepIn {
  A dt, dx, dy, x;  // Δ_t, Δ_t·u_t, dy_t, u_t
};

template <class T, int LPC>
struct BackwardSmem {
  // CH channels x LPC lanes a block; CH <= 32 keeps a block's tiles small for small N.
  static constexpr int kCH = kBwdThreads / LPC < 32 ? kBwdThreads / LPC : 32;
  static constexpr int kThreads = kCH * LPC, kNP = LPC * kStatesPerLane;
  using acc = acc_t<T>;
  static constexpr size_t kSeqTile = size_t(kBwdChunk) * kCH * sizeof(T);
  static constexpr size_t kStateTile = size_t(kBwdChunk) * kNP * sizeof(T);
  // Two stages of u, Δ, z, dout, B, C; the chunk's StepIn and (12) coefficients; one group's
  // lane partials (3 of [kBwdGroup][kCH][LPC]) and channel terms ([kBwdGroup][2][kCH][kNP])
  // in acc; B, C widened when T is narrower.
  static constexpr size_t u = 0, delta = u + 2 * kSeqTile, z = delta + 2 * kSeqTile;
  static constexpr size_t dout = z + 2 * kSeqTile, B = dout + 2 * kSeqTile, C = B + 2 * kStateTile;
  static constexpr size_t steps = C + 2 * kStateTile;
  static constexpr size_t zcoef = steps + size_t(kBwdChunk) * kCH * sizeof(StepIn<acc>);
  static constexpr size_t kLaneTile = size_t(kBwdGroup) * kCH * LPC * sizeof(acc);
  static constexpr size_t lanes = zcoef + size_t(kBwdChunk) * kCH * sizeof(acc), terms = lanes + 3 * kLaneTile;
  static constexpr size_t kWideTile = std::is_same_v<T, acc> ? 0 : size_t(kBwdChunk) * kNP * sizeof(acc);
  static constexpr size_t Bw = terms + size_t(kBwdGroup) * 2 * kCH * kNP * sizeof(acc);
  static constexpr size_t Cw = Bw + kWideTile;
  static constexpr size_t bytes = Cw + kWideTile;
  static_assert(kSeqTile % 16 == 0 && kStateTile % 16 == 0 && kLaneTile % 16 == 0 && zcoef % 16 == 0,
                "16-byte alignment");
};

// p[j] = v[j], j < kStatesPerLane, p 16-byte aligned: vector stores to shared memory.
__device__ inline void store_states(float* p, const float (&v)[kStatesPerLane]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ inline void store_states(double* p, const double (&v)[kStatesPerLane]) {
  *reinterpret_cast<double2*>(p) = make_double2(v[0], v[1]);
  *reinterpret_cast<double2*>(p + 2) = make_double2(v[2], v[3]);
}

// Backward, (5)-(13).
// Launch: grid (nblk = ceil(Di / CH), B), block CH·LPC threads, dynamic shared memory
// BackwardSmem<T, LPC>::bytes, CH = BackwardSmem<T, LPC>::kCH. Thread i owns channel
// d = blockIdx.x·CH + i / LPC of batch row b = blockIdx.y and its states
// n = (i % LPC)·kStatesPerLane + j.
// Reads hsave (B, ceil(L / kBwdChunk), Di, N) from the forward in mode Save. Writes du, ddelta,
// dz (if dz.p) (B, L, Di) rows and dh0 (if non-null) (B, Di, N), and in acc the partials:
//   dB_part, dC_part (nblk, B, L, N): block blockIdx.x's channel sums of (7) / (6);
//   dA_part (B, Di, N): the sums over t of (10);  dD_part (B, Di): the sums over t of (11).
// pieces: rows_in_pieces of the views read.
template <class T, int LPC>
__global__ void __launch_bounds__(BackwardSmem<T, LPC>::kThreads)
    scan_backward_kernel(SeqView<T> du, SeqView<T> ddelta, SeqView<T> dz, T* dh0,
                         acc_t<T>* dB_part, acc_t<T>* dC_part, acc_t<T>* dA_part,
                         acc_t<T>* dD_part, const acc_t<T>* hsave, SeqView<const T> dout,
                         const T* dh_last, SeqView<const T> u, SeqView<const T> delta, const T* A,
                         SeqView<const T> Bm, SeqView<const T> Cm, const T* Dskip,
                         SeqView<const T> z, int64_t B, int64_t L, int64_t Di, int N, bool pieces) {
  using S = BackwardSmem<T, LPC>;
  using acc = acc_t<T>;
  constexpr int CH = S::kCH, NP = S::kNP, TC = kBwdChunk, kThreads = S::kThreads;
  constexpr int kSeq = TC * CH, kState = TC * NP;  // elements per stage
  extern __shared__ __align__(16) unsigned char smem[];
  T* su = reinterpret_cast<T*>(smem + S::u);
  T* sd = reinterpret_cast<T*>(smem + S::delta);
  T* sz = reinterpret_cast<T*>(smem + S::z);
  T* sg = reinterpret_cast<T*>(smem + S::dout);
  T* sB = reinterpret_cast<T*>(smem + S::B);
  T* sC = reinterpret_cast<T*>(smem + S::C);
  StepIn<acc>* steps = reinterpret_cast<StepIn<acc>*>(smem + S::steps);  // [s][c]
  acc* zcoef = reinterpret_cast<acc*>(smem + S::zcoef);                  // [s][c]: dz = zcoef·y
  constexpr int kLane = kBwdGroup * CH * LPC;
  acc* pu = reinterpret_cast<acc*>(smem + S::lanes);  // [q][c][g]: Σ_j G·B (8)
  acc* pd = pu + kLane;                                // Σ_j G·A·a·h, (9)'s first term
  acc* py = pd + kLane;                                // Σ_j C·h (3)
  acc* terms = reinterpret_cast<acc*>(smem + S::terms);  // [q][dB, dC][c][n]

  const int64_t b = blockIdx.y, blk = blockIdx.x, c0 = blk * CH;
  const int ncols = Di - c0 < CH ? int(Di - c0) : CH;
  const int c = threadIdx.x / LPC, g = threadIdx.x % LPC;
  const int64_t d = c0 + c;
  const bool valid = c < ncols;
  const int64_t nchunks = (L + TC - 1) / TC;
  const int ec = threadIdx.x % CH;  // the epilogue's channel; CH divides kThreads
  const acc eD = Dskip && ec < ncols ? acc(Dskip[c0 + ec]) : acc(0);

  acc A2[kStatesPerLane], An[kStatesPerLane], G[kStatesPerLane], dAs[kStatesPerLane];
#pragma unroll
  for (int j = 0; j < kStatesPerLane; ++j) {
    const int n = g * kStatesPerLane + j;
    const bool on = valid && n < N;
    An[j] = on ? acc(A[d * N + n]) : acc(0);
    A2[j] = An[j] * acc(1.4426950408889634);
    // G holds a_{t+1}·G_{t+1} on entry to step t (the second term of (5)), from dh_last.
    G[j] = on && dh_last ? acc(dh_last[(b * Di + d) * N + n]) : acc(0);
    dAs[j] = 0;
  }
  acc dDs = 0;  // lane 0 of each channel

  auto issue = [&](int64_t k) {
    const int stage = k & 1;
    const int64_t t0 = k * TC;
    const int tc = L - t0 < TC ? int(L - t0) : TC;
    load_tile<TC, CH, kThreads>(su + stage * kSeq, u, b, L, t0, tc, c0, ncols, pieces);
    load_tile<TC, CH, kThreads>(sd + stage * kSeq, delta, b, L, t0, tc, c0, ncols, pieces);
    if (z.p) load_tile<TC, CH, kThreads>(sz + stage * kSeq, z, b, L, t0, tc, c0, ncols, pieces);
    load_tile<TC, CH, kThreads>(sg + stage * kSeq, dout, b, L, t0, tc, c0, ncols, pieces);
    load_tile<TC, NP, kThreads>(sB + stage * kState, Bm, b, L, t0, tc, 0, N, pieces);
    load_tile<TC, NP, kThreads>(sC + stage * kState, Cm, b, L, t0, tc, 0, N, pieces);
    __pipeline_commit();
  };

  issue(nchunks - 1);
  for (int64_t k = nchunks - 1; k >= 0; --k) {
    const int stage = k & 1;
    const int64_t t0 = k * TC;
    const int tc = L - t0 < TC ? int(L - t0) : TC;
    if (k > 0) {
      issue(k - 1);
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    // Prepare the chunk's (step, channel) entries; the tiles' zero rows and columns (past tc,
    // past ncols) give zero entries: Δ = 0 keeps every state, dy = 0 adds nothing.
    {
      const T* tu = su + stage * kSeq;
      const T* td = sd + stage * kSeq;
      const T* tz = sz + stage * kSeq;
      const T* tg = sg + stage * kSeq;
      for (int i = threadIdx.x; i < kSeq; i += kThreads) {
        const acc dt = acc(td[i]), x = acc(tu[i]), go = acc(tg[i]);
        acc dy = go, zc = 0;
        if (z.p) {
          const acc zv = acc(tz[i]), sgm = sigmoid(zv);
          dy = go * zv * sgm;
          zc = go * sgm * (acc(1) + zv * (acc(1) - sgm));  // (12) without y
        }
        steps[i] = StepIn<acc>{dt, dt * x, dy, x};
        zcoef[i] = zc;
      }
    }
    const acc* wB = reinterpret_cast<const acc*>(sB + stage * kState);
    const acc* wC = reinterpret_cast<const acc*>(sC + stage * kState);
    if constexpr (!std::is_same_v<T, acc>) {
      acc* Bw = reinterpret_cast<acc*>(smem + S::Bw);
      acc* Cw = reinterpret_cast<acc*>(smem + S::Cw);
      widen_tile(Bw, sB + stage * kState, kState);
      widen_tile(Cw, sC + stage * kState, kState);
      wB = Bw;
      wC = Cw;
    }
    __syncthreads();

    // Recompute the chunk: hs[s + 1] = h_{t0+s}, hs[0] = the entry state h_{t0-1} (steps past
    // tc have Δ = 0 and leave h unchanged).
    acc hs[TC + 1][kStatesPerLane];
#pragma unroll
    for (int j = 0; j < kStatesPerLane; ++j) {
      const int n = g * kStatesPerLane + j;
      hs[0][j] = valid && n < N ? hsave[((b * nchunks + k) * Di + d) * N + n] : acc(0);
    }
#pragma unroll
    for (int s = 0; s < TC; ++s) {
      const StepIn<acc> p = steps[s * CH + c];
      acc Bq[kStatesPerLane];
      load_states(wB + s * NP + g * kStatesPerLane, Bq);
#pragma unroll
      for (int j = 0; j < kStatesPerLane; ++j) hs[s + 1][j] = exp2(p.dt * A2[j]) * hs[s][j] + p.dx * Bq[j];  // (1)-(2)
    }

#pragma unroll
    for (int q0 = TC - kBwdGroup; q0 >= 0; q0 -= kBwdGroup) {
      if (q0 >= tc) continue;  // uniform over the block
      // Every step of the group, those past tc too: there dy = Δ = 0 and the zero B, C rows
      // leave G and the sums over t unchanged, and their partials are not finished.
#pragma unroll
      for (int q = kBwdGroup - 1; q >= 0; --q) {
        const int s = q0 + q;
        const StepIn<acc> p = steps[s * CH + c];
        acc Bq[kStatesPerLane], Cq[kStatesPerLane], vB[kStatesPerLane], vC[kStatesPerLane];
        load_states(wB + s * NP + g * kStatesPerLane, Bq);
        load_states(wC + s * NP + g * kStatesPerLane, Cq);
        acc gu = 0, gd = 0, yp = 0;
#pragma unroll
        for (int j = 0; j < kStatesPerLane; ++j) {
          const acc ht = hs[s + 1][j], a = exp2(p.dt * A2[j]);
          const acc gj = G[j] + Cq[j] * p.dy;    // (5)
          G[j] = gj * a;
          const acc w = G[j] * hs[s][j];         // G_t·a_t·h_{t-1}
          vB[j] = gj * p.dx;                     // (7), this channel's term
          vC[j] = p.dy * ht;                     // (6), this channel's term
          yp += Cq[j] * ht;                      // (3), for (12)
          gu += gj * Bq[j];                      // (8) / Δ and (9)'s second term / u
          gd += w * An[j];                       // (9)'s first term
          dAs[j] += w * p.dt;                    // (10)
        }
        if (g == 0) dDs += p.dy * p.x;  // (11)
        const int li = (q * CH + c) * LPC + g;
        pu[li] = gu;
        pd[li] = gd;
        py[li] = yp;
        store_states(terms + ((q * 2 + 0) * CH + c) * NP + g * kStatesPerLane, vB);
        store_states(terms + ((q * 2 + 1) * CH + c) * NP + g * kStatesPerLane, vC);
      }
      __syncthreads();

      // Finish the group: du, dΔ, dz per (step, channel) from the lanes' partials in lane order;
      // dB, dC per (step, state) from the channels' terms.
      const int gc = tc - q0 < kBwdGroup ? tc - q0 : kBwdGroup;  // the group's steps
      if (ec < ncols) {
        for (int i = threadIdx.x; i < gc * CH; i += kThreads) {
          const int s = q0 + i / CH;
          const acc gu = lanes_in_order<LPC>(pu + i * LPC), gd = lanes_in_order<LPC>(pd + i * LPC),
                    yp = lanes_in_order<LPC>(py + i * LPC);
          const StepIn<acc> p = steps[s * CH + ec];
          const int64_t r = b * L + t0 + s;
          du.p[r * du.ld + c0 + ec] = T(gu * p.dt + eD * p.dy);  // (8)
          ddelta.p[r * ddelta.ld + c0 + ec] = T(gd + p.x * gu);  // (9)
          if (dz.p) dz.p[r * dz.ld + c0 + ec] = T(zcoef[s * CH + ec] * (yp + eD * p.x));  // (12)
        }
      }
      // A pair of threads takes a (step, dB or dC, kStatesPerLane states): one adds the even
      // channels' terms, the other the odd ones' (in channel order; the two read distinct
      // banks), and both add the two halves. Every thread runs the same number of rounds (the
      // pairs take 32·LPC threads, a multiple of kThreads), so the shuffle sees whole warps;
      // steps past gc are summed and not stored.
      constexpr int kQuads = NP / kStatesPerLane, kItems = kBwdGroup * 2 * kQuads;
      static_assert((2 * kItems) % kThreads == 0, "whole rounds of pairs");
#pragma unroll
      for (int round = 0; round < 2 * kItems / kThreads; ++round) {
        const int i = threadIdx.x + round * kThreads, h = i % 2, item = i / 2;
        const int q = item / (2 * kQuads), which = item / kQuads % 2, jq = item % kQuads;
        const acc* t = terms + (q * 2 + which) * CH * NP + jq * kStatesPerLane;
        acc sum[kStatesPerLane] = {}, v[kStatesPerLane];
#pragma unroll
        for (int k = 0; k < CH / 2; ++k) {
          load_states(t + (2 * k + h) * NP, v);
#pragma unroll
          for (int j = 0; j < kStatesPerLane; ++j) sum[j] += v[j];
        }
#pragma unroll
        for (int j = 0; j < kStatesPerLane; ++j) sum[j] += __shfl_xor_sync(0xffffffffu, sum[j], 1);
        if (h == 0 && q < gc) {
          acc* out = (which == 0 ? dB_part : dC_part) + ((blk * B + b) * L + t0 + q0 + q) * N;
#pragma unroll
          for (int j = 0; j < kStatesPerLane; ++j)
            if (jq * kStatesPerLane + j < N) out[jq * kStatesPerLane + j] = sum[j];
        }
      }
      __syncthreads();  // the next group overwrites the partials and terms
    }
  }

  if (valid) {
#pragma unroll
    for (int j = 0; j < kStatesPerLane; ++j) {
      const int n = g * kStatesPerLane + j;
      if (n < N) {
        if (dh0) dh0[(b * Di + d) * N + n] = T(G[j]);  // (13)
        dA_part[(b * Di + d) * N + n] = dAs[j];
      }
    }
    if (g == 0) dD_part[b * Di + d] = dDs;
  }
}

// Opts kernel in to more dynamic shared memory than the default 48 KiB where it needs it.
template <class K>
void allow_shared_bytes(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    SIMBA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

// Launches kernel<<<grid, block, bytes, stream>>>(args...).
template <class K, class... Args>
void launch(K kernel, dim3 grid, int block, size_t bytes, cudaStream_t stream, Args... args) {
  allow_shared_bytes(kernel, bytes);
  kernel<<<grid, block, bytes, stream>>>(args...);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

// A segment is at least this many chunks (256 steps), so that the summary's second reading of
// u, Δ and B is spread over enough steps and the folding of h_start stays short.
constexpr int64_t kMinSegmentChunks = 8;

// The forward in mode kMode (Output, OutputSave or Save) over ceil(Di / kFwdCh) x B blocks, each walking
// its channels of one batch row, with the sequence cut into segments (the comment above
// FwdMode) when those are fewer than two blocks a multiprocessor: then as many segments as
// keep the grid within one wave at the occupancy limit (one more would leave a second, partial
// wave: at 4 x 2048 x 1536, 4 segments took 6 % longer than 3), each of at least
// kMinSegmentChunks chunks. The summary pass costs about half the output pass (the same
// exponentials, 3 of the 5 operands), so at two blocks a multiprocessor and more one segment
// was measured faster (bench/RESULTS.md). h_last aliasing h0 (the in-place step) keeps one
// segment: every segment reads h0.
template <class T, int LPC, FwdMode kMode>
void launch_forward(cudaStream_t stream, int device, SeqView<T> out, T* h_last, acc_t<T>* hsave,
                    SeqView<const T> u, SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                    SeqView<const T> Cm, const T* Dskip, SeqView<const T> z, const T* h0, int64_t B,
                    int64_t L, int64_t Di, int64_t N) {
  using acc = acc_t<T>;
  constexpr int kThreads = kFwdCh * LPC;
  constexpr size_t kBytes = ForwardSmem<T, LPC>::bytes;
  const auto kernel = scan_forward_kernel<T, LPC, kMode>;
  const int64_t nx = (Di + kFwdCh - 1) / kFwdCh, chunks = (L + kFwdChunk - 1) / kFwdChunk;
  int64_t P = 1;
  int sms = 0;
  SIMBA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t blocks = nx * B;
  if (!(h_last && h_last == h0) && chunks >= 2 * kMinSegmentChunks && blocks < 2 * int64_t(sms)) {
    int per_sm = 0;
    allow_shared_bytes(kernel, kBytes);
    SIMBA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, kBytes));
    const int64_t resident = int64_t(sms) * std::max(per_sm, 1);
    P = std::max<int64_t>(1, std::min(resident / blocks, chunks / kMinSegmentChunks));
  }
  const bool pieces = rows_in_pieces(u, delta, Bm, Cm, z);
  Segments<acc> seg{nullptr, nullptr, std::max<int64_t>(1, (chunks + P - 1) / P)};
  P = std::max<int64_t>(1, (chunks + seg.chunks - 1) / seg.chunks);  // no empty segment
  // The summaries, freed (stream-ordered) when `scratch` goes out of scope after the launches.
  Storage scratch(P > 1 ? sizeof(acc) * size_t(B * P * Di * (N + 1)) : 0, Device{DeviceType::CUDA, device});
  if (P > 1) {
    seg.end = static_cast<acc*>(scratch.data());
    seg.dsum = seg.end + B * P * Di * N;
    launch(scan_forward_kernel<T, LPC, FwdMode::Summary>, dim3(unsigned(nx), unsigned(B), unsigned(P - 1)),
           kThreads, kBytes, stream, SeqView<T>{nullptr, 0}, static_cast<T*>(nullptr), static_cast<acc*>(nullptr),
           seg, u, delta, A, Bm, SeqView<const T>{nullptr, 0}, static_cast<const T*>(nullptr),
           SeqView<const T>{nullptr, 0}, static_cast<const T*>(nullptr), L, Di, int(N), pieces);
  }
  launch(kernel, dim3(unsigned(nx), unsigned(B), unsigned(P)), kThreads, kBytes, stream, out, h_last, hsave, seg, u,
         delta, A, Bm, Cm, Dskip, z, h0, L, Di, int(N), pieces);
}

// Calls f(std::integral_constant<int, LPC>) with the lanes per channel: the smallest power of
// two with LPC·kStatesPerLane >= N.
template <class F>
void with_lanes_per_channel(int64_t N, F&& f) {
  if (N <= kStatesPerLane)
    f(std::integral_constant<int, 1>{});
  else if (N <= 2 * kStatesPerLane)
    f(std::integral_constant<int, 2>{});
  else if (N <= 4 * kStatesPerLane)
    f(std::integral_constant<int, 4>{});
  else if (N <= 8 * kStatesPerLane)
    f(std::integral_constant<int, 8>{});
  else
    f(std::integral_constant<int, 16>{});
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
                                 const T* h0, int64_t B, int64_t L, int64_t Di, int64_t N,
                                 acc_t<T>* checkpoints) {
  const char* op = "selective_scan_forward_cuda";
  check_inputs(op, u, delta, A, Bm, Cm, z, B, L, Di, N);
  check_rows(op, "out", out, Di, "Di");
  check_cuda_inputs(op, u, delta, A, Bm, Cm, Dskip, z, h0, B, N);
  cuda_check_device_pointer(out.p, op, "out");
  cuda_check_device_pointer(h_last, op, "h_last");
  cuda_check_device_pointer(checkpoints, op, "checkpoints");

  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  with_lanes_per_channel(N, [&](auto lanes) {
    constexpr int LPC = decltype(lanes)::value;
    if (checkpoints)
      launch_forward<T, LPC, FwdMode::OutputSave>(stream, device, out, h_last, checkpoints, u, delta, A, Bm, Cm, Dskip,
                                                  z, h0, B, L, Di, N);
    else
      launch_forward<T, LPC, FwdMode::Output>(stream, device, out, h_last, checkpoints, u, delta, A, Bm, Cm, Dskip, z,
                                              h0, B, L, Di, N);
  });
}

template <class T>
void selective_scan_backward_cuda(SeqView<T> du, SeqView<T> ddelta, T* dA, SeqView<T> dB,
                                  SeqView<T> dC, T* dD, SeqView<T> dz, T* dh0,
                                  SeqView<const T> dout, const T* dh_last, SeqView<const T> u,
                                  SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                                  SeqView<const T> Cm, const T* Dskip, SeqView<const T> z,
                                  const T* h0, int64_t B, int64_t L, int64_t Di, int64_t N,
                                  const acc_t<T>* checkpoints) {
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
  cuda_check_device_pointer(checkpoints, op, "checkpoints");

  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  with_lanes_per_channel(N, [&](auto lanes) {
    constexpr int LPC = decltype(lanes)::value;
    using BS = BackwardSmem<T, LPC>;
    constexpr int CH = BS::kCH;
    const int64_t nblk = (Di + CH - 1) / CH, nsave = (L + kBwdChunk - 1) / kBwdChunk;
    // Scratch, freed (stream-ordered) when `scratch` goes out of scope after the launches.
    using acc = acc_t<T>;
    // hsave: the forward's checkpoints, or a sweep of the forward in mode Save.
    const int64_t n_dBC = nblk * B * L * N, n_dA = B * Di * N, n_dD = B * Di;
    const int64_t n_hsave = checkpoints ? 0 : B * nsave * Di * N;
    Storage scratch(sizeof(acc) * size_t(2 * n_dBC + n_dA + n_dD + n_hsave), Device{DeviceType::CUDA, device});
    acc* dB_part = static_cast<acc*>(scratch.data());
    acc* dC_part = dB_part + n_dBC;
    acc* dA_part = dC_part + n_dBC;
    acc* dD_part = dA_part + n_dA;
    const acc* hsave = checkpoints;
    if (!checkpoints) {
      acc* sweep = dD_part + n_dD;
      launch_forward<T, LPC, FwdMode::Save>(stream, device, SeqView<T>{nullptr, 0}, static_cast<T*>(nullptr), sweep,
                                            u, delta, A, Bm, Cm, static_cast<const T*>(nullptr),
                                            SeqView<const T>{nullptr, 0}, h0, B, L, Di, N);
      hsave = sweep;
    }
    launch(scan_backward_kernel<T, LPC>, dim3(static_cast<unsigned>(nblk), static_cast<unsigned>(B)), BS::kThreads,
           BS::bytes, stream, du, ddelta, dz, dh0, dB_part, dC_part, dA_part, dD_part,
           hsave, dout, dh_last, u, delta, A, Bm, Cm, Dskip, z, B, L, Di, int(N),
           rows_in_pieces(u, delta, z, dout, Bm, Cm));
    cuda_reduce::launch_sum_partials(stream, dB.p, dB.ld, N, dB_part, nblk, B * L * N, B * L * N);
    cuda_reduce::launch_sum_partials(stream, dC.p, dC.ld, N, dC_part, nblk, B * L * N, B * L * N);
    cuda_reduce::launch_sum_partials(stream, dA, dA_part, B, Di * N);
    if (dD) cuda_reduce::launch_sum_partials(stream, dD, dD_part, B, Di);
    SIMBA_CUDA_CHECK(cudaGetLastError());
  });
}

#define SIMBA_INSTANTIATE_SCAN_CUDA(T)                                                                      \
  template void selective_scan_forward_cuda<T>(SeqView<T>, T*, SeqView<const T>, SeqView<const T>, const T*,     \
                                               SeqView<const T>, SeqView<const T>, const T*, SeqView<const T>,    \
                                               const T*, int64_t, int64_t, int64_t, int64_t, acc_t<T>*);          \
  template void selective_scan_backward_cuda<T>(                                                                  \
      SeqView<T>, SeqView<T>, T*, SeqView<T>, SeqView<T>, T*, SeqView<T>, T*, SeqView<const T>, const T*,         \
      SeqView<const T>, SeqView<const T>, const T*, SeqView<const T>, SeqView<const T>, const T*,                 \
      SeqView<const T>, const T*, int64_t, int64_t, int64_t, int64_t, const acc_t<T>*);
SIMBA_INSTANTIATE_SCAN_CUDA(float)
SIMBA_INSTANTIATE_SCAN_CUDA(double)
SIMBA_INSTANTIATE_SCAN_CUDA(bfloat16)
#undef SIMBA_INSTANTIATE_SCAN_CUDA

}  // namespace simba
