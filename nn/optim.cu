// nn/optim.cu: the CUDA multi-tensor optimiser kernels declared in nn/optim.h (the updates'
// equations are at the classes SGD and AdamW there).
//
// Design. One launch covers every tensor of the descriptor array: the grid is a fixed kBlocks
// blocks of kThreads threads, and each block walks the descriptors in order, grid-striding over
// each tensor's elements. Tensor k's elements start at block (b + k) mod kBlocks, so the many
// small tensors of a model (norm weights, biases) are spread over the blocks instead of all
// landing in block 0. For every k, the start blocks (b + k) mod kBlocks are a permutation of
// the blocks, so each element is visited by exactly one thread.
// The updates are elementwise, hence deterministic. The gradient norm is too: each block sums
// its elements' squares in double in a fixed order, one fixed-order block reduction gives the
// block's partial, and one block adds the kBlocks partials in a fixed order. kBlocks is a
// constant (not the device's SM count), so the bits do not depend on the GPU either.
// Nothing is read back: the norm and the clipping factor stay in device memory, and the
// factor reaches the step kernels through grad_scale.
#include "nn/optim.h"

#include <cuda_runtime.h>
#include <math_constants.h>

#include "tensor/cuda_reduce.cuh"
#include "nn/kernel_check.h"
#include "tensor/cuda_check.cuh"
#include "tensor/storage.h"

