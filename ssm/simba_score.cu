// ssm/simba_score.cu: the CUDA variants of the pruned forward's batched kernels declared in
// ssm/simba_score.h: the Simba scores (Q1)-(Q2), the top-k choice of the kept sets, and the
// row index of a layer's compacted sequence. The rules (criteria, order, anchor) are in
// ssm/simba_score.h; each kernel below states its shapes and launch geometry.
//
// Determinism: no floating-point atomics. Every sum runs in an order fixed by the sizes (a
// thread's own loop, or the fixed-order block reductions of tensor/cuda_reduce.cuh), and the
// selection compares exact keys and counts them in integers, so results are bit-identical run
// to run.
// Types: inputs of T (float, double or bfloat16) are widened on load; S, the rows Δy_T(t) and
// the scores are acc_t<T> (float for bfloat16), the l2 sums double.
#include "ssm/simba_score.h"

#include <cuda_runtime.h>

#include <climits>
#include <cub/block/block_scan.cuh>

#include "tensor/cuda_reduce.cuh"
#include "tensor/cuda_check.cuh"
#include "tensor/cuda_fast_math.cuh"
#include "tensor/storage.h"

namespace simba {
namespace {

using cuda_reduce::block_reduce;
using cuda_reduce::Max;
using cuda_reduce::Sum;

constexpr int kThreads = 256;

// 2^x as exp2_fast computes it on the CPU (tensor/vector_math.h): results below the normal
// range are 0. In float one ex2.approx.ftz instruction (tensor/cuda_fast_math.cuh).
__device__ inline float exp2_t(float v) { return fast_math::exp2(v); }
__device__ inline double exp2_t(double v) { return v < -1022.0 ? 0.0 : fast_math::exp2(v); }
__device__ inline float abs_t(float v) { return fabsf(v); }
__device__ inline double abs_t(double v) { return fabs(v); }

// (Q1)-(Q2) in three kernels, without forming S (B, n, Di): a block scores kRows consecutive
// rows and carries S down them in registers, starting from the sum of Δ over the rows after its
// chunk, which the first two kernels provide. The sums are in double:
//   chunk_sum_kernel:    sums[b, c, d] = Σ_{k in chunk c} delta[b, k, d] (k descending);
//   chunk_suffix_kernel: suffix[b, c, d] = Σ_{c' > c} sums[b, c', d]
//                        = Σ_{k >= (c + 1)·kRows} delta[b, k, d] = S[b, t, d] at the chunk's last row t;
//   score_chunk_kernel:  for the chunk's rows t descending, S_t = that value, then += delta_t.
// The CPU adds one chain from the top instead; in double the two orders differ by far less than
// acc_t<T>'s rounding, below the few-ulp agreement of the scores (the header). delta (B, L, Di)
// rows; sums and suffix (B, ceil(n / kRows), Di) contiguous.
// Launch (chunk_sum_kernel): grid (ceil(Di / kThreads), ceil(n / kRows), B), block kThreads;
// thread x of block (bx, c, b) owns channel d = bx·kThreads + x of chunk c of sequence b.
// Launch (chunk_suffix_kernel): grid (ceil(Di / 32), B), block (32, kRuns); the chunks of a
// sequence are cut into kRuns runs of consecutive chunks, and thread (x, y) of block (bx, b) owns
// channel d = bx·32 + x (a warp's loads consecutive) in run y: it adds its run's sums (c'
// descending), the block's threads of d add the later runs' totals (descending), and the thread
// walks its run down from that. One thread a channel walking every chunk would wait on a chain
// of ceil(n / kRows) dependent additions, with only B·Di threads to hide them.
constexpr int64_t kRows = 16;
template <class T>
__global__ void __launch_bounds__(kThreads)
    chunk_sum_kernel(double* __restrict__ sums, SeqView<const T> delta, int64_t L, int64_t n, int64_t Di) {
  const int64_t d = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (d >= Di) return;
  const int64_t c = blockIdx.y, b = blockIdx.z, chunks = gridDim.y;
  const int64_t lo = c * kRows, hi = min(lo + kRows, n);
  const T* __restrict__ dcol = delta.p + b * L * delta.ld + d;  // delta[b, k, d] = dcol[k·ld]
  double acc = 0.0;
  for (int64_t k = hi - 1; k >= lo; --k) acc += double(acc_t<T>(dcol[k * delta.ld]));
  sums[(b * chunks + c) * Di + d] = acc;
}

constexpr int kRuns = 32;
__global__ void __launch_bounds__(32 * kRuns)
    chunk_suffix_kernel(double* __restrict__ suffix, const double* __restrict__ sums, int64_t chunks, int64_t Di) {
  __shared__ double run_total[kRuns][32];
  const int x = threadIdx.x, y = threadIdx.y;
  const int64_t d = int64_t(blockIdx.x) * 32 + x;
  const int64_t per = (chunks + kRuns - 1) / kRuns, lo = min(chunks, y * per), hi = min(chunks, lo + per);
  const int64_t base = int64_t(blockIdx.y) * chunks * Di + d;
  double own = 0.0;
  if (d < Di)
    for (int64_t c = hi - 1; c >= lo; --c) own += sums[base + c * Di];
  run_total[y][x] = own;
  __syncthreads();
  if (d >= Di) return;
  double acc = 0.0;
  for (int r = kRuns - 1; r > y; --r) acc += run_total[r][x];
  for (int64_t c = hi - 1; c >= lo; --c) {
    suffix[base + c * Di] = acc;
    acc += sums[base + c * Di];
  }
}

// A (Di, N) of T -> AT (N, Di) = A·log2e in acc_t<T> (the exponent of 2^x, ssm/simba_score.h),
// so that the score kernel's threads, one channel d each, read A[d, k] for a fixed k from
// consecutive addresses. Launch: 1-D grid-stride over the Di·N entries.
template <class T>
__global__ void transpose_a_kernel(acc_t<T>* __restrict__ AT, const T* __restrict__ A, int64_t Di, int64_t N) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < Di * N; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = e / N, k = e % N;
    AT[k * Di + d] = acc_t<T>(A[e]) * acc_t<T>(kLog2e);
  }
}

