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

// out[i] = Σ_{q=0..Q-1} part[q·n + i] for i < n, added in q order in double, stored as T:
// the fixed-order second stage of the deterministic reductions over rows (per-block partials,
// one row of n per block or chunk). Q = 0 gives zeros (a sum over no rows).
// Launch: grid ceil(n / 256), block 256 (launch_sum_partials); thread i owns out[i].
template <class T>
__global__ void sum_partials_kernel(T* out, const double* part, int64_t Q, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  double acc = 0.0;
  for (int64_t q = 0; q < Q; ++q) acc += part[q * n + i];
  out[i] = T(acc);
}

template <class T>
inline void launch_sum_partials(cudaStream_t stream, T* out, const double* part, int64_t Q, int64_t n) {
  constexpr int kThreads = 256;
  sum_partials_kernel<T><<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(out, part, Q, n);
}

}  // namespace cuda_reduce
}  // namespace simba
