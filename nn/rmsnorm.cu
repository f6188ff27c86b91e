// nn/rmsnorm.cu: the CUDA RMSNorm kernels declared in nn/rmsnorm.h (the equations and the
// backward's derivation are in nn/rmsnorm.h and nn/rmsnorm.cpp).
//
// Design. In the forward a row of D values is one block's work: its threads stride over the
// row (coalesced), the row's sum of x² is a fixed-order block reduction
// (tensor/cuda_reduce.cuh). In the backward a row is one warp's (its sum of dy·w·x a shuffle).
// dw (a sum over rows) is formed without atomics: block c of the backward owns the rows
// [c·kRowsPerChunk, (c+1)·kRowsPerChunk) and adds their dy·x·rstd into its own partial row
// part[c, :] (double; each column owned by one thread), and cuda_reduce::launch_sum_partials
// adds the partial rows in a fixed order. Every order is fixed by the sizes, so results are
// bit-identical run to run. Every sum and product runs in acc_t<T> (float for bfloat16) or
// double; a bfloat16 value is widened on load and each output element rounded once on store.
#include "nn/rmsnorm.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <memory>

#include "tensor/cuda_reduce.cuh"
#include "nn/kernel_check.h"
#include "tensor/cuda_check.cuh"
#include "tensor/storage.h"