// The k loop of score_chunk_kernel is unrolled by four, and ptxas reads a remainder of up to
// three products as one wide shared load whether or not they exist (compute-sanitizer memcheck
// flagged it at N = 5), so each row's products are stored padded to a multiple of four.
__host__ __device__ inline int64_t padded_n(int64_t N) { return (N + 3) / 4 * 4; }

// Products a row of score_chunk_kernel's shared memory holds: kN when the kernel keeps its N =
// kN terms in registers, else padded_n(N).
template <int kN>
__host__ __device__ inline int64_t cb_stride(int64_t N) {
  return kN > 0 ? kN : padded_n(N);
}

// N of exactly this many state channels (Mamba's default) takes score_chunk_kernel's
// register-resident path. Its term loop's bound is a constant, so no term is compared with N:
// a bound of "at most kRegisterN" costs a compare a term, as many as the exponentials.
constexpr int kRegisterN = 16;

// max for the max criteria, with a NaN anywhere making the result NaN.
struct MaxNan {
  __device__ double operator()(double a, double b) const { return a != a || b != b ? NAN : (a > b ? a : b); }
};

// (Q1) and the channel reduction: scores[b, t] = reduce_d Δy_T(t)[d] with
//   Δy_T(t)[d] = (Σ_{k<N} (C_T[k]·B_t[k])·2^(AT[k,d]·S[b,t,d]))·(Δ_t[d]·u_t[d]),   T = n − 1,
// the terms added in k order as on the CPU. simba: max_d; simba-abs: max_d |·|; simba-l2:
// sqrt(Σ_d (·)²) in double. A NaN in the row makes the score NaN.
// Launch: grid (ceil(n / kRows), B), block kThreads, dynamic shared memory
// kRows·cb_stride(N)·sizeof(acc_t<T>) (row r's products C_T[k]·B_t[k] at cb[r·cb_stride(N) + k],
// zeros after N). Block (c, b) owns scores[b, t] for t in chunk c; thread x forms the channels
// d = x, x + kThreads, ... of every row, each channel walking the rows from the chunk's last
// (S carried in a register), and folds them into its partial part[r][x] (max, or sum of
// squares, in double); then warp w reduces rows w, w + 8, ...: lane j combines the partials
// j, j + 32, ... in order, then the warp's butterfly. AT (N, Di) (transpose_a_kernel) makes a
// warp's loads of A[·, k] consecutive. The loops' bounds are the same for every thread, so all
// of them reach the barriers.
template <class T, int kN>
__global__ void __launch_bounds__(kThreads)
    score_chunk_kernel(acc_t<T>* scores, const double* suffix, SeqView<const T> u, SeqView<const T> delta,
                       const acc_t<T>* AT, SeqView<const T> Bm, SeqView<const T> Cm, int64_t L, int64_t n, int64_t Di,
                       int64_t N, SimbaCriterion criterion) {
  using Acc = acc_t<T>;
  extern __shared__ __align__(16) unsigned char cb_bytes[];
  Acc* cb = reinterpret_cast<Acc*>(cb_bytes);
  __shared__ double part[kRows][kThreads];
  const int64_t c = blockIdx.x, b = blockIdx.y, chunks = gridDim.x;
  const int64_t lo = c * kRows, rows = min(kRows, n - lo), Np = cb_stride<kN>(N);
  const bool l2 = criterion == SimbaCriterion::SimbaL2, use_abs = criterion == SimbaCriterion::SimbaAbs;
  const double init = l2 ? 0.0 : -INFINITY;
  const T* CT = Cm.p + (b * L + n - 1) * Cm.ld;
  for (int64_t e = threadIdx.x; e < kRows * Np; e += kThreads) {
    const int64_t r = e / Np, k = e % Np;
    cb[e] = r < rows && k < N ? Acc(CT[k]) * Acc(Bm.p[(b * L + lo + r) * Bm.ld + k]) : Acc(0);
  }
  for (int r = 0; r < kRows; ++r) part[r][threadIdx.x] = init;
  __syncthreads();
  for (int64_t d = threadIdx.x; d < Di; d += kThreads) {
    // With kN, the channel's column of AT is loaded once into registers for all the chunk's
    // rows (reading it per row and term was B·n·Di·N loads a layer, mostly from L2).
    Acc a[kN > 0 ? kN : 1];
    if constexpr (kN > 0) {
#pragma unroll
      for (int k = 0; k < kN; ++k) a[k] = AT[k * Di + d];
    }
    double acc = suffix[(b * chunks + c) * Di + d];  // S at the chunk's last row
    // The row's Δ and u, walked up from the chunk's last row (one pointer step a row).
    const T* dp = delta.p + (b * L + lo + rows - 1) * delta.ld + d;
    const T* up = u.p + (b * L + lo + rows - 1) * u.ld + d;
    for (int r = int(rows) - 1; r >= 0; --r, dp -= delta.ld, up -= u.ld) {
      const Acc s = Acc(acc), dt = Acc(*dp);
      const Acc* cbr = cb + r * Np;
      Acc v = Acc(0);
      if constexpr (kN > 0) {
#pragma unroll
        for (int k = 0; k < kN; ++k) v += cbr[k] * exp2_t(a[k] * s);
      } else {
        for (int64_t k = 0; k < N; ++k) v += cbr[k] * exp2_t(AT[k * Di + d] * s);
      }
      v *= dt * Acc(*up);
      double& p = part[r][threadIdx.x];
      p = l2 ? p + double(v) * double(v) : MaxNan{}(p, double(use_abs ? abs_t(v) : v));
      acc += double(dt);
    }
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int r = warp; r < rows; r += kThreads / 32) {
    double x = part[r][lane];
    for (int j = lane + 32; j < kThreads; j += 32) x = l2 ? x + part[r][j] : MaxNan{}(x, part[r][j]);
    x = l2 ? cuda_reduce::warp_reduce(x, Sum{}) : cuda_reduce::warp_reduce(x, MaxNan{});
    if (lane == 0) scores[b * n + lo + r] = l2 ? Acc(sqrt(x)) : Acc(x);
  }
}

