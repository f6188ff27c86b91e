// nn/cross_entropy.cu: the CUDA cross-entropy kernels declared in nn/cross_entropy.h
// (equations there).
//
// Design. Forward: a row of V logits is one block's work, read twice (max, then Σ exp(z − m)),
// each pass a fixed-order block reduction (tensor/cuda_reduce.cuh) with the sum in double, as on
// the CPU. Backward: elementwise over (row, class), each dlogits element owned by one thread, so
// every element is written exactly once (the −dloss of the target class is applied by the thread that
// owns it, no atomics). A target that is neither `ignore` nor in [0, V) is never used as an
// index: the row's outputs become NaN, and the forward records the first such target in the
// device's error record (tensor/cuda_check.cuh), which the host turns into an error at its next
// sync. Mean: one block sums the counted rows' losses in double (fixed-order block reduction)
// and counts them. Deterministic: every order is fixed by the sizes. The max, the exps and the
// losses are acc_t<T> (float for bfloat16 logits), the Σ exp double; a bfloat16 logit is widened
// on load and each dlogits element rounded once on store.
#include "nn/cross_entropy.h"

#include <cuda_runtime.h>

#include <climits>

#include "tensor/cuda_reduce.cuh"
#include "nn/kernel_check.h"
#include "tensor/cuda_check.cuh"

namespace simba {
namespace {

using cuda_reduce::block_reduce;
using cuda_reduce::Max;
using cuda_reduce::Sum;

constexpr int kThreads = 256;

// The name the host prints for a bad target. Passed to the kernel as a host address (never
// dereferenced on the device): the error record stores it for the host to read.
const char* const kTargetOp = "cross_entropy: target";

__device__ inline float exp_t(float v) { return expf(v); }
__device__ inline double exp_t(double v) { return exp(v); }

// losses[r], lse[r] <- logits (rows, V) contiguous row r, targets[r].
// Launch: grid rows, block kThreads; block r owns row r; thread j reads columns j, j+kThreads, ...
// The branch on the target is the same for the whole block, so every thread that reaches a
// block_reduce barrier is joined by all the others.
template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_forward_kernel(acc_t<T>* losses, acc_t<T>* lse, const T* logits, const int64_t* targets, int64_t V,
                                 int64_t ignore, CudaErrorRecord* error, const char* error_op) {
  using Acc = acc_t<T>;
  __shared__ Acc max_scratch[kThreads / 32];
  __shared__ double sum_scratch[kThreads / 32];
  const int64_t r = blockIdx.x;
  const int64_t target = targets[r];
  if (target == ignore || target < 0 || target >= V) {
    if (threadIdx.x == 0) {
      const Acc v = target == ignore ? Acc(0) : Acc(NAN);
      losses[r] = v;
      lse[r] = v;
      if (target != ignore) cuda_report_index_error(error, error_op, target, V);
    }
    return;
  }
  const T* z = logits + r * V;
  Acc m = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += kThreads) m = Acc(z[v]) > m ? Acc(z[v]) : m;
  m = block_reduce<kThreads>(m, Max{}, max_scratch);
  double s = 0.0;
  for (int64_t v = threadIdx.x; v < V; v += kThreads) s += double(exp_t(Acc(z[v]) - m));
  s = block_reduce<kThreads>(s, Sum{}, sum_scratch);
  if (threadIdx.x == 0) {
    const double l = double(m) + log(s);
    lse[r] = Acc(l);
    losses[r] = Acc(l - double(Acc(z[target])));
  }
}

// dlogits[r, v] = (exp(logits[r, v] − lse[r]) − [v == target_r]) · dlosses[r]; 0 on ignored
// rows, NaN on rows with an invalid target.
// Launch: grid (rows, ceil(V / (kThreads·kBackwardPerThread))), block kThreads; block (r, y)
// owns kThreads·kBackwardPerThread consecutive columns of row r of the contiguous (rows, V)
// dlogits, thread j the columns c0 + j + k·kThreads, k < kBackwardPerThread (coalesced). The row
// comes from the grid, not from a 64-bit division of a flat index, and a thread issues all of its
// loads before the first exponential, so several are in flight at once.
constexpr int kBackwardPerThread = 8;

template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_backward_kernel(T* dlogits, const acc_t<T>* dlosses, const T* logits, const acc_t<T>* lse,
                                  const int64_t* targets, int64_t V, int64_t ignore) {
  using Acc = acc_t<T>;
  const int64_t r = blockIdx.x;
  const int64_t c0 = int64_t(blockIdx.y) * (kThreads * kBackwardPerThread) + threadIdx.x;
  const int64_t target = targets[r];
  T* out = dlogits + r * V;
  if (target == ignore || target < 0 || target >= V) {
    const T fill = target == ignore ? T(0) : T(NAN);
#pragma unroll
    for (int k = 0; k < kBackwardPerThread; ++k)
      if (c0 + k * kThreads < V) out[c0 + k * kThreads] = fill;
    return;
  }
  const T* z = logits + r * V;
  Acc x[kBackwardPerThread];
#pragma unroll
  for (int k = 0; k < kBackwardPerThread; ++k) x[k] = c0 + k * kThreads < V ? Acc(z[c0 + k * kThreads]) : Acc(0);
  const Acc g = dlosses[r], l = lse[r];
#pragma unroll
  for (int k = 0; k < kBackwardPerThread; ++k) {
    const int64_t v = c0 + k * kThreads;
    if (v >= V) break;
    Acc d = exp_t(x[k] - l) * g;
    if (v == target) d -= g;
    out[v] = T(d);
  }
}

// *loss = (Σ_{counted r} losses[r]) / count, *inv_count = 1 / count (both 0 when count = 0),
// counted = target != ignore (nn/cross_entropy.h). Launch: grid 1, block kThreads; thread j
// adds rows j, j + kThreads, ... in order (sum in double, count in int64), then the
// fixed-order block reductions; thread 0 writes both results.
template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_mean_kernel(T* loss, T* inv_count, const T* losses, const int64_t* targets, int64_t rows,
                              int64_t ignore) {
  __shared__ double sum_scratch[kThreads / 32];
  __shared__ long long count_scratch[kThreads / 32];
  double s = 0.0;
  long long n = 0;
  for (int64_t r = threadIdx.x; r < rows; r += kThreads) {
    if (targets[r] == ignore) continue;
    s += double(losses[r]);
    ++n;
  }
  s = block_reduce<kThreads>(s, Sum{}, sum_scratch);
  n = block_reduce<kThreads>(n, Sum{}, count_scratch);
  if (threadIdx.x != 0) return;
  const double inv = n > 0 ? 1.0 / double(n) : 0.0;
  *inv_count = T(inv);
  *loss = T(s * inv);
}

}  // namespace

