// ssm/delta_softplus.cu: delta_softplus_forward_cuda (ssm/delta_softplus.h).
//
// Launch: 1-D grid of ceil(ceil(M / kRows)·P / kThreads) blocks of kThreads; a row is P pieces of
// V channels (V = 16 / sizeof(T) when every row and pointer allows 16-byte pieces, else 1).
// Thread i owns piece p = i mod P of the kRows rows g·kRows .. g·kRows + kRows − 1, g = i / P: it
// loads its piece of the bias once and its rows' pieces all at once (coalesced: consecutive
// threads take consecutive pieces of a row), then applies (1) and stores.
#include "ssm/delta_softplus.h"

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "tensor/cuda_check.cuh"
#include "tensor/elementwise_math.h"

namespace simba {
namespace {

constexpr int kThreads = 256;
constexpr int kRows = 4;  // rows a thread takes

template <class T, int V>
__global__ void __launch_bounds__(kThreads)
    delta_softplus_kernel(T* __restrict__ delta, const T* __restrict__ dt, const T* __restrict__ bias, int64_t M,
                          int64_t P) {
  using A = acc_t<T>;
  using Pc = Pack<T, V>;
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x, g = i / P, p = i % P;
  const int64_t r0 = g * kRows;
  if (r0 >= M) return;
  const Pc b = reinterpret_cast<const Pc*>(bias)[p];
  Pc x[kRows];
#pragma unroll
  for (int k = 0; k < kRows; ++k)
    if (r0 + k < M) x[k] = reinterpret_cast<const Pc*>(dt)[(r0 + k) * P + p];
#pragma unroll
  for (int k = 0; k < kRows; ++k) {
    if (r0 + k >= M) break;
    Pc o;
#pragma unroll
    for (int j = 0; j < V; ++j) o.v[j] = T(pointwise::softplus_of(A(x[k].v[j]) + A(b.v[j])));  // (1)
    reinterpret_cast<Pc*>(delta)[(r0 + k) * P + p] = o;
  }
}

template <class T, int V>
void launch(T* delta, const T* dt, const T* bias, int64_t M, int64_t Di) {
  const int64_t P = Di / V, threads = (M + kRows - 1) / kRows * P;
  const int64_t blocks = (threads + kThreads - 1) / kThreads;
  SIMBA_CHECK(blocks <= INT32_MAX, "delta_softplus_forward_cuda: M=" << M << " Di=" << Di << " exceeds the grid limit");
  delta_softplus_kernel<T, V><<<unsigned(blocks), kThreads, 0, cuda_stream(cuda_current_device())>>>(delta, dt, bias,
                                                                                                       M, P);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

template <class T>
void delta_softplus_forward_cuda(T* delta, const T* dt, const T* bias, int64_t M, int64_t Di) {
  const char* op = "delta_softplus_forward_cuda";
  check_delta_softplus(op, delta, dt, bias, M, Di);
  cuda_check_device_pointer(delta, op, "delta");
  cuda_check_device_pointer(dt, op, "dt");
  cuda_check_device_pointer(bias, op, "bias");
  if (M == 0) return;
  constexpr int V = 16 / sizeof(T);
  const auto aligned = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  if (Di % V == 0 && aligned(delta) && aligned(dt) && aligned(bias))
    launch<T, V>(delta, dt, bias, M, Di);
  else
    launch<T, 1>(delta, dt, bias, M, Di);
}

template void delta_softplus_forward_cuda<float>(float*, const float*, const float*, int64_t, int64_t);
template void delta_softplus_forward_cuda<double>(double*, const double*, const double*, int64_t, int64_t);
template void delta_softplus_forward_cuda<bfloat16>(bfloat16*, const bfloat16*, const bfloat16*, int64_t, int64_t);

}  // namespace simba
