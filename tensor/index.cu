// tensor/index.cu: the CUDA variants of the index kernels (tensor/index.h).
//
// Index checks. check_index_kernel looks at every index once (one thread each) and records the
// first one outside [0, S) with cuda_report_index_error; the host throws it at the next sync
// point, so no index is read on the host. The other kernels never use a bad index: the
// forward kernels write 0 in its place, the backward kernels drop its contribution.
//
// Forward (index_select, gather): one thread per output element (per 16-byte piece of a row,
// for index_select on rows of whole pieces), grid-stride, reads coalesced along the inner dim.
//
// Backward (index_add, embedding_backward, scatter_add) without atomics, in the CPU's order:
//   1. keys: the destination of each contribution (a row of dx for index_select_backward, an
//      element of dx for gather_backward) and its position in the index list; a bad index
//      gets the sentinel key one past the last destination, so it sorts last and is dropped;
//   2. cub::DeviceRadixSort::SortPairs of (key, position) over only the bits a key can use.
//      A radix sort is stable: the contributions to one destination stay in increasing
//      position;
//   3. one worker per run of equal keys adds the run's contributions in that order to dx's
//      value, in acc_t (float32 for a bfloat16 dx), and writes the result once.
// Every element of dx thus has one writer and a fixed order of additions, the same order the
// CPU loops use (increasing position), so the two variants give the same bits, and repeated
// runs do too. For embedding_backward at (V, D) = (50280, 768) and 8192 tokens the work is a
// sort of 8192 16-bit keys and one pass over the tokens' rows: O(tokens·D), independent of V
// beyond the zero fill of dweight. An index list the caller gives as strictly increasing
// (IndexOrder::Increasing) has one contribution a row of dx: add_increasing_rows_kernel adds
// each directly, checking the order as it goes, with no keys and no sort.
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "tensor/cuda_check.cuh"
#include "tensor/half_types.h"
#include "tensor/index.h"
#include "tensor/storage.h"

namespace simba {
namespace {

constexpr int kThreads = 256;

__device__ inline bool in_range(int64_t i, int64_t bound) { return i >= 0 && i < bound; }

// Records the first of index[0, count) outside [0, S). Launch: 1-D grid-stride over count.
__global__ void check_index_kernel(const int64_t* index, int64_t count, int64_t S, CudaErrorRecord* err,
                                   const char* op) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    if (!in_range(index[i], S)) cuda_report_index_error(err, op, index[i], S);
}

void check_indices(const char* op, const int64_t* index, int64_t count, int64_t S, int device,
                   cudaStream_t stream) {
  if (count == 0) return;
  check_index_kernel<<<cuda_grid_size(count, kThreads), kThreads, 0, stream>>>(index, count, S,
                                                                                cuda_error_record(device), op);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

// out (outer, n, inner) = x (outer, S, inner)[:, index[i], :]. Launch: 1-D grid-stride over
// the outer·n·inner elements of out.
template <class T>
__global__ void index_select_forward_kernel(T* out, const T* x, const int64_t* index, int64_t outer, int64_t S,
                                            int64_t n, int64_t inner) {
  const int64_t total = outer * n * inner;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / inner, j = e - r * inner;
    const int64_t o = r / n, s = index[r - o * n];
    out[e] = in_range(s, S) ? x[(o * S + s) * inner + j] : T{};
  }
}

// out[o, i, j] = x[o, index[o, i, j], j], x (outer, S, inner), out and index (outer, n, inner).
// Launch: 1-D grid-stride over the outer·n·inner elements of out.
template <class T>
__global__ void gather_forward_kernel(T* out, const T* x, const int64_t* index, int64_t outer, int64_t S,
                                      int64_t n, int64_t inner) {
  const int64_t total = outer * n * inner;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e % inner, o = e / (n * inner), s = index[e];
    out[e] = in_range(s, S) ? x[(o * S + s) * inner + j] : T(0);
  }
}

