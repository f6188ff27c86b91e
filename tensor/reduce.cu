// tensor/reduce.cu: the CUDA kernel family of tensor/reduce.h.
//
// x is contiguous, seen as (outer, n, inner); output j = o·inner + i (m = outer·inner of them).
// Two geometries, chosen from the shape alone (so a given shape always takes the same path
// and gives the same bits):
// - thread per output (short reductions, or many outputs along a contiguous inner dim):
//   grid-stride over j, kThreads per block; the thread walks k = 0..n-1 in order, as the CPU
//   does, so sum_dim gives the CPU's bits. Neighbouring threads read neighbouring i: coalesced
//   when inner is large.
// - block per output (n >= kThreads with inner == 1, or too few outputs to fill the GPU):
//   grid-stride over j by blocks of kThreads; thread t takes k = t, t + kThreads, ..., then a
//   fixed-order block reduction (tensor/cuda_reduce.cuh for sums, the same butterfly with the
//   index as tie-break for max).
// sum_all: kSumAllBlocks (at most) blocks each reduce a grid-stride share in double into one
// partial, then one thread adds the partials in block order (cuda_reduce::launch_sum_partials).
// Sums and comparisons run in acc_t of the dtype (a bfloat16 widens on load and the result
// rounds once on store). No atomics anywhere: every run gives the same bits.
#include <cuda_runtime.h>

#include <algorithm>

#include "tensor/cuda_check.cuh"
#include "tensor/cuda_reduce.cuh"
#include "tensor/reduce.h"

namespace simba {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kSumAllBlocks = 1024;
constexpr int64_t kFewOutputs = 8192;  // below this many outputs, a thread each leaves the GPU idle

bool block_per_output(int64_t outer, int64_t n, int64_t inner) {
  return n >= kThreads && (inner == 1 || outer * inner < kFewOutputs);
}

unsigned output_blocks(int64_t m) { return static_cast<unsigned>(m < 65536 ? m : 65536); }

// max's combine: (ov, oi) replaces (v, idx) when larger, or equal with a lower index. Values
// compared with a NaN are never larger nor equal, so a NaN only survives as the start value
// x[o, 0, i] that every thread begins with (the CPU's rule: a NaN counts at k = 0 only).
template <class T>
__device__ inline void max_combine(T& v, long long& idx, T ov, long long oi) {
  if (ov > v || (ov == v && oi < idx)) {
    v = ov;
    idx = oi;
  }
}

// out[j] = Σ_k x[o, k, i], one thread per j, k in increasing order.
template <class T>
__global__ void sum_dim_thread_kernel(T* out, const T* x, int64_t outer, int64_t n, int64_t inner) {
  const int64_t m = outer * inner;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < m; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = j / inner, i = j - o * inner;
    const T* p = x + o * n * inner + i;
    acc_t<T> acc = 0;
    for (int64_t k = 0; k < n; ++k) acc += acc_t<T>(p[k * inner]);
    out[j] = T(acc);
  }
}

// out[j] = Σ_k x[o, k, i], one block per j.
template <class T>
__global__ void sum_dim_block_kernel(T* out, const T* x, int64_t outer, int64_t n, int64_t inner) {
  using A = acc_t<T>;
  __shared__ A scratch[kWarps];
  const int64_t m = outer * inner;
  for (int64_t j = blockIdx.x; j < m; j += gridDim.x) {  // uniform over the block: barriers are safe
    const int64_t o = j / inner, i = j - o * inner;
    const T* p = x + o * n * inner + i;
    A acc = 0;
    for (int64_t k = threadIdx.x; k < n; k += kThreads) acc += A(p[k * inner]);
    acc = cuda_reduce::block_reduce<kThreads>(acc, cuda_reduce::Sum{}, scratch);
    if (threadIdx.x == 0) out[j] = T(acc);
  }
}

// values[j], indices[j] = max, lowest argmax over k of x[o, k, i]; one thread per j (the CPU's loop).
template <class T>
__global__ void max_dim_thread_kernel(T* values, int64_t* indices, const T* x, int64_t outer, int64_t n,
                                      int64_t inner) {
  const int64_t m = outer * inner;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < m; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = j / inner, i = j - o * inner;
    const T* p = x + o * n * inner + i;
    acc_t<T> best = p[0];
    int64_t arg = 0;
    for (int64_t k = 1; k < n; ++k) {
      const acc_t<T> v = p[k * inner];
      if (v > best) {  // strict: ties keep the lowest index
        best = v;
        arg = k;
      }
    }
    values[j] = T(best);
    indices[j] = arg;
  }
}