namespace simba {
namespace {

using cuda_reduce::block_reduce;
using cuda_reduce::Sum;

constexpr int kThreads = 256;
constexpr int kRowsPerChunk = 32;  // rows per dw partial (and per backward block)

// Forward: y = v·rstd·w per row, rstd = 1/sqrt(mean(v²) + eps), v = x, or with kAdd
// v = x + add rounded to T and stored to sum (add_rmsnorm_forward; sum may be x: a thread reads
// its columns of x before it writes the same columns of sum, and reads back only those), or
// with kGather v = x's row gather[r] of S (gather_rmsnorm_forward; a row outside [0, S) is
// recorded in err under op's name and read as zeros). The modes are template arguments so the
// decode step's add + norm carries no branch of the gather's.
// Launch: grid rows, block kThreads; block r owns row r of x (or row gather[r]), add, sum, y
// (rows, D) contiguous and rstd[r]; thread j handles columns j, j + kThreads, ...
// A thread keeps its first kRegCols columns (all of a row of up to kRegCols·kThreads: Mamba's
// D up to 1024) in registers with their weights, loaded before the reduction: the kernel then
// waits on one round trip to memory, not a second one after the reduction for v and w (a decode
// step runs it once a layer on a few rows, so its time is its latency). Columns past those are
// read again after the reduction. A thread's terms of the sum still come in column order.
constexpr int kRegCols = 4;
template <class T, bool kAdd, bool kGather>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_forward_kernel(T* y, acc_t<T>* rstd, const T* x, const T* add, T* sum, const T* w, int64_t D,
                           double eps, const int64_t* gather, int64_t S, CudaErrorRecord* err, const char* op) {
  static_assert(!(kAdd && kGather), "the add writes sum's row r, the gather reads x's row gather[r]");
  using Acc = acc_t<T>;
  __shared__ Acc scratch[kThreads / 32];
  const int64_t r = blockIdx.x;
  int64_t src = r;
  bool valid = true;
  if constexpr (kGather) {
    src = gather[r];
    valid = src >= 0 && src < S;
    if (!valid && threadIdx.x == 0) cuda_report_index_error(err, op, src, S);
  }
  const T* xr = x + (valid ? src : 0) * D;
  T* yr = y + r * D;
  T* sr = kAdd ? sum + r * D : nullptr;
  const auto load = [&](int64_t j) {  // v_j, stored to sum with kAdd
    T v = valid ? xr[j] : T(0);
    if constexpr (kAdd) {
      v = T(Acc(v) + Acc(add[r * D + j]));
      sr[j] = v;
    }
    return Acc(v);
  };
  constexpr int64_t kKept = int64_t(kRegCols) * kThreads;  // columns below this stay in registers
  Acc ss = 0, v[kRegCols], wv[kRegCols];
#pragma unroll
  for (int i = 0; i < kRegCols; ++i) {
    const int64_t j = threadIdx.x + int64_t(i) * kThreads;
    v[i] = j < D ? load(j) : Acc(0);
    wv[i] = j < D ? Acc(w[j]) : Acc(0);
    ss += v[i] * v[i];
  }
  for (int64_t j = threadIdx.x + kKept; j < D; j += kThreads) {
    const Acc vj = load(j);
    ss += vj * vj;
  }
  ss = block_reduce<kThreads>(ss, Sum{}, scratch);
  const Acc s = Acc(1.0 / sqrt(double(ss) / double(D) + eps));
  if (threadIdx.x == 0) rstd[r] = s;
#pragma unroll
  for (int i = 0; i < kRegCols; ++i) {
    const int64_t j = threadIdx.x + int64_t(i) * kThreads;
    if (j < D) yr[j] = T(v[i] * s * wv[i]);
  }
  const T* vr = kAdd ? sr : xr;
  for (int64_t j = threadIdx.x + kKept; j < D; j += kThreads) yr[j] = T(Acc(valid ? vr[j] : T(0)) * s * Acc(w[j]));
}

// Backward: dx_k = s·w_k·dy_k − (s³·x_k/D)·Σ_j dy_j·w_j·x_j per row (if dx; added to dx's
// element when add_dx), and the partial
// part[c, j] = Σ_{rows r of chunk c} dy[r,j]·x[r,j]·s_r (if part).
// Launch: grid ceil(rows / kRowsPerChunk), block kThreads; block c owns rows
// c·kRowsPerChunk .. min(rows, (c+1)·kRowsPerChunk) − 1.
// dx: warp w takes rows r0 + w, r0 + w + kWarps, ...; a row is read in segments of 32·kPer
// columns, lane l holding columns l, l + 32, ... of a segment in registers, so every load of
// a segment is in flight at once; the row's sum is a shuffle (no block barrier). A row of at
// most 32·kPer columns is one segment, read once; a longer one is read again for dx.
// part: thread j then takes columns j, j + kThreads, ... and walks the chunk's rows in order
// (the CPU's order: the same bits), the only writer of part[c, those columns]; the rows were
// just read, so it reads them from cache.
// dy, x, dx (rows, D) contiguous; w (D); rstd (rows); part (chunks, D) double.
template <class T, int kPer>
__global__ void __launch_bounds__(kThreads, 2)
    rmsnorm_backward_kernel(T* dx, double* part, const T* dy, const T* x, const T* w, const acc_t<T>* rstd,
                            int64_t rows, int64_t D, bool add_dx) {
  using Acc = acc_t<T>;
  constexpr int kWarps = kThreads / 32, kSegment = 32 * kPer;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t r0 = blockIdx.x * int64_t(kRowsPerChunk);
  const int64_t r1 = rows - r0 < kRowsPerChunk ? rows : r0 + kRowsPerChunk;
  if (dx) {
    for (int64_t r = r0 + warp; r < r1; r += kWarps) {
      const T* xr = x + r * D;
      const T* dyr = dy + r * D;
      Acc vdy[kPer], vx[kPer];
      auto load = [&](int64_t j0) {
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
          const int64_t j = j0 + lane + 32 * e;
          const bool in = j < D;
          vdy[e] = in ? Acc(dyr[j]) : Acc(0);
          vx[e] = in ? Acc(xr[j]) : Acc(0);
        }
      };
      Acc dot = 0;  // Σ_j dy_j·w_j·x_j
      for (int64_t j0 = 0; j0 < D; j0 += kSegment) {
        load(j0);
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
          const int64_t j = j0 + lane + 32 * e;
          if (j < D) dot += vdy[e] * Acc(w[j]) * vx[e];
        }
      }
#pragma unroll
      for (int off = 16; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
      const Acc s = rstd[r];
      const double sd = s;
      const Acc a = s, b = Acc(sd * sd * sd * double(dot) / double(D));
      T* dxr = dx + r * D;
      for (int64_t j0 = 0; j0 < D; j0 += kSegment) {
        if (D > kSegment) load(j0);  // one segment: still in registers
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
          const int64_t j = j0 + lane + 32 * e;
          vdy[e] = j < D ? a * Acc(w[j]) * vdy[e] - b * vx[e] : Acc(0);
        }
        if (add_dx) {  // every load of the segment's prior dx before its first store
#pragma unroll
          for (int e = 0; e < kPer; ++e) {
            const int64_t j = j0 + lane + 32 * e;
            vx[e] = j < D ? Acc(dxr[j]) : Acc(0);
          }
#pragma unroll
          for (int e = 0; e < kPer; ++e) vdy[e] += vx[e];
        }
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
          const int64_t j = j0 + lane + 32 * e;
          if (j < D) dxr[j] = T(vdy[e]);
        }
      }
    }
  }
  if (part) {
    for (int64_t j = threadIdx.x; j < D; j += kThreads) {
      double sum = 0.0;
#pragma unroll 8
      for (int i = 0; i < kRowsPerChunk; ++i) {
        const int64_t r = r0 + i;
        if (r < r1) sum += double(Acc(dy[r * D + j])) * double(Acc(x[r * D + j])) * double(rstd[r]);
      }
      part[blockIdx.x * D + j] = sum;
    }
  }
}