// Keys of the row scatter: key[i] = index[i] (the row of dx), or S when out of range;
// pos[i] = i. Launch: 1-D grid-stride over n.
__global__ void row_keys_kernel(uint64_t* key, int64_t* pos, const int64_t* index, int64_t n, int64_t S) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    key[i] = uint64_t(in_range(index[i], S) ? index[i] : S);
    pos[i] = i;
  }
}

// Keys of the element scatter: key[e] = (o·S + index[e])·inner + j (the element of dx
// (outer, S, inner)), or outer·S·inner when out of range; pos[e] = e. Launch: 1-D grid-stride
// over the outer·n·inner elements of index.
__global__ void element_keys_kernel(uint64_t* key, int64_t* pos, const int64_t* index, int64_t outer, int64_t S,
                                    int64_t n, int64_t inner) {
  const int64_t total = outer * n * inner;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e % inner, o = e / (n * inner), s = index[e];
    key[e] = uint64_t(in_range(s, S) ? (o * S + s) * inner + j : outer * S * inner);
    pos[e] = e;
  }
}

// dx (outer, S, inner) += dout (outer, n, inner) rows, by the sorted row keys and positions.
// Launch: grid-stride over the outer·n tasks (o, p), one block per task at a time; the block's
// threads stride over the inner columns. Only the task at the first position p of a run of
// equal keys (not the sentinel S) works: it adds dout rows (o, pos[p]), (o, pos[p+1]), ... of
// the run, in that order, onto dx row (o, key[p]); each element of that row has one thread.
// The branch depends on the task only, so a block's threads agree on it.
template <class T>
__global__ void add_row_runs_kernel(T* dx, const T* dout, const uint64_t* key, const int64_t* pos, int64_t outer,
                                    int64_t S, int64_t n, int64_t inner) {
  for (int64_t t = blockIdx.x; t < outer * n; t += gridDim.x) {
    const int64_t o = t / n, p = t - o * n;
    const uint64_t k = key[p];
    if (k == uint64_t(S) || (p > 0 && key[p - 1] == k)) continue;
    T* dst = dx + (o * S + int64_t(k)) * inner;
    const T* src = dout + o * n * inner;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) {
      acc_t<T> acc = dst[j];
      for (int64_t q = p; q < n && key[q] == k; ++q) acc += acc_t<T>(src[pos[q] * inner + j]);
      dst[j] = T(acc);
    }
  }
}

// dx (outer, S, inner) += dout (outer, n, inner) rows for a strictly increasing index: task
// (o, i) adds dout row (o, i) onto dx row (o, index[i]), the only contribution to that row. An
// index outside [max(0, index[i − 1] + 1), S) is recorded (by task (0, i)) and its row dropped;
// the host throws at the next sync, and the rows of dx such a list names are then unspecified
// (after a fall, two later tasks can name one row). The rounding is add_row_runs_kernel's for
// a run of one. Launch: grid-stride over the outer·n tasks, one block per task at a time; the
// block's threads stride over the inner columns (the branch depends on the task only).
template <class T>
__global__ void add_increasing_rows_kernel(T* dx, const T* dout, const int64_t* index, int64_t outer, int64_t S,
                                           int64_t n, int64_t inner, CudaErrorRecord* err, const char* op) {
  for (int64_t t = blockIdx.x; t < outer * n; t += gridDim.x) {
    const int64_t o = t / n, i = t - o * n, k = index[i];
    const int64_t low = i > 0 ? max(int64_t(0), index[i - 1] + 1) : 0;
    if (k < low || k >= S) {
      if (o == 0 && threadIdx.x == 0) cuda_report_index_error(err, op, k, S, low);
      continue;
    }
    T* dst = dx + (o * S + k) * inner;
    const T* src = dout + t * inner;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) dst[j] = T(acc_t<T>(dst[j]) + acc_t<T>(src[j]));
  }
}

