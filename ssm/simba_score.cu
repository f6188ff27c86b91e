// ssm/simba_score.cu: the CUDA variants of the pruned forward's batched kernels declared in
// ssm/simba_score.h: the Simba scores (Q1)-(Q2), the top-k choice of the kept sets, and the
// row index of a layer's compacted sequence. The rules (criteria, order, anchor) are in
// ssm/simba_score.h; each kernel below states its shapes and launch geometry.
//
// Determinism: no atomics. Every sum runs in an order fixed by the sizes (a thread's own
// loop, or the fixed-order block reductions of tensor/cuda_reduce.cuh), and the selection is
// a stable sort of exact keys, so results are bit-identical run to run.
// Types: inputs of T (float, double or bfloat16) are widened on load; S, the rows Δy_T(t) and
// the scores are acc_t<T> (float for bfloat16), the l2 sums double.
#include "ssm/simba_score.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>

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
//   chunk_suffix_kernel: suffix[b, c, d] = Σ_{c' > c} sums[b, c', d] (c' descending):
//                        Σ_{k >= (c + 1)·kRows} delta[b, k, d] = S[b, t, d] at the chunk's last row t;
//   score_chunk_kernel:  for the chunk's rows t descending, S_t = that value, then += delta_t.
// The CPU adds one chain from the top instead; in double the two orders differ by far less than
// acc_t<T>'s rounding, below the few-ulp agreement of the scores (the header). delta (B, L, Di)
// rows; sums and suffix (B, ceil(n / kRows), Di) contiguous.
// Launch (chunk_sum_kernel): grid (ceil(Di / kThreads), ceil(n / kRows), B), block kThreads;
// thread x of block (bx, c, b) owns channel d = bx·kThreads + x of chunk c of sequence b.
// Launch (chunk_suffix_kernel): grid (ceil(Di / kThreads), B), block kThreads; a thread per
// (b, d) walks the chunks from the last.
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

__global__ void __launch_bounds__(kThreads)
    chunk_suffix_kernel(double* __restrict__ suffix, const double* __restrict__ sums, int64_t chunks, int64_t Di) {
  const int64_t d = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (d >= Di) return;
  const int64_t base = int64_t(blockIdx.y) * chunks * Di + d;
  // Separate input and output: the loads do not wait for the previous iteration's store, so they
  // run ahead of the chain of additions (in place, every step would wait one memory latency).
  double acc = 0.0;
#pragma unroll 8
  for (int64_t c = chunks - 1; c >= 0; --c) {
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

// Products a row of score_chunk_kernel's shared memory holds: kMaxN when the kernel keeps N <=
// kMaxN terms in registers (its unrolled loop may read that far), else padded_n(N).
template <int kMaxN>
__host__ __device__ inline int64_t cb_stride(int64_t N) {
  return kMaxN > 0 ? kMaxN : padded_n(N);
}

// N up to this many state channels (Mamba's default is 16) take score_chunk_kernel's
// register-resident path.
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
template <class T, int kMaxN>
__global__ void __launch_bounds__(kThreads)
    score_chunk_kernel(acc_t<T>* scores, const double* suffix, SeqView<const T> u, SeqView<const T> delta,
                       const acc_t<T>* AT, SeqView<const T> Bm, SeqView<const T> Cm, int64_t L, int64_t n, int64_t Di,
                       int64_t N, SimbaCriterion criterion) {
  using Acc = acc_t<T>;
  extern __shared__ __align__(16) unsigned char cb_bytes[];
  Acc* cb = reinterpret_cast<Acc*>(cb_bytes);
  __shared__ double part[kRows][kThreads];
  const int64_t c = blockIdx.x, b = blockIdx.y, chunks = gridDim.x;
  const int64_t lo = c * kRows, rows = min(kRows, n - lo), Np = cb_stride<kMaxN>(N);
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
    // With kMaxN, the channel's column of AT is loaded once into registers for all the chunk's
    // rows (reading it per row and term was B·n·Di·N loads a layer, mostly from L2).
    Acc a[kMaxN > 0 ? kMaxN : 1];
    if constexpr (kMaxN > 0) {
#pragma unroll
      for (int k = 0; k < kMaxN; ++k) a[k] = k < N ? AT[k * Di + d] : Acc(0);
    }
    double acc = suffix[(b * chunks + c) * Di + d];  // S at the chunk's last row
    for (int64_t r = rows - 1; r >= 0; --r) {
      const int64_t row = b * L + lo + r;
      const Acc s = Acc(acc), dt = Acc(delta.p[row * delta.ld + d]);
      const Acc* cbr = cb + r * Np;
      Acc v = Acc(0);
      if constexpr (kMaxN > 0) {
#pragma unroll
        for (int k = 0; k < kMaxN; ++k)
          if (k < N) v += cbr[k] * exp2_t(a[k] * s);
      } else {
        for (int64_t k = 0; k < N; ++k) v += cbr[k] * exp2_t(AT[k * Di + d] * s);
      }
      v *= dt * Acc(u.p[row * u.ld + d]);
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

// The selection order of select_kept as a sort key: a NaN score ranks as −∞, and −0 becomes +0
// (the CPU compares them equal, a radix sort would order them). A bfloat16 score is compared as
// its exact float value.
template <class T>
__device__ inline acc_t<T> select_key(T score) {
  const acc_t<T> s = acc_t<T>(score);
  return s != s ? acc_t<T>(-INFINITY) : s + acc_t<T>(0);
}

// The choice of next[b, :] (ssm/simba_score.h): the anchor i = n − 1 and the k − 1 best other i
// (score descending, ties to the smaller i), written in ascending i, in four steps:
//   key_kernel:  key[b, i] = select_key(scores[b, i]), pos[b, i] = i, for the n − 1 candidates
//                i < n − 1 of every sequence (the anchor is not a candidate);
//   a stable segmented sort of (key, pos) by key descending, one segment of n − 1 per sequence
//                (cub::DeviceSegmentedSort), so equal keys keep ascending i;
//   mark_kernel: flags[b, ·] = 1 at the first k − 1 sorted positions and at the anchor;
//   compact_kernel: the flagged i in ascending order.
// The sort compares the keys exactly, so the kept sets are the CPU's whenever the scores are.
//
// key_kernel / mark_kernel: 1-D grid-stride over B·n entries / B·k entries, a thread each.
// key_kernel also writes the sort's segments: segment b is entries [b·n, b·n + n − 1) (its
// candidates; the anchor's entry is left out), begin[b] and end[b].
template <class T>
__global__ void key_kernel(acc_t<T>* key, int* pos, int64_t* begin, int64_t* end, const T* scores, int64_t B,
                           int64_t n) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < B * n; e += int64_t(gridDim.x) * blockDim.x) {
    key[e] = select_key(scores[e]);
    pos[e] = int(e % n);
    if (e < B) {
      begin[e] = e * n;
      end[e] = e * n + n - 1;
    }
  }
}

__global__ void mark_kernel(int* flags, const int* sorted_pos, int64_t B, int64_t n, int64_t k) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < B * k; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = e / k, j = e % k;
    flags[b * n + (j == k - 1 ? n - 1 : sorted_pos[b * n + j])] = 1;
  }
}