template <class T>
void cross_entropy_mean_cuda(T* loss, T* inv_count, const T* losses, const int64_t* targets, int64_t rows,
                             int64_t ignore) {
  const char* op = "cross_entropy_mean_cuda";
  kernel_check::cross_entropy_mean(op, loss, inv_count, losses, targets, rows);
  cuda_check_device_pointer(loss, op, "loss");
  cuda_check_device_pointer(inv_count, op, "inv_count");
  cuda_check_device_pointer(losses, op, "losses");
  cuda_check_device_pointer(targets, op, "targets");
  cudaStream_t stream = cuda_stream(cuda_current_device());
  cross_entropy_mean_kernel<T><<<1, kThreads, 0, stream>>>(loss, inv_count, losses, targets, rows, ignore);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void cross_entropy_forward_cuda(acc_t<T>* losses, acc_t<T>* lse, const T* logits, const int64_t* targets,
                                int64_t rows, int64_t V, int64_t ignore) {
  const char* op = "cross_entropy_forward_cuda";
  kernel_check::cross_entropy_forward(op, losses, lse, logits, targets, rows, V);
  SIMBA_CHECK(rows <= INT_MAX, op << ": rows=" << rows << " exceeds the CUDA grid limit " << INT_MAX);
  cuda_check_device_pointer(losses, op, "losses");
  cuda_check_device_pointer(lse, op, "lse");
  cuda_check_device_pointer(logits, op, "logits");
  cuda_check_device_pointer(targets, op, "targets");
  if (rows == 0) return;
  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  cross_entropy_forward_kernel<T><<<unsigned(rows), kThreads, 0, stream>>>(losses, lse, logits, targets, V, ignore,
                                                                           cuda_error_record(device), kTargetOp);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void cross_entropy_backward_cuda(T* dlogits, const acc_t<T>* dlosses, const T* logits, const acc_t<T>* lse,
                                 const int64_t* targets, int64_t rows, int64_t V, int64_t ignore) {
  const char* op = "cross_entropy_backward_cuda";
  kernel_check::cross_entropy_backward(op, dlogits, dlosses, logits, lse, targets, rows, V);
  const int64_t column_blocks = (V + kThreads * kBackwardPerThread - 1) / (kThreads * kBackwardPerThread);
  SIMBA_CHECK(rows <= INT_MAX && column_blocks <= 65535,
              op << ": rows=" << rows << " or V=" << V << " exceeds the CUDA grid limits");
  cuda_check_device_pointer(dlogits, op, "dlogits");
  cuda_check_device_pointer(dlosses, op, "dlosses");
  cuda_check_device_pointer(logits, op, "logits");
  cuda_check_device_pointer(lse, op, "lse");
  cuda_check_device_pointer(targets, op, "targets");
  if (rows == 0) return;
  cudaStream_t stream = cuda_stream(cuda_current_device());
  cross_entropy_backward_kernel<T><<<dim3(unsigned(rows), unsigned(column_blocks)), kThreads, 0, stream>>>(
      dlogits, dlosses, logits, lse, targets, V, ignore);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

#define SIMBA_INSTANTIATE_CE_CUDA(T)                                                                        \
  template void cross_entropy_forward_cuda<T>(acc_t<T>*, acc_t<T>*, const T*, const int64_t*, int64_t, int64_t,  \
                                              int64_t);                                                          \
  template void cross_entropy_backward_cuda<T>(T*, const acc_t<T>*, const T*, const acc_t<T>*, const int64_t*,   \
                                               int64_t, int64_t, int64_t);
SIMBA_INSTANTIATE_CE_CUDA(float)
SIMBA_INSTANTIATE_CE_CUDA(double)
SIMBA_INSTANTIATE_CE_CUDA(bfloat16)
#undef SIMBA_INSTANTIATE_CE_CUDA
// The mean runs over the losses, which are float32 or float64 whatever the logits' dtype.
template void cross_entropy_mean_cuda<float>(float*, float*, const float*, const int64_t*, int64_t, int64_t);
template void cross_entropy_mean_cuda<double>(double*, double*, const double*, const int64_t*, int64_t, int64_t);

}  // namespace simba
