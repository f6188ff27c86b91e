// tensor/cuda_reduce.cuh: the block-wide reductions the CUDA kernels of every layer share
// (included by .cu files only). Every reduction has a fixed order that depends on the block
// size alone (xor butterfly inside a warp, then the warps' results added in warp order), so a
// kernel built on them gives bit-identical results on every run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace simba {
namespace cuda_reduce {

// Combines two values: a sum or a max.
struct Sum {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct Max {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};

// The reduction over the 32 lanes of a warp, the same value in every lane.
template <class T, class Op>
__device__ inline T warp_reduce(T v, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// The reduction over all kThreads threads of the block (kThreads a multiple of 32, equal to
// blockDim.x), returned to every thread. Every thread of the block must call it (it contains
// barriers). `scratch` is kThreads/32 values of shared memory; the first barrier lets the
// readers of a previous call finish before it is overwritten, so calls may follow each other.
template <int kThreads, class T, class Op>
__device__ inline T block_reduce(T v, Op op, T* scratch) {
  static_assert(kThreads % 32 == 0, "block size must be a multiple of the warp size");
  constexpr int kWarps = kThreads / 32;
  v = warp_reduce(v, op);
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  T r = scratch[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) r = op(r, scratch[w]);
  return r;
}

// The fixed-order second stage of the deterministic reductions (per-block partials, one row of
// n outputs a block or chunk): out[(i / width)·ld + i % width] = Σ_{q < Q} part[q·stride + i]
// for i < n, summed in P (the partials' type: double, or acc_t of the output) and rounded once
// to T. Q = 0 gives zeros (a sum over no rows).
// Why not a thread an output summing q = 0, 1, ...: its Q loads wait one after another, and for
// few outputs (RMSNorm's dw: 768 outputs over 256 partial rows) a handful of SMs does all the
// work, far below the copy bandwidth. Here block x owns `cols` = min(32,
// n rounded up to a power of two) consecutive outputs and cuts q into S = min(kSumThreads /
// cols, Q) contiguous slices [s·Q/S, (s+1)·Q/S): thread (s, c) sums its slice in q order,
// issuing kSumBatch loads before it adds them, and thread (0, c) adds the S slice sums in s
// order. The order depends on (Q, n) alone, so every run gives the same bits.
// Launch: grid ceil(n / cols), block cols·S threads (launch_sum_partials).
constexpr int kSumThreads = 256;
constexpr int kSumBatch = 8;

template <class T, class P>
__global__ void sum_partials_kernel(T* out, int64_t ld, int64_t width, const P* __restrict__ part, int64_t Q,
                                    int64_t stride, int64_t n, int cols) {
  __shared__ P slice_sum[kSumThreads];
  const int c = int(threadIdx.x) % cols, s = int(threadIdx.x) / cols, S = int(blockDim.x) / cols;
  const int64_t i = int64_t(blockIdx.x) * cols + c, q1 = Q * (s + 1) / S;
  P sum = 0;
  if (i < n) {
    int64_t q = Q * s / S;
    for (; q + kSumBatch <= q1; q += kSumBatch) {
      P v[kSumBatch];
#pragma unroll
      for (int j = 0; j < kSumBatch; ++j) v[j] = part[(q + j) * stride + i];
#pragma unroll
      for (int j = 0; j < kSumBatch; ++j) sum += v[j];
    }
    for (; q < q1; ++q) sum += part[q * stride + i];
  }
  slice_sum[threadIdx.x] = sum;
  __syncthreads();
  if (s != 0 || i >= n) return;
  for (int k = 1; k < S; ++k) sum += slice_sum[k * cols + c];
  out[(i / width) * ld + i % width] = T(sum);
}

template <class T, class P>
inline void launch_sum_partials(cudaStream_t stream, T* out, int64_t ld, int64_t width, const P* part, int64_t Q,
                                int64_t stride, int64_t n) {
  if (n <= 0) return;
  int cols = 1;
  while (cols < 32 && cols < n) cols *= 2;
  const int S = int(Q < kSumThreads / cols ? (Q > 0 ? Q : 1) : kSumThreads / cols);
  sum_partials_kernel<T, P><<<unsigned((n + cols - 1) / cols), unsigned(cols * S), 0, stream>>>(
      out, ld, width, part, Q, stride, n, cols);
}

// The same for a dense out and dense partial rows: out[i] = Σ_q part[q·n + i].
template <class T, class P>
inline void launch_sum_partials(cudaStream_t stream, T* out, const P* part, int64_t Q, int64_t n) {
  launch_sum_partials(stream, out, n, n, part, Q, n, n);
}

}  // namespace cuda_reduce
}  // namespace simba