namespace simba {
namespace {

using cuda_reduce::block_reduce;
using cuda_reduce::Sum;

constexpr int kThreads = 256;
constexpr int kBlocks = 512;
constexpr int64_t kStride = int64_t(kBlocks) * kThreads;

// The first element of tensor k this thread updates; the next ones are kStride apart.
__device__ inline int64_t first_element(int64_t k) {
  return ((int64_t(blockIdx.x) + k) % kBlocks) * kThreads + threadIdx.x;
}

// AdamW's constants rounded to T once on the host, exactly as the CPU path rounds them.
template <class T>
struct AdamWConsts {
  T decay, b1, b2, omb1, omb2, step_size, bc2_sqrt, eps;
};

// One element of AdamW's update (nn/optim.h), with g = grad·scale already formed:
//   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  p ← p·decay − step_size·m / (sqrt(v)/bc2_sqrt + eps)
template <class T>
__device__ inline void adamw_element(T& p, T& m, T& v, T g, const AdamWConsts<T>& c, T decay) {
  m = c.b1 * m + c.omb1 * g;
  v = c.b2 * v + c.omb2 * g * g;
  const T denom = sqrt(v) / c.bc2_sqrt + c.eps;
  p = p * decay - c.step_size * (m / denom);
}

// Four bfloat16 values as one 8-byte store.
__device__ inline uint2 pack_bf16(float a, float b, float c, float d) {
  const auto bits = [](float v) { return uint32_t(bfloat16(v).bits); };
  return make_uint2(bits(a) | bits(b) << 16, bits(c) | bits(d) << 16);
}

__device__ inline bool aligned(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// AdamW over every tensor (adamw_element, g = grad·scale); decay = c.decay for tensors with the
// decay flag, else 1; the new p rounded to bfloat16 goes to d.copy as well when it is non-null
// (the compute copy of mixed precision, in the same pass).
// Launch: grid kBlocks, block kThreads; tensors (count) descriptors in device memory. Thread
// (b, x) updates elements first_element(k) + j·kStride of tensor k, and nothing else; for a
// float32 tensor whose buffers are 16-byte aligned (the copy 8), the groups of 4 elements
// 4·(first_element(k) + j·kStride) .. + 3 instead, with 16-byte loads and stores (the bytes are
// the update's whole cost), and the last n mod 4 elements one by one. Elementwise either way:
// the same bits.
template <class T>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(const OptimTensor<T>* tensors, int64_t count, AdamWConsts<T> c, const T* grad_scale) {
  const T scale = grad_scale ? *grad_scale : T(1);
  if (!isfinite(scale)) return;  // the step is skipped (nn/optim.h)
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor<T> d = tensors[k];
    const T decay = d.decay ? c.decay : T(1);
    int64_t i0 = 0;  // elements before i0 went in groups of 4
    if constexpr (std::is_same_v<T, float>) {
      if (aligned(d.param, 16) && aligned(d.grad, 16) && aligned(d.m, 16) && aligned(d.v, 16) &&
          aligned(d.copy, 8)) {
        const int64_t groups = d.n / 4;
        for (int64_t q = first_element(k); q < groups; q += kStride) {
          float4 p = reinterpret_cast<float4*>(d.param)[q], m = reinterpret_cast<float4*>(d.m)[q];
          float4 v = reinterpret_cast<float4*>(d.v)[q];
          const float4 g = reinterpret_cast<const float4*>(d.grad)[q];
          adamw_element(p.x, m.x, v.x, g.x * scale, c, decay);
          adamw_element(p.y, m.y, v.y, g.y * scale, c, decay);
          adamw_element(p.z, m.z, v.z, g.z * scale, c, decay);
          adamw_element(p.w, m.w, v.w, g.w * scale, c, decay);
          reinterpret_cast<float4*>(d.param)[q] = p;
          reinterpret_cast<float4*>(d.m)[q] = m;
          reinterpret_cast<float4*>(d.v)[q] = v;
          if (d.copy) reinterpret_cast<uint2*>(d.copy)[q] = pack_bf16(p.x, p.y, p.z, p.w);
        }
        i0 = 4 * groups;
      }
    }
    for (int64_t i = i0 + first_element(k); i < d.n; i += kStride) {
      T p = d.param[i], m = d.m[i], v = d.v[i];
      adamw_element(p, m, v, d.grad[i] * scale, c, decay);
      d.m[i] = m;
      d.v[i] = v;
      d.param[i] = p;
      if (d.copy) d.copy[i] = bfloat16(p);
    }
  }
}

// widen_gradients (nn/optim.h): dst[i] = float(src[i]) for every tensor. Launch and ownership
// as adamw_kernel, groups of 4 where dst is 16-byte and src 8-byte aligned.
__global__ void __launch_bounds__(kThreads) widen_kernel(const WidenTensor* tensors, int64_t count) {
  for (int64_t k = 0; k < count; ++k) {
    const WidenTensor d = tensors[k];
    int64_t i0 = 0;
    if (aligned(d.dst, 16) && aligned(d.src, 8)) {
      const int64_t groups = d.n / 4;
      for (int64_t q = first_element(k); q < groups; q += kStride) {
        const uint2 b = reinterpret_cast<const uint2*>(d.src)[q];  // a bfloat16 is a float's top 16 bits
        reinterpret_cast<float4*>(d.dst)[q] = make_float4(__uint_as_float(b.x << 16), __uint_as_float(b.x & 0xffff0000u),
                                                          __uint_as_float(b.y << 16), __uint_as_float(b.y & 0xffff0000u));
      }
      i0 = 4 * groups;
    }
    for (int64_t i = i0 + first_element(k); i < d.n; i += kStride) d.dst[i] = float(d.src[i]);
  }
}

// SGD over every tensor (nn/optim.h): per element, with g = grad·scale + wd·p (wd = the step's
// weight decay for tensors with the decay flag, else 0):
//   b ← μ·b + g;  p ← p − lr·b   (momentum, b = d.m)      p ← p − lr·g   (μ = 0)
// and the bfloat16 copy as adamw_kernel. Launch and ownership as adamw_kernel.
template <class T>
__global__ void __launch_bounds__(kThreads)
    sgd_kernel(const OptimTensor<T>* tensors, int64_t count, T lr, T mu, T weight_decay, bool momentum,
               const T* grad_scale) {
  const T scale = grad_scale ? *grad_scale : T(1);
  if (!isfinite(scale)) return;  // the step is skipped (nn/optim.h)
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor<T> d = tensors[k];
    const T wd = d.decay ? weight_decay : T(0);
    for (int64_t i = first_element(k); i < d.n; i += kStride) {
      const T g = d.grad[i] * scale + wd * d.param[i];
      T p = d.param[i];
      if (momentum) {
        const T b = mu * d.m[i] + g;
        d.m[i] = b;
        p -= lr * b;
      } else {
        p -= lr * g;
      }
      d.param[i] = p;
      if (d.copy) d.copy[i] = bfloat16(p);
    }
  }
}

// part[b] = Σ g² over the elements block b visits (ownership as adamw_kernel), in double.
// Launch: grid kBlocks, block kThreads; block b is the only writer of part[b].
template <class T>
__global__ void __launch_bounds__(kThreads)
    grad_norm_partials_kernel(double* part, const OptimTensor<T>* tensors, int64_t count) {
  __shared__ double scratch[kThreads / 32];
  double s = 0.0;
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor<T> d = tensors[k];
    for (int64_t i = first_element(k); i < d.n; i += kStride) {
      const double g = d.grad[i];
      s += g * g;
    }
  }
  s = block_reduce<kThreads>(s, Sum{}, scratch);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// *norm = sqrt(Σ_b part[b]); *clip_scale (if non-null) = step_scale(norm, max_norm) of
// nn/optim.h: max_norm / (norm + 1e-6) if norm > max_norm, 1 if norm <= max_norm, NaN if norm is
// not finite.
// Launch: grid 1, block kThreads; thread x adds part[x], part[x + kThreads], ... in order;
// thread 0 writes the results.
template <class T>
__global__ void __launch_bounds__(kThreads)
    grad_norm_final_kernel(double* norm, T* clip_scale, const double* part, double max_norm) {
  __shared__ double scratch[kThreads / 32];
  double s = 0.0;
  for (int b = threadIdx.x; b < kBlocks; b += kThreads) s += part[b];
  s = block_reduce<kThreads>(s, Sum{}, scratch);
  if (threadIdx.x != 0) return;
  const double n = sqrt(s);
  *norm = n;
  if (clip_scale) *clip_scale = T(!isfinite(n) ? CUDART_NAN : n > max_norm ? max_norm / (n + 1e-6) : 1.0);
}

}  // namespace