// dx[key] += dout[pos] for the sorted element keys: the thread at the first position of a run
// of equal keys (not the sentinel) adds the run in order and writes dx[key] once.
// Launch: 1-D grid-stride over the total sorted pairs.
template <class T>
__global__ void add_element_runs_kernel(T* dx, const T* dout, const uint64_t* key, const int64_t* pos,
                                        int64_t total, uint64_t sentinel) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < total; p += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t k = key[p];
    if (k == sentinel || (p > 0 && key[p - 1] == k)) continue;
    acc_t<T> acc = dx[k];
    for (int64_t q = p; q < total && key[q] == k; ++q) acc += acc_t<T>(dout[pos[q]]);
    dx[k] = T(acc);
  }
}

// The (key, position) pairs of a scatter before and after the sort, in device scratch that is
// freed (stream-ordered, after the kernels queued before) with the object.
struct SortedScatter {
  Storage keys, pos, sorted_keys, sorted_pos;
  SortedScatter(int64_t count, Device d)
      : keys(sizeof(uint64_t) * count, d),
        pos(sizeof(int64_t) * count, d),
        sorted_keys(sizeof(uint64_t) * count, d),
        sorted_pos(sizeof(int64_t) * count, d) {}
  uint64_t* key_in() const { return static_cast<uint64_t*>(keys.data()); }
  int64_t* pos_in() const { return static_cast<int64_t*>(pos.data()); }
  const uint64_t* key_out() const { return static_cast<const uint64_t*>(sorted_keys.data()); }
  const int64_t* pos_out() const { return static_cast<const int64_t*>(sorted_pos.data()); }

  // Stable sort of the count pairs by key; every key is <= max_key, so only its low bits count.
  void sort(int64_t count, uint64_t max_key, Device d, cudaStream_t stream) {
    int bits = 1;
    while (bits < 64 && (max_key >> bits) != 0) ++bits;
    uint64_t* ko = static_cast<uint64_t*>(sorted_keys.data());
    int64_t* po = static_cast<int64_t*>(sorted_pos.data());
    size_t temp_bytes = 0;
    SIMBA_CUDA_CHECK(
        cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, key_in(), ko, pos_in(), po, count, 0, bits, stream));
    Storage temp(std::max<size_t>(temp_bytes, 1), d);
    SIMBA_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data(), temp_bytes, key_in(), ko, pos_in(), po, count, 0,
                                                     bits, stream));
  }
};

// Threads per block of add_row_runs_kernel: the inner row, rounded up to whole warps, at most
// kThreads.
int row_threads(int64_t inner) { return static_cast<int>(std::min<int64_t>(kThreads, (inner + 31) / 32 * 32)); }

}  // namespace