// The selection order of select_kept as a key: a NaN score ranks as −∞, and −0 becomes +0
// (the CPU compares them equal; their bits differ). A bfloat16 score is compared as its exact
// float value.
template <class T>
__device__ inline acc_t<T> select_key(T score) {
  const acc_t<T> s = acc_t<T>(score);
  return s != s ? acc_t<T>(-INFINITY) : s + acc_t<T>(0);
}

// A key's bits, turned so that unsigned comparison orders them as the keys (never NaN): the
// sign bit set for the non-negative keys, every bit flipped for the negative ones.
__device__ inline uint32_t ordered_bits(float x) {
  const uint32_t u = __float_as_uint(x);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}
__device__ inline uint64_t ordered_bits(double x) {
  const uint64_t u = static_cast<uint64_t>(__double_as_longlong(x));
  return u & 0x8000000000000000ull ? ~u : u | 0x8000000000000000ull;
}

// The choice of next[b, :] (ssm/simba_score.h): the anchor i = n − 1 and the k − 1 best other i
// (score descending, ties to the smaller i), written in ascending i, by one block a sequence:
//   1. radix selection of τ, the (k − 1)-th largest key among the n − 1 candidates i < n − 1,
//      kRadixBits bits a pass from the top: a pass counts the candidates that agree with τ's
//      bits found so far into a histogram of their next digit and takes the digit where the
//      running count from the top reaches the rank still wanted; what remains wanted after the
//      last pass is r, how many of the candidates equal to τ are kept;
//   2. one walk over i ascending that keeps every candidate above τ, the first r equal to it
//      (a block scan ranks the ties in i order: ties go to the smaller i) and the anchor, and
//      writes each kept i's kept[b, i] at its exclusive block-scan slot.
// The keys are compared exactly, so the kept sets are the CPU's whenever the scores are, and
// the histogram counts are integers, whose totals do not depend on the order of the atomics.
// Launch: grid B, block kSelectThreads; block b owns sequence b. A pass's loop runs whole warps
// (lanes past n − 1 take part without a digit) so that a warp's lanes with the same digit add
// their count once (__match_any_sync). The walk goes in tiles of kSelectThreads·kSelectPer, a
// thread taking kSelectPer consecutive i.
constexpr int kSelectThreads = 1024, kSelectPer = 8, kRadixBits = 8, kBuckets = 1 << kRadixBits;