template <class T>
void adamw_step_cuda(const OptimTensor<T>* tensors, int64_t count, const AdamWStep& step, const T* grad_scale) {
  const char* op = "adamw_step_cuda";
  kernel_check::adamw(op, tensors, count, step);
  cuda_check_device_pointer(tensors, op, "tensors");
  cuda_check_device_pointer(grad_scale, op, "grad_scale");
  if (count == 0) return;
  const AdamWCoefficients c = adamw_coefficients(step);
  const AdamWConsts<T> k{T(c.decay), T(c.beta1), T(c.beta2), T(1.0 - c.beta1), T(1.0 - c.beta2),
                         T(c.step_size), T(c.bc2_sqrt), T(c.eps)};
  cudaStream_t stream = cuda_stream(cuda_current_device());
  adamw_kernel<T><<<kBlocks, kThreads, 0, stream>>>(tensors, count, k, grad_scale);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void sgd_step_cuda(const OptimTensor<T>* tensors, int64_t count, const SGDStep& step, const T* grad_scale) {
  const char* op = "sgd_step_cuda";
  kernel_check::sgd(op, tensors, count, step);
  cuda_check_device_pointer(tensors, op, "tensors");
  cuda_check_device_pointer(grad_scale, op, "grad_scale");
  if (count == 0) return;
  cudaStream_t stream = cuda_stream(cuda_current_device());
  sgd_kernel<T><<<kBlocks, kThreads, 0, stream>>>(tensors, count, T(step.lr), T(step.momentum),
                                                  T(step.weight_decay), step.momentum > 0.0, grad_scale);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void grad_norm_cuda(double* norm, T* clip_scale, const OptimTensor<T>* tensors, int64_t count, double max_norm) {
  const char* op = "grad_norm_cuda";
  kernel_check::grad_norm(op, norm, tensors, count, max_norm);
  cuda_check_device_pointer(norm, op, "norm");
  cuda_check_device_pointer(clip_scale, op, "clip_scale");
  cuda_check_device_pointer(tensors, op, "tensors");
  const int device = cuda_current_device();
  cudaStream_t stream = cuda_stream(device);
  // The per-block partials, freed (stream-ordered) when `scratch` goes out of scope.
  Storage scratch(sizeof(double) * kBlocks, Device{DeviceType::CUDA, device});
  double* part = static_cast<double*>(scratch.data());
  grad_norm_partials_kernel<T><<<kBlocks, kThreads, 0, stream>>>(part, tensors, count);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  grad_norm_final_kernel<T><<<1, kThreads, 0, stream>>>(norm, clip_scale, part, max_norm);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void widen_gradients_cuda(const WidenTensor* tensors, int64_t count) {
  const char* op = "widen_gradients_cuda";
  kernel_check::optim_tensors(op, tensors, count);
  cuda_check_device_pointer(tensors, op, "tensors");
  if (count == 0) return;
  cudaStream_t stream = cuda_stream(cuda_current_device());
  widen_kernel<<<kBlocks, kThreads, 0, stream>>>(tensors, count);
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

#define SIMBA_INSTANTIATE_OPTIM_CUDA(T)                                                     \
  template void adamw_step_cuda<T>(const OptimTensor<T>*, int64_t, const AdamWStep&, const T*); \
  template void sgd_step_cuda<T>(const OptimTensor<T>*, int64_t, const SGDStep&, const T*);     \
  template void grad_norm_cuda<T>(double*, T*, const OptimTensor<T>*, int64_t, double);
SIMBA_INSTANTIATE_OPTIM_CUDA(float)
SIMBA_INSTANTIATE_OPTIM_CUDA(double)
#undef SIMBA_INSTANTIATE_OPTIM_CUDA

}  // namespace simba
