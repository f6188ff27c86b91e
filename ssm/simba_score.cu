// ssm/simba_score.cu: the CUDA variants of the pruned forward's batched kernels declared in
// ssm/simba_score.h: the Simba scores (Q1)-(Q2), the top-k choice of the kept sets, and the
// row index of a layer's compacted sequence. The rules (criteria, order, anchor) are in
// ssm/simba_score.h; each kernel below states its shapes and launch geometry.
//
// Determinism: no atomics. Every sum runs in an order fixed by the sizes (a thread's own
// loop, or the fixed-order block reductions of tensor/cuda_reduce.cuh), and the selection is
// integer counting of exact comparisons, so results are bit-identical run to run.
// Types: inputs of T (float, double or bfloat16) are widened on load; S, the rows Δy_T(t) and
// the scores are acc_t<T> (float for bfloat16), the l2 sums double.
#include "ssm/simba_score.h"

#include <cuda_runtime.h>

#include <climits>
#include <cub/block/block_scan.cuh>

#include "tensor/cuda_reduce.cuh"
#include "tensor/cuda_check.cuh"
#include "tensor/storage.h"

namespace simba {
namespace {

using cuda_reduce::block_reduce;
using cuda_reduce::Max;
using cuda_reduce::Sum;

constexpr int kThreads = 256;

__device__ inline float exp_t(float v) { return expf(v); }
__device__ inline double exp_t(double v) { return exp(v); }
__device__ inline float abs_t(float v) { return fabsf(v); }
__device__ inline double abs_t(double v) { return fabs(v); }

// (Q2): S[b, t, d] = Σ_{k=t+1..n−1} delta[b, k, d], accumulated in double and stored in
// acc_t<T>. A single chain per channel down all n rows would wait one memory latency per row
// (n = 8192 of them at long contexts, with only B·Di threads to overlap), so the rows are cut
// into chunks of kCumsumChunk and summed in two passes:
//   chunk_sum_kernel: sums[b, c, d] = Σ_{k in chunk c} delta[b, k, d] (double, k descending);
//   chunk_scan_kernel: for t in chunk c, walking down from the chunk's last row, S[b, t, d] =
//     (Σ_{c' > c} sums[b, c', d], c' descending) + Σ_{t < k in chunk c} delta[b, k, d].
// The CPU adds one chain from the top instead; in double the two orders differ by far less
// than acc_t<T>'s rounding, below the few-ulp agreement of the scores (the header).
// Launch (both): grid (ceil(Di / kThreads), ceil(n / kCumsumChunk), B), block kThreads; thread
// x of block (bx, c, b) owns channel d = bx·kThreads + x of chunk c of sequence b. delta (B, L,
// Di) rows, S (B, n, Di) and sums (B, ceil(n / kCumsumChunk), Di) contiguous.
constexpr int64_t kCumsumChunk = 128;
template <class T>
__global__ void __launch_bounds__(kThreads)
    chunk_sum_kernel(double* __restrict__ sums, SeqView<const T> delta, int64_t L, int64_t n, int64_t Di) {
  const int64_t d = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (d >= Di) return;
  const int64_t c = blockIdx.y, b = blockIdx.z, chunks = gridDim.y;
  const int64_t lo = c * kCumsumChunk, hi = min(lo + kCumsumChunk, n);
  const T* __restrict__ dcol = delta.p + b * L * delta.ld + d;  // delta[b, k, d] = dcol[k·ld]
  double acc = 0.0;
  for (int64_t k = hi - 1; k >= lo; --k) acc += double(dcol[k * delta.ld]);
  sums[(b * chunks + c) * Di + d] = acc;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    chunk_scan_kernel(acc_t<T>* __restrict__ S, const double* __restrict__ sums, SeqView<const T> delta, int64_t L,
                      int64_t n, int64_t Di) {
  using Acc = acc_t<T>;
  const int64_t d = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (d >= Di) return;
  const int64_t c = blockIdx.y, b = blockIdx.z, chunks = gridDim.y;
  const int64_t lo = c * kCumsumChunk, hi = min(lo + kCumsumChunk, n);
  const T* __restrict__ dcol = delta.p + b * L * delta.ld + d;
  Acc* __restrict__ col = S + b * n * Di + d;  // S[b, t, d] = col[t·Di]
  double acc = 0.0;
  for (int64_t c2 = chunks - 1; c2 > c; --c2) acc += sums[(b * chunks + c2) * Di + d];
  for (int64_t t = hi - 1; t >= lo; --t) {
    col[t * Di] = Acc(acc);
    acc += double(dcol[t * delta.ld]);
  }
}

// A (Di, N) of T -> AT (N, Di) of acc_t<T>, so that the score kernel's threads, one channel d
// each, read A[d, k] for a fixed k from consecutive addresses. Launch: 1-D grid-stride over the
// Di·N entries.
template <class T>
__global__ void transpose_a_kernel(acc_t<T>* __restrict__ AT, const T* __restrict__ A, int64_t Di, int64_t N) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < Di * N; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = e / N, k = e % N;
    AT[k * Di + d] = acc_t<T>(A[e]);
  }
}

// (Q1) and the channel reduction: scores[b, t] = reduce_d Δy_T(t)[d] with
//   Δy_T(t)[d] = (Σ_{k<N} (C_T[k]·B_t[k])·exp(A[d,k]·S[b,t,d]))·(Δ_t[d]·u_t[d]),   T = n − 1,
// the terms added in k order as on the CPU. simba: max_d; simba-abs: max_d |·|; simba-l2:
// sqrt(Σ_d (·)²) in double. A NaN in the row makes the score NaN.
// Launch: grid B·n, block kThreads, dynamic shared memory N·sizeof(acc_t<T>) (the row's N
// products C_T[k]·B_t[k], formed once); block r = b·n + t owns scores[b, t]; thread x forms the
// channels d = x, x + kThreads, ..., reading A as AT (N, Di) (transpose_a_kernel) so that a
// warp's loads of A[·, k] are consecutive. The loops' bounds are the same for every thread, so
// all of them reach the barriers.
template <class T>
__global__ void __launch_bounds__(kThreads)
    score_rows_kernel(acc_t<T>* scores, const acc_t<T>* S, SeqView<const T> u, SeqView<const T> delta,
                      const acc_t<T>* AT, SeqView<const T> Bm, SeqView<const T> Cm, int64_t L, int64_t n, int64_t Di,
                      int64_t N, SimbaCriterion criterion) {
  using Acc = acc_t<T>;
  extern __shared__ __align__(16) unsigned char cb_bytes[];
  Acc* cb = reinterpret_cast<Acc*>(cb_bytes);
  __shared__ Acc max_scratch[kThreads / 32];
  __shared__ double sum_scratch[kThreads / 32];
  __shared__ int nan_scratch[kThreads / 32];
  const int64_t r = blockIdx.x, b = r / n, t = r % n;
  const Acc* St = S + r * Di;
  const T* Bt = Bm.p + (b * L + t) * Bm.ld;
  const T* CT = Cm.p + (b * L + n - 1) * Cm.ld;
  const T* ut = u.p + (b * L + t) * u.ld;
  const T* dt = delta.p + (b * L + t) * delta.ld;
  for (int64_t k = threadIdx.x; k < N; k += kThreads) cb[k] = Acc(CT[k]) * Acc(Bt[k]);
  __syncthreads();
  Acc m = -INFINITY;
  double ss = 0.0;
  int nan = 0;
  for (int64_t d = threadIdx.x; d < Di; d += kThreads) {
    const Acc s = St[d];
    Acc v = Acc(0);
    for (int64_t k = 0; k < N; ++k) v += cb[k] * exp_t(AT[k * Di + d] * s);
    v *= Acc(dt[d]) * Acc(ut[d]);
    nan |= v != v;
    if (criterion == SimbaCriterion::SimbaL2) {
      ss += double(v) * double(v);
    } else {
      const Acc a = criterion == SimbaCriterion::SimbaAbs ? abs_t(v) : v;
      m = a > m ? a : m;
    }
  }
  nan = block_reduce<kThreads>(nan, Max{}, nan_scratch);
  if (criterion == SimbaCriterion::SimbaL2)
    ss = block_reduce<kThreads>(ss, Sum{}, sum_scratch);
  else
    m = block_reduce<kThreads>(m, Max{}, max_scratch);
  if (threadIdx.x != 0) return;
  const Acc s = criterion == SimbaCriterion::SimbaL2 ? Acc(sqrt(ss)) : m;
  scores[r] = nan ? Acc(NAN) : s;
}

// The selection order of select_kept: a NaN score ranks as −∞. A bfloat16 score is compared as
// its exact float value.
template <class T>
__device__ inline acc_t<T> select_key(T score) {
  const acc_t<T> s = acc_t<T>(score);
  return s != s ? acc_t<T>(-INFINITY) : s;
}

// The choice of next[b, :] (ssm/simba_score.h): the anchor i = n − 1 and the k − 1 best other i
// (score descending, ties to the smaller i), written in ascending i. Two kernels, so that the
// O(n²) counting is spread over the whole GPU, not one block a sequence:
//
// rank_kernel: flags[b, i] = 1 iff i is kept: i is the anchor, or fewer than k − 1 other
// non-anchor j beat it (key_j > key_i, or key_j == key_i and j < i).
// Launch: grid (ceil(n / kThreads), B), block kThreads; thread x of block (bx, b) ranks
// candidate i = bx·kThreads + x of sequence b against every j, the keys read tile by tile
// through shared memory. Tile bounds are uniform over the block, so every thread reaches every
// barrier.
template <class T>
__global__ void __launch_bounds__(kThreads)
    rank_kernel(int* flags, const T* scores, int64_t n, int64_t k) {
  using Key = acc_t<T>;
  __shared__ Key tile[kThreads];
  const int64_t b = blockIdx.y, i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const T* s = scores + b * n;
  const int64_t others = n - 1;  // candidates that compete: every position but the anchor
  const Key key = i < others ? select_key(s[i]) : Key(0);
  int64_t beaten_by = 0;
  for (int64_t j0 = 0; j0 < others; j0 += kThreads) {
    __syncthreads();  // the previous tile's readers are done
    if (j0 + threadIdx.x < others) tile[threadIdx.x] = select_key(s[j0 + threadIdx.x]);
    __syncthreads();
    const int64_t jn = others - j0 < kThreads ? others - j0 : kThreads;
    if (i < others)
      for (int64_t jj = 0; jj < jn; ++jj) {
        const Key kj = tile[jj];
        beaten_by += kj > key || (kj == key && j0 + jj < i);
      }
  }
  if (i < n) flags[b * n + i] = i == n - 1 || beaten_by < k - 1 ? 1 : 0;
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
  SIMBA_CHECK(B <= 65535 && B * n <= INT_MAX && (n + kCumsumChunk - 1) / kCumsumChunk <= 65535 &&
                  N * int64_t(sizeof(acc_t<T>)) <= 48 * 1024,
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
  // S (B, n, Di), the chunk sums (B, chunks, Di) and AT (N, Di), freed (stream-ordered) when
  // they go out of scope after the launches.
  using Acc = acc_t<T>;
  const Device dev{DeviceType::CUDA, device};
  const int64_t chunks = (n + kCumsumChunk - 1) / kCumsumChunk;
  Storage S_bytes(sizeof(Acc) * size_t(B * n * Di), dev), sums_bytes(sizeof(double) * size_t(B * chunks * Di), dev);
  Storage AT_bytes(sizeof(Acc) * size_t(N * Di), dev);
  Acc* S = static_cast<Acc*>(S_bytes.data());
  double* sums = static_cast<double*>(sums_bytes.data());
  Acc* AT = static_cast<Acc*>(AT_bytes.data());
  const dim3 grid(unsigned((Di + kThreads - 1) / kThreads), unsigned(chunks), unsigned(B));
  chunk_sum_kernel<T><<<grid, kThreads, 0, stream>>>(sums, delta, L, n, Di);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  chunk_scan_kernel<T><<<grid, kThreads, 0, stream>>>(S, sums, delta, L, n, Di);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  transpose_a_kernel<T><<<cuda_grid_size(Di * N, kThreads), kThreads, 0, stream>>>(AT, A, Di, N);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  score_rows_kernel<T><<<unsigned(B * n), kThreads, sizeof(Acc) * size_t(N), stream>>>(scores, S, u, delta, AT, Bm,
                                                                                        Cm, L, n, Di, N, criterion);
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
  SIMBA_CHECK(B <= 65535, op << ": B=" << B << " exceeds the CUDA grid limit 65535");
  if (B == 0) return;
  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  // The keep flags (B, n), freed (stream-ordered) when `scratch` goes out of scope.
  Storage scratch(sizeof(int) * size_t(B * n), Device{DeviceType::CUDA, device});
  int* flags = static_cast<int*>(scratch.data());
  rank_kernel<T><<<dim3(unsigned((n + kThreads - 1) / kThreads), unsigned(B)), kThreads, 0, stream>>>(flags, scores,
                                                                                                     n, k);
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
