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
// - column tiles (sum only; where the block geometry would apply but inner >= 32, e.g. a bias
//   gradient: (B·L, Di) summed over its rows): a thread a column reads one element of every
//   row segment of kTileCols columns, so a warp reads 128 contiguous bytes where a block per
//   output would read one element per 32-byte sector. Block (tile, o, span) puts its lanes on
//   the tile's columns and its warps on k = w, w + kWarps, ... of its span of k; the warps'
//   sums are added in warp order through shared memory. When the tiles alone are too few
//   blocks the k range is cut into spans, each writing an acc_t partial, which
//   sum_dim_thread_kernel then adds in span order.
// sum_all: kSumAllBlocks (at most) blocks each reduce a grid-stride share in double into one
// partial, then cuda_reduce::launch_sum_partials adds the partials in a fixed order.
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

constexpr int kTileCols = 32;        // columns of a column tile: a warp's lanes
constexpr int64_t kSpanBlocks = 512;  // column-tile blocks aimed at (a few waves of 132 SMs)
constexpr int64_t kMinSpan = 256;     // rows a span walks at least

bool block_per_output(int64_t outer, int64_t n, int64_t inner) {
  return n >= kThreads && (inner == 1 || outer * inner < kFewOutputs);
}

// The column-tile geometry's spans of k for this shape (only sizes decide: same shape, same bits).
int64_t column_spans(int64_t outer, int64_t n, int64_t inner) {
  const int64_t tiles = outer * ((inner + kTileCols - 1) / kTileCols);
  const int64_t want = (kSpanBlocks + tiles - 1) / tiles, most = (n + kMinSpan - 1) / kMinSpan;
  return std::max<int64_t>(1, std::min(want, most));
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

// out[j] = Σ_k x[o, k, i], one thread per j, k in increasing order; x may be of the wider
// In = acc_t<T> (the column tiles' span partials).
template <class T, class In = T>
__global__ void sum_dim_thread_kernel(T* out, const In* x, int64_t outer, int64_t n, int64_t inner) {
  const int64_t m = outer * inner;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < m; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = j / inner, i = j - o * inner;
    const In* p = x + o * n * inner + i;
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

// Column tiles: Σ over span z of k of x[o, k, i] for the kTileCols columns i of tile blockIdx.x.
// Launch: grid (ceil(inner / kTileCols), outer, spans), block kThreads = kTileCols x kWarps;
// lane l takes column i = blockIdx.x·kTileCols + l, warp w the rows k0 + w, k0 + w + kWarps, ...
// of the span [k0, k1). One span: out[o, i] (T); several: part[o, span, i] (acc_t<T>).
template <class T>
__global__ void __launch_bounds__(kThreads)
    sum_dim_column_kernel(T* out, acc_t<T>* part, const T* x, int64_t n, int64_t inner, int64_t span) {
  using A = acc_t<T>;
  __shared__ A warp_sums[kWarps][kTileCols];
  const int lane = threadIdx.x % kTileCols, warp = threadIdx.x / kTileCols;
  const int64_t o = blockIdx.y, i = int64_t(blockIdx.x) * kTileCols + lane;
  const int64_t k0 = blockIdx.z * span, k1 = n < k0 + span ? n : k0 + span;
  A acc = 0;
  if (i < inner) {
    const T* p = x + o * n * inner + i;
#pragma unroll 4
    for (int64_t k = k0 + warp; k < k1; k += kWarps) acc += A(p[k * inner]);
  }
  warp_sums[warp][lane] = acc;
  __syncthreads();
  if (warp == 0 && i < inner) {
    A s = warp_sums[0][lane];
    for (int w = 1; w < kWarps; ++w) s += warp_sums[w][lane];
    if (gridDim.z == 1)
      out[o * inner + i] = T(s);
    else
      part[(o * gridDim.z + blockIdx.z) * inner + i] = s;
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
    if (block_per_output(outer, n, inner) && inner >= kTileCols) {
      using A = acc_t<scalar_t>;
      const int64_t spans = column_spans(outer, n, inner), span = (n + spans - 1) / spans;
      const dim3 grid(unsigned((inner + kTileCols - 1) / kTileCols), unsigned(outer), unsigned(spans));
      // The span partials, freed (stream-ordered) when `part` goes out of scope after the launches.
      Tensor part = Tensor::empty({spans > 1 ? outer * spans * inner : 0}, dtype_of<A>::value, out.device());
      A* pp = spans > 1 ? part.device_data<A>() : nullptr;
      sum_dim_column_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(po, pp, px, n, inner, span);
      if (spans > 1) {
        SIMBA_CUDA_CHECK(cudaGetLastError());
        sum_dim_thread_kernel<scalar_t, A><<<cuda_grid_size(m, kThreads), kThreads, 0, stream>>>(po, pp, outer, spans,
                                                                                                 inner);
      }
    } else if (block_per_output(outer, n, inner)) {
      sum_dim_block_kernel<scalar_t><<<output_blocks(m), kThreads, 0, stream>>>(po, px, outer, n, inner);
    } else {
      sum_dim_thread_kernel<scalar_t><<<cuda_grid_size(m, kThreads), kThreads, 0, stream>>>(po, px, outer, n, inner);
    }
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