template <class T>
__global__ void __launch_bounds__(kSelectThreads)
    select_kernel(int64_t* next, const T* scores, const int64_t* kept, int64_t n, int64_t k) {
  using U = decltype(ordered_bits(select_key(T(0))));
  using BlockScan = cub::BlockScan<int, kSelectThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ int hist[kBuckets];
  __shared__ U chosen_tau;
  __shared__ int chosen_rank;
  const int64_t b = blockIdx.x, m = n - 1;  // candidates i < m; i = m is the anchor
  const T* s = scores + b * n;
  const int lane = threadIdx.x % 32;

  U tau = 0, mask = 0;  // τ's bits found so far, and which they are
  int rank = int(k - 1);  // rank of τ among the candidates that agree with it so far (1 = the largest)
  for (int shift = int(sizeof(U)) * 8 - kRadixBits; rank > 0 && shift >= 0; shift -= kRadixBits) {
    for (int j = threadIdx.x; j < kBuckets; j += kSelectThreads) hist[j] = 0;
    __syncthreads();
    for (int64_t i0 = 0; i0 < m; i0 += kSelectThreads) {
      const int64_t i = i0 + threadIdx.x;
      int digit = -1;
      if (i < m) {
        const U u = ordered_bits(select_key(s[i]));
        if ((u & mask) == tau) digit = int(u >> shift) & (kBuckets - 1);
      }
      const unsigned peers = __match_any_sync(0xffffffffu, digit);
      if (digit >= 0 && lane == __ffs(peers) - 1) atomicAdd(&hist[digit], __popc(peers));
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      // Lane l holds the kBuckets / 32 buckets below top = kBuckets − 1 − l·kBuckets / 32; an
      // inclusive scan over the lanes counts the candidates at or above each lane's buckets.
      constexpr int kPerLane = kBuckets / 32;
      const int top = kBuckets - 1 - lane * kPerLane;
      int count = 0;
      for (int j = 0; j < kPerLane; ++j) count += hist[top - j];
      int upto = count;
      for (int off = 1; off < 32; off *= 2) {
        const int v = __shfl_up_sync(0xffffffffu, upto, off);
        if (lane >= off) upto += v;
      }
      int above = upto - count;  // candidates in the higher lanes' buckets
      if (above < rank && rank <= upto) {  // one lane
        int j = 0;
        while (above + hist[top - j] < rank) above += hist[top - j++];
        chosen_tau = tau | (U(top - j) << shift);
        chosen_rank = rank - above;
      }
    }
    __syncthreads();
    tau = chosen_tau;
    rank = chosen_rank;
    mask |= U(kBuckets - 1) << shift;
  }

  // rank is now r (0 when k = 1: no candidate is kept, and τ is not used).
  const bool any = k > 1;
  int64_t base = 0;  // kept so far
  int ties = 0;      // candidates equal to τ so far
  for (int64_t i0 = 0; i0 < n; i0 += int64_t(kSelectThreads) * kSelectPer) {
    const int64_t first = i0 + int64_t(threadIdx.x) * kSelectPer;
    U u[kSelectPer];
    int equal = 0;
#pragma unroll
    for (int e = 0; e < kSelectPer; ++e) {
      const int64_t i = first + e;
      u[e] = any && i < m ? ordered_bits(select_key(s[i])) : U(0);
      equal += any && i < m && u[e] == tau;
    }
    int tie = 0, tie_total = 0;
    BlockScan(scan_storage).ExclusiveSum(equal, tie, tie_total);
    tie += ties;
    bool keep[kSelectPer];
    int count = 0;
#pragma unroll
    for (int e = 0; e < kSelectPer; ++e) {
      const int64_t i = first + e;
      const bool candidate = any && i < m;
      keep[e] = i == m || (candidate && (u[e] > tau || (u[e] == tau && tie++ < rank)));
      count += keep[e];
    }
    __syncthreads();  // scan_storage is reused
    int slot = 0, total = 0;
    BlockScan(scan_storage).ExclusiveSum(count, slot, total);
#pragma unroll
    for (int e = 0; e < kSelectPer; ++e)
      if (keep[e]) next[b * k + base + slot++] = kept[b * n + first + e];
    base += total;
    ties += tie_total;
    __syncthreads();  // the next tile's scan reuses scan_storage
  }
}