void check_cuda_sizes(const char* op, int64_t rows) {
  SIMBA_CHECK(rows <= INT_MAX, op << ": rows=" << rows << " exceeds the CUDA grid limit " << INT_MAX);
}

// The checks and the launch the forward variants share; kAdd: add into x (updated in place)
// before the norm; kGather: gather (rows of them, into x's S rows) names the rows of x to normalise.
template <class T, bool kAdd, bool kGather>
void launch_rmsnorm_forward(const char* op, T* y, acc_t<T>* rstd, const T* x, const T* add, T* sum, const T* w,
                            int64_t rows, int64_t D, double eps, const int64_t* gather = nullptr, int64_t S = 0) {
  kernel_check::rmsnorm_forward(op, y, rstd, x, w, rows, D, eps);
  check_cuda_sizes(op, rows);
  if (kAdd && rows > 0) kernel_check::not_null(op, add, "add");
  if (kGather && rows > 0) kernel_check::not_null(op, gather, "rows");
  cuda_check_device_pointer(y, op, "y");
  cuda_check_device_pointer(rstd, op, "rstd");
  cuda_check_device_pointer(x, op, "x");
  cuda_check_device_pointer(add, op, "add");
  cuda_check_device_pointer(w, op, "w");
  cuda_check_device_pointer(gather, op, "rows");
  if (rows == 0) return;
  const int device = cuda_current_device();
  CudaErrorRecord* const err = kGather ? cuda_error_record(device) : nullptr;
  rmsnorm_forward_kernel<T, kAdd, kGather>
      <<<unsigned(rows), kThreads, 0, cuda_stream(device)>>>(y, rstd, x, add, sum, w, D, eps, gather, S, err, op);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}
}  // namespace

template <class T>
void rmsnorm_forward_cuda(T* y, acc_t<T>* rstd, const T* x, const T* w, int64_t rows, int64_t D, double eps) {
  launch_rmsnorm_forward<T, false, false>("rmsnorm_forward_cuda", y, rstd, x, nullptr, nullptr, w, rows, D, eps);
}