template <class T>
void index_select_forward_cuda(const char* op, int /*dim*/, T* out, const T* x, const int64_t* index,
                               int64_t outer, int64_t S, int64_t n, int64_t inner) {
  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  check_indices(op, index, n, S, device, stream);
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  // Rows of whole 16-byte pieces: the same kernel moves Bytes16 pieces (tensor/cuda_check.cuh).
  const int64_t row_bytes = inner * int64_t(sizeof(T));
  if (row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    const int64_t pieces = row_bytes / 16;
    index_select_forward_kernel<Bytes16><<<cuda_grid_size(outer * n * pieces, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<Bytes16*>(out), reinterpret_cast<const Bytes16*>(x), index, outer, S, n, pieces);
  } else {
    index_select_forward_kernel<T><<<cuda_grid_size(total, kThreads), kThreads, 0, stream>>>(out, x, index, outer,
                                                                                              S, n, inner);
  }
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void gather_forward_cuda(const char* op, int /*dim*/, T* out, const T* x, const int64_t* index, int64_t outer,
                         int64_t S, int64_t n, int64_t inner) {
  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  const int64_t total = outer * n * inner;
  check_indices(op, index, total, S, device, stream);
  if (total == 0) return;
  gather_forward_kernel<T><<<cuda_grid_size(total, kThreads), kThreads, 0, stream>>>(out, x, index, outer, S, n,
                                                                                      inner);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void index_select_backward_cuda(const char* op, int /*dim*/, T* dx, const T* dout, const int64_t* index,
                                int64_t outer, int64_t S, int64_t n, int64_t inner, IndexOrder order) {
  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  if (order == IndexOrder::Increasing) {  // its kernel checks every index (range and order)
    if (n == 0) return;
    // With nothing to add (outer or inner 0) one pass of n tasks still checks the indices.
    const bool empty = outer * inner == 0;
    const int64_t tasks_outer = empty ? 1 : outer, cols = empty ? 0 : inner;
    add_increasing_rows_kernel<T><<<cuda_grid_size(tasks_outer * n, 1), std::max(32, row_threads(cols)), 0, stream>>>(
        dx, dout, index, tasks_outer, S, n, cols, cuda_error_record(device), op);
    SIMBA_CUDA_CHECK(cudaGetLastError());
    return;
  }
  check_indices(op, index, n, S, device, stream);
  if (outer * n * inner == 0) return;
  const Device d{DeviceType::CUDA, device};
  SortedScatter sorted(n, d);
  row_keys_kernel<<<cuda_grid_size(n, kThreads), kThreads, 0, stream>>>(sorted.key_in(), sorted.pos_in(), index, n,
                                                                        S);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  sorted.sort(n, uint64_t(S), d, stream);
  add_row_runs_kernel<T><<<cuda_grid_size(outer * n, 1), row_threads(inner), 0, stream>>>(
      dx, dout, sorted.key_out(), sorted.pos_out(), outer, S, n, inner);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void gather_backward_cuda(const char* op, int /*dim*/, T* dx, const T* dout, const int64_t* index, int64_t outer,
                          int64_t S, int64_t n, int64_t inner) {
  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  const int64_t total = outer * n * inner;
  check_indices(op, index, total, S, device, stream);
  if (total == 0) return;
  const Device d{DeviceType::CUDA, device};
  const uint64_t sentinel = uint64_t(outer * S * inner);
  SortedScatter order(total, d);
  element_keys_kernel<<<cuda_grid_size(total, kThreads), kThreads, 0, stream>>>(order.key_in(), order.pos_in(),
                                                                               index, outer, S, n, inner);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  order.sort(total, sentinel, d, stream);
  add_element_runs_kernel<T><<<cuda_grid_size(total, kThreads), kThreads, 0, stream>>>(
      dx, dout, order.key_out(), order.pos_out(), total, sentinel);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

#define SIMBA_INDEX_FORWARD(T)                                                                                  \
  template void index_select_forward_cuda<T>(const char*, int, T*, const T*, const int64_t*, int64_t, int64_t, \
                                             int64_t, int64_t);                                                \
  template void gather_forward_cuda<T>(const char*, int, T*, const T*, const int64_t*, int64_t, int64_t, int64_t, \
                                       int64_t);
#define SIMBA_INDEX_BACKWARD(T)                                                                                  \
  template void index_select_backward_cuda<T>(const char*, int, T*, const T*, const int64_t*, int64_t, int64_t, \
                                              int64_t, int64_t, IndexOrder);                                    \
  template void gather_backward_cuda<T>(const char*, int, T*, const T*, const int64_t*, int64_t, int64_t,        \
                                        int64_t, int64_t);
SIMBA_INDEX_FORWARD(float)
SIMBA_INDEX_FORWARD(double)
SIMBA_INDEX_FORWARD(int64_t)
SIMBA_INDEX_FORWARD(bfloat16)  // the forwards only move values: every storage type
SIMBA_INDEX_FORWARD(float16)
SIMBA_INDEX_BACKWARD(float)
SIMBA_INDEX_BACKWARD(double)
SIMBA_INDEX_BACKWARD(bfloat16)

}  // namespace simba