// values[j], indices[j] as above, one block per j: every thread starts from k = 0, scans its
// own k in increasing order, then the warps combine by xor butterfly and thread 0 combines the
// warps in order.
template <class T>
__global__ void max_dim_block_kernel(T* values, int64_t* indices, const T* x, int64_t outer, int64_t n,
                                     int64_t inner) {
  using A = acc_t<T>;
  __shared__ A warp_v[kWarps];
  __shared__ long long warp_i[kWarps];
  const int64_t m = outer * inner;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t j = blockIdx.x; j < m; j += gridDim.x) {  // uniform over the block: barriers are safe
    const int64_t o = j / inner, i = j - o * inner;
    const T* p = x + o * n * inner + i;
    A best = p[0];
    long long arg = 0;
    for (int64_t k = threadIdx.x; k < n; k += kThreads) {
      const A v = p[k * inner];
      if (v > best) {
        best = v;
        arg = k;
      }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      const A ov = __shfl_xor_sync(0xffffffffu, best, offset);
      const long long oi = __shfl_xor_sync(0xffffffffu, arg, offset);
      max_combine(best, arg, ov, oi);
    }
    __syncthreads();  // thread 0 has finished reading the previous output's warp results
    if (lane == 0) {
      warp_v[warp] = best;
      warp_i[warp] = arg;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      A b = warp_v[0];
      long long a = warp_i[0];
      for (int w = 1; w < kWarps; ++w) max_combine(b, a, warp_v[w], warp_i[w]);
      values[j] = T(b);
      indices[j] = a;
    }
  }
}

// part[block] = Σ (in double) of the block's grid-stride share of x[0..n).
template <class T>
__global__ void sum_all_partials_kernel(double* part, const T* x, int64_t n) {
  __shared__ double scratch[kWarps];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    acc += static_cast<double>(acc_t<T>(x[i]));  // through acc_t: a bfloat16 widens by a shift
  acc = cuda_reduce::block_reduce<kThreads>(acc, cuda_reduce::Sum{}, scratch);
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

}  // namespace

void sum_dim_cuda(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  const int64_t m = outer * inner;
  if (m == 0) return;
  cudaStream_t stream = cuda_stream(out.device().index);
  SIMBA_DISPATCH_COMPUTE(x.dtype(), "sum", [&] {
    scalar_t* po = out.device_data<scalar_t>();
    const scalar_t* px = x.device_data<scalar_t>();
    if (block_per_output(outer, n, inner))
      sum_dim_block_kernel<scalar_t><<<output_blocks(m), kThreads, 0, stream>>>(po, px, outer, n, inner);
    else
      sum_dim_thread_kernel<scalar_t><<<cuda_grid_size(m, kThreads), kThreads, 0, stream>>>(po, px, outer, n, inner);
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void max_dim_cuda(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t outer, int64_t n,
                  int64_t inner) {
  const int64_t m = outer * inner;
  if (m == 0) return;
  cudaStream_t stream = cuda_stream(values.device().index);
  SIMBA_DISPATCH_COMPUTE(x.dtype(), "max", [&] {
    scalar_t* pv = values.device_data<scalar_t>();
    int64_t* pi = indices.device_data<int64_t>();
    const scalar_t* px = x.device_data<scalar_t>();
    if (block_per_output(outer, n, inner))
      max_dim_block_kernel<scalar_t><<<output_blocks(m), kThreads, 0, stream>>>(pv, pi, px, outer, n, inner);
    else
      max_dim_thread_kernel<scalar_t><<<cuda_grid_size(m, kThreads), kThreads, 0, stream>>>(pv, pi, px, outer, n,
                                                                                              inner);
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void sum_all_cuda(const Tensor& out, const Tensor& x) {
  const int64_t n = x.numel();
  const int64_t blocks = std::min<int64_t>(cuda_grid_size(n, kThreads), kSumAllBlocks);
  Tensor part = Tensor::empty({blocks}, DType::F64, out.device());
  cudaStream_t stream = cuda_stream(out.device().index);
  SIMBA_DISPATCH_COMPUTE(x.dtype(), "sum", [&] {
    sum_all_partials_kernel<scalar_t><<<unsigned(blocks), kThreads, 0, stream>>>(
        part.device_data<double>(), x.device_data<scalar_t>(), n);
    SIMBA_CUDA_CHECK(cudaGetLastError());
    cuda_reduce::launch_sum_partials(stream, out.device_data<scalar_t>(), part.device_data<double>(), blocks, 1);
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace simba