template <class T>
void add_rmsnorm_forward_cuda(T* y, acc_t<T>* rstd, T* x, const T* add, const T* w, int64_t rows, int64_t D,
                              double eps) {
  launch_rmsnorm_forward<T, true, false>("add_rmsnorm_forward_cuda", y, rstd, x, add, x, w, rows, D, eps);
}

template <class T>
void gather_rmsnorm_forward_cuda(T* y, acc_t<T>* rstd, const T* x, const int64_t* rows, const T* w, int64_t n,
                                 int64_t S, int64_t D, double eps) {
  launch_rmsnorm_forward<T, false, true>("gather_rmsnorm_forward_cuda", y, rstd, x, nullptr, nullptr, w, n, D, eps,
                                         rows, S);
}

template <class T>
void rmsnorm_backward_cuda(T* dx, T* dw, const T* dy, const T* x, const T* w, const acc_t<T>* rstd, int64_t rows,
                           int64_t D, bool add_dx) {
  const char* op = "rmsnorm_backward_cuda";
  kernel_check::rmsnorm_backward(op, dy, x, w, rstd, rows, D);
  check_cuda_sizes(op, rows);
  cuda_check_device_pointer(dx, op, "dx");
  cuda_check_device_pointer(dw, op, "dw");
  cuda_check_device_pointer(dy, op, "dy");
  cuda_check_device_pointer(x, op, "x");
  cuda_check_device_pointer(w, op, "w");
  cuda_check_device_pointer(rstd, op, "rstd");
  if (!dx && !dw) return;
  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  // The dw partials, freed (stream-ordered) when `scratch` goes out of scope after the launches.
  std::unique_ptr<Storage> scratch;
  if (dw) scratch = std::make_unique<Storage>(sizeof(double) * size_t(std::max<int64_t>(1, chunks * D)),
                                              Device{DeviceType::CUDA, device});
  double* part = dw ? static_cast<double*>(scratch->data()) : nullptr;
  if (chunks > 0) {
    // Registers for a row of up to 256 columns (8 a lane), else segments of 1024 (32 a lane;
    // 512 in double, whose 32 would not fit two blocks' registers).
    constexpr int kLong = sizeof(acc_t<T>) == 8 ? 16 : 32;
    if (D <= 256)
      rmsnorm_backward_kernel<T, 8><<<unsigned(chunks), kThreads, 0, stream>>>(dx, part, dy, x, w, rstd, rows, D,
                                                                                 add_dx);
    else
      rmsnorm_backward_kernel<T, kLong><<<unsigned(chunks), kThreads, 0, stream>>>(dx, part, dy, x, w, rstd, rows, D,
                                                                                 add_dx);
    SIMBA_CUDA_CHECK(cudaGetLastError());
  }
  if (dw) {
    cuda_reduce::launch_sum_partials(stream, dw, part, chunks, D);
    SIMBA_CUDA_CHECK(cudaGetLastError());
  }
}

#define SIMBA_INSTANTIATE_RMSNORM_CUDA(T)                                                                   \
  template void rmsnorm_forward_cuda<T>(T*, acc_t<T>*, const T*, const T*, int64_t, int64_t, double);         \
  template void add_rmsnorm_forward_cuda<T>(T*, acc_t<T>*, T*, const T*, const T*, int64_t, int64_t, double); \
  template void gather_rmsnorm_forward_cuda<T>(T*, acc_t<T>*, const T*, const int64_t*, const T*, int64_t,      \
                                               int64_t, int64_t, double);                                     \
  template void rmsnorm_backward_cuda<T>(T*, T*, const T*, const T*, const T*, const acc_t<T>*, int64_t, int64_t, \
                                         bool);
SIMBA_INSTANTIATE_RMSNORM_CUDA(float)
SIMBA_INSTANTIATE_RMSNORM_CUDA(double)
SIMBA_INSTANTIATE_RMSNORM_CUDA(bfloat16)
#undef SIMBA_INSTANTIATE_RMSNORM_CUDA

}  // namespace simba