// compact_kernel: next[b, slot] = kept[b, i] for the flagged i in ascending order, the slot an
// exclusive block scan of the flags. Launch: grid B, block kThreads; block b walks sequence b
// in tiles of kThreads (thread x takes i = i0 + x); the loop is uniform over the block.
__global__ void __launch_bounds__(kThreads)
    compact_kernel(int64_t* next, const int* flags, const int64_t* kept, int64_t n, int64_t k) {
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  const int64_t b = blockIdx.x;
  int64_t base = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kThreads) {
    const int64_t i = i0 + threadIdx.x;
    const int keep = i < n ? flags[b * n + i] : 0;
    int slot = 0, kept_here = 0;
    BlockScan(scan_storage).ExclusiveSum(keep, slot, kept_here);
    if (keep) next[b * k + base + slot] = kept[b * n + i];
    base += kept_here;
    __syncthreads();  // scan_storage is reused by the next tile's scan
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
                  kRows * std::max<int64_t>(padded_n(N), kRegisterN) * int64_t(sizeof(acc_t<T>)) <= 16 * 1024,
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
  chunk_suffix_kernel<<<dim3(channel_blocks, unsigned(B)), kThreads, 0, stream>>>(suffix, sums, chunks, Di);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  transpose_a_kernel<T><<<cuda_grid_size(Di * N, kThreads), kThreads, 0, stream>>>(AT, A, Di, N);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  const dim3 grid{unsigned(chunks), unsigned(B)};
  if (N <= kRegisterN)
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
  SIMBA_CHECK(B <= 65535 && B * n <= INT_MAX,
              op << ": B=" << B << ", n=" << n << " exceed the CUDA grid limit 65535 or int positions");
  if (B == 0) return;
  using Key = acc_t<T>;
  const int device = cuda_current_device();
  const Device dev{DeviceType::CUDA, device};
  cudaStream_t stream = cuda_stream(device);
  // Keys, positions (in and sorted) and keep flags, (B, n) each, freed (stream-ordered) when
  // they go out of scope after the launches.
  Storage keys(sizeof(Key) * size_t(B * n), dev), sorted_keys(sizeof(Key) * size_t(B * n), dev);
  Storage pos(sizeof(int) * size_t(B * n), dev), sorted_pos(sizeof(int) * size_t(B * n), dev);
  Storage flags_bytes(sizeof(int) * size_t(B * n), dev);
  int* flags = static_cast<int*>(flags_bytes.data());
  SIMBA_CUDA_CHECK(cudaMemsetAsync(flags, 0, sizeof(int) * size_t(B * n), stream));
  if (k > 1) {
    Storage segments(sizeof(int64_t) * size_t(2 * B), dev);
    int64_t* begin = static_cast<int64_t*>(segments.data());
    key_kernel<T><<<cuda_grid_size(B * n, kThreads), kThreads, 0, stream>>>(
        static_cast<Key*>(keys.data()), static_cast<int*>(pos.data()), begin, begin + B, scores, B, n);
    SIMBA_CUDA_CHECK(cudaGetLastError());
    size_t temp_bytes = 0;
    auto sort = [&](void* temp) {
      return cub::DeviceSegmentedSort::StableSortPairsDescending(
          temp, temp_bytes, static_cast<const Key*>(keys.data()), static_cast<Key*>(sorted_keys.data()),
          static_cast<const int*>(pos.data()), static_cast<int*>(sorted_pos.data()), B * n, B, begin, begin + B,
          stream);
    };
    SIMBA_CUDA_CHECK(sort(nullptr));
    Storage temp(std::max<size_t>(temp_bytes, 1), dev);
    SIMBA_CUDA_CHECK(sort(temp.data()));
  }
  mark_kernel<<<cuda_grid_size(B * k, kThreads), kThreads, 0, stream>>>(
      flags, static_cast<const int*>(sorted_pos.data()), B, n, k);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  compact_kernel<<<unsigned(B), kThreads, 0, stream>>>(next, flags, kept, n, k);
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