// flat[b·T + j] = b·L + (j < n ? kept[b, j] : c + (j − n)), T = n + m, L = c + m.
// Launch: 1-D grid-stride loop over the B·T entries, a thread per entry.
__global__ void rows_kernel(int64_t* flat, const int64_t* kept, int64_t B, int64_t n, int64_t c, int64_t m) {
  const int64_t T = n + m, L = c + m;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < B * T; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = e / T, j = e % T;
    flat[e] = b * L + (j < n ? kept[b * n + j] : c + (j - n));
  }
}

}  // namespace

template <class T>
void simba_scores_batch_cuda(acc_t<T>* scores, SeqView<const T> u, SeqView<const T> delta, const T* A,
                             SeqView<const T> Bm, SeqView<const T> Cm, int64_t B, int64_t L, int64_t n, int64_t Di,
                             int64_t N, SimbaCriterion criterion) {
  const char* op = "simba_scores_batch_cuda";
  SIMBA_CHECK(B >= 0 && n >= 1 && n <= L && Di >= 1 && N >= 1,
              op << ": sizes must be B >= 0, 1 <= n <= L, Di >= 1, N >= 1, got B=" << B << " n=" << n << " L=" << L
                 << " Di=" << Di << " N=" << N);
  SIMBA_CHECK(is_ssm_criterion(criterion), op << ": criterion " << criterion_name(criterion)
                                              << " is not computed from the SSM (expected simba, simba-abs or simba-l2)");
  SIMBA_CHECK(u.ld >= Di && delta.ld >= Di && Bm.ld >= N && Cm.ld >= N,
              op << ": row strides u=" << u.ld << " delta=" << delta.ld << " B=" << Bm.ld << " C=" << Cm.ld
                 << " must be >= the widths Di=" << Di << " (u, delta) and N=" << N << " (B, C)");
  const int64_t chunks = (n + kRows - 1) / kRows;
  SIMBA_CHECK(B <= 65535 && B * n <= INT_MAX && chunks <= 65535 &&
                  kRows * padded_n(N) * int64_t(sizeof(acc_t<T>)) <= 16 * 1024,  // = cb_stride on both paths
              op << ": B=" << B << ", n=" << n << ", N=" << N << " exceed the CUDA grid or shared memory limits");
  cuda_check_device_pointer(scores, op, "scores");
  cuda_check_device_pointer(u.p, op, "u");
  cuda_check_device_pointer(delta.p, op, "delta");
  cuda_check_device_pointer(A, op, "A");
  cuda_check_device_pointer(Bm.p, op, "B");
  cuda_check_device_pointer(Cm.p, op, "C");
  if (B == 0) return;
  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  // The chunk sums and their suffix sums (B, chunks, Di) and AT (N, Di), freed (stream-ordered)
  // when they go out of scope after the launches.
  using Acc = acc_t<T>;
  const Device dev{DeviceType::CUDA, device};
  Storage sums_bytes(sizeof(double) * size_t(B * chunks * Di), dev);
  Storage suffix_bytes(sizeof(double) * size_t(B * chunks * Di), dev);
  Storage AT_bytes(sizeof(Acc) * size_t(N * Di), dev);
  double* sums = static_cast<double*>(sums_bytes.data());
  double* suffix = static_cast<double*>(suffix_bytes.data());
  Acc* AT = static_cast<Acc*>(AT_bytes.data());
  const unsigned channel_blocks = unsigned((Di + kThreads - 1) / kThreads);
  chunk_sum_kernel<T><<<dim3(channel_blocks, unsigned(chunks), unsigned(B)), kThreads, 0, stream>>>(sums, delta, L, n,
                                                                                                    Di);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  chunk_suffix_kernel<<<dim3(unsigned((Di + 31) / 32), unsigned(B)), dim3(32, kRuns), 0, stream>>>(suffix, sums,
                                                                                                   chunks, Di);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  transpose_a_kernel<T><<<cuda_grid_size(Di * N, kThreads), kThreads, 0, stream>>>(AT, A, Di, N);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  const dim3 grid{unsigned(chunks), unsigned(B)};
  if (N == kRegisterN)
    score_chunk_kernel<T, kRegisterN><<<grid, kThreads, sizeof(Acc) * size_t(kRows * cb_stride<kRegisterN>(N)), stream>>>(
        scores, suffix, u, delta, AT, Bm, Cm, L, n, Di, N, criterion);
  else
    score_chunk_kernel<T, 0><<<grid, kThreads, sizeof(Acc) * size_t(kRows * cb_stride<0>(N)), stream>>>(
        scores, suffix, u, delta, AT, Bm, Cm, L, n, Di, N, criterion);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void simba_select_cuda(int64_t* next, const T* scores, const int64_t* kept, int64_t B, int64_t n, int64_t k) {
  const char* op = "simba_select_cuda";
  SIMBA_CHECK(B >= 0 && k >= 1 && k <= n, op << ": sizes must be B >= 0 and 1 <= k <= n, got B=" << B << " n=" << n
                                              << " k=" << k);
  cuda_check_device_pointer(next, op, "next");
  cuda_check_device_pointer(scores, op, "scores");
  cuda_check_device_pointer(kept, op, "kept");
  SIMBA_CHECK(B <= 65535 && n <= INT_MAX,
              op << ": B=" << B << ", n=" << n << " exceed the CUDA grid limit 65535 or int counts");
  if (B == 0) return;
  select_kernel<T><<<unsigned(B), kSelectThreads, 0, cuda_stream(cuda_current_device())>>>(next, scores, kept, n, k);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void simba_rows_cuda(int64_t* flat, const int64_t* kept, int64_t B, int64_t n, int64_t c, int64_t m) {
  const char* op = "simba_rows_cuda";
  SIMBA_CHECK(B >= 0 && n >= 1 && n <= c && m >= 0, op << ": sizes must be B >= 0, 1 <= n <= c, m >= 0, got B=" << B
                                                        << " n=" << n << " c=" << c << " m=" << m);
  cuda_check_device_pointer(flat, op, "flat");
  cuda_check_device_pointer(kept, op, "kept");
  if (B == 0) return;
  cudaStream_t stream = cuda_stream(cuda_current_device());
  rows_kernel<<<cuda_grid_size(B * (n + m), kThreads), kThreads, 0, stream>>>(flat, kept, B, n, c, m);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

#define SIMBA_INSTANTIATE_SIMBA_CUDA(T)                                                                         \
  template void simba_scores_batch_cuda<T>(acc_t<T>*, SeqView<const T>, SeqView<const T>, const T*,             \
                                           SeqView<const T>, SeqView<const T>, int64_t, int64_t, int64_t, int64_t, \
                                           int64_t, SimbaCriterion);                                            \
  template void simba_select_cuda<T>(int64_t*, const T*, const int64_t*, int64_t, int64_t, int64_t);
SIMBA_INSTANTIATE_SIMBA_CUDA(float)
SIMBA_INSTANTIATE_SIMBA_CUDA(double)
SIMBA_INSTANTIATE_SIMBA_CUDA(bfloat16)
#undef SIMBA_INSTANTIATE_SIMBA_CUDA

}  // namespace simba
