// tensor/elementwise.cu: the CUDA kernel family of tensor/elementwise.h.
//
// Every kernel: a 1-D grid-stride loop (for_each_element), kThreads threads per block, on the
// stream of the output's device. Thread i handles the elements of row-major linear index i,
// i + gridDim·blockDim, ... of the output's shape (or the 16-byte packs of them, Path::Packed);
// the operands' coalesced layout (tensor/strided_layout.h, passed by value) turns each index
// into one offset per operand, or is skipped when every operand is one dense row. Indices are
// int64 all the way.
// Arithmetic is in acc_t of the dtype (float for float32 and bfloat16, double for float64; a
// bfloat16 operand widens exactly on load and the result rounds once on store) with the
// formulas of tensor/elementwise_math.h.
#include <cuda_runtime.h>

#include <array>
#include <cstdint>

#include "tensor/cuda_check.cuh"
#include "tensor/elementwise.h"
#include "tensor/elementwise_math.h"
#include "tensor/strided_layout.h"

namespace simba {

using namespace pointwise;

namespace {

constexpr int kThreads = 256;

// How a launch walks its elements. Strided: each index turns into one offset per operand
// (tensor/strided_layout.h). Flat: every operand is one dense row (the usual contiguous,
// same-shape case), so the offset is the index itself. Packed: flat, and every pointer is
// 16-byte aligned, so each thread moves 16 bytes of every operand at once (8 bfloat16, 4 float,
// 2 double): a warp's access is then 512 contiguous bytes, where 2-byte elements one a thread
// left most of each memory transaction unused.
enum class Path { Strided, Flat, Packed };

template <size_t N>
Path choose_path(const StridedLayout<N>& l, const std::array<const void*, N>& ptrs) {
  if (!l.flat()) return Path::Strided;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return Path::Flat;
  return Path::Packed;
}

// Blocks for a launch over l.numel elements on `path`: a packed thread takes 16 bytes.
template <class T, size_t N>
unsigned grid_for(const StridedLayout<N>& l, Path path) {
  const int64_t per_thread = path == Path::Packed ? int64_t(16 / sizeof(T)) : 1;
  return cuda_grid_size((l.numel + per_thread - 1) / per_thread, kThreads);
}

#define SIMBA_GRID_STRIDE_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

template <class T>
using Pack16 = Pack<T, 16 / sizeof(T)>;

// out[i] = f(in[0][i], ..., in[NIn−1][i]) for every element i of layout l (operands {out,
// in...}), f taking the NIn inputs as an array. Packed: whole 16-byte packs first, then the
// elements after the last whole pack one a thread. An output that aliases an input (in-place
// ops) is fine on every path: each element (pack) is read before it is written, by one thread.
template <class T, size_t NIn, class F>
__device__ inline void for_each_element(T* out, const T* const (&in)[NIn], const StridedLayout<NIn + 1>& l,
                                        Path path, F f) {
  int64_t done = 0;
  if (path == Path::Packed) {
    constexpr int V = 16 / sizeof(T);
    using P = Pack16<T>;
    const int64_t packs = l.numel / V;
    SIMBA_GRID_STRIDE_LOOP(p, packs) {
      P a[NIn];
#pragma unroll
      for (size_t k = 0; k < NIn; ++k) a[k] = reinterpret_cast<const P*>(in[k])[p];
      P r;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        T e[NIn];
#pragma unroll
        for (size_t k = 0; k < NIn; ++k) e[k] = a[k].v[j];
        r.v[j] = f(e);
      }
      reinterpret_cast<P*>(out)[p] = r;
    }
    done = packs * V;
  }
  SIMBA_GRID_STRIDE_LOOP(q, l.numel - done) {
    const int64_t i = done + q;
    int64_t off[NIn + 1];
    if (path == Path::Strided) {
      l.offsets(i, off);
    } else {
      for (size_t k = 0; k <= NIn; ++k) off[k] = i;
    }
    T e[NIn];
#pragma unroll
    for (size_t k = 0; k < NIn; ++k) e[k] = in[k][off[k + 1]];
    out[off[0]] = f(e);
  }
}

// out = op(x); layout operands: {out, x}.
template <UnaryOp OP, class T>
__global__ void unary_kernel(T* out, const T* x, StridedLayout<2> l, Path path) {
  using A = acc_t<T>;
  for_each_element<T, 1>(out, {x}, l, path, [](const T(&e)[1]) { return T(apply_unary<OP>(A(e[0]))); });
}

// dx = dy · op'(x, y); layout operands: {dx, dy, x, y}.
template <UnaryOp OP, class T>
__global__ void unary_backward_kernel(T* dx, const T* dy, const T* x, const T* y, StridedLayout<4> l, Path path) {
  using A = acc_t<T>;
  for_each_element<T, 3>(dx, {dy, x, y}, l, path,
                         [](const T(&e)[3]) { return T(A(e[0]) * unary_derivative<OP>(A(e[1]), A(e[2]))); });
}

// out = a op b; layout operands: {out, a, b} (a, b expanded: stride 0 on broadcast dims).
template <BinaryOp OP, class T>
__global__ void binary_kernel(T* out, const T* a, const T* b, StridedLayout<3> l, Path path) {
  using A = acc_t<T>;
  for_each_element<T, 2>(out, {a, b}, l, path, [](const T(&e)[2]) { return T(apply_binary<OP>(A(e[0]), A(e[1]))); });
}

// out = op(x; s, t); layout operands: {out, x}.
template <ScalarOp OP, class T>
__global__ void scalar_op_kernel(T* out, const T* x, acc_t<T> s, acc_t<T> t, StridedLayout<2> l, Path path) {
  for_each_element<T, 1>(out, {x}, l, path,
                         [s, t](const T(&e)[1]) { return T(apply_scalar<OP>(acc_t<T>(e[0]), s, t)); });
}

// dx = dy · [clamp(x) == x]; layout operands: {dx, dy, x}.
template <class T>
__global__ void clamp_backward_kernel(T* dx, const T* dy, const T* x, acc_t<T> lo, acc_t<T> hi, StridedLayout<3> l,
                                      Path path) {
  using A = acc_t<T>;
  for_each_element<T, 2>(dx, {dy, x}, l, path,
                         [lo, hi](const T(&e)[2]) { return T(A(e[0]) * clamp_pass(A(e[1]), lo, hi)); });
}

#undef SIMBA_GRID_STRIDE_LOOP

}  // namespace

void unary_cuda(UnaryOp op, const Tensor& out, const Tensor& x) {
  if (out.numel() == 0) return;
  const char* name = unary_name(op);
  const StridedLayout<2> l = make_strided_layout<2>(name, out.shape(), {out.strides(), x.strides()});
  const Path path = choose_path(l, {out.raw_data(), x.raw_data()});
  cudaStream_t stream = cuda_stream(out.device().index);
  SIMBA_DISPATCH_COMPUTE(out.dtype(), name, [&] {
    with_unary_op(op, [&](auto OP) {
      unary_kernel<decltype(OP)::value, scalar_t><<<grid_for<scalar_t>(l, path), kThreads, 0, stream>>>(
          out.device_data<scalar_t>(), x.device_data<scalar_t>(), l, path);
    });
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void unary_backward_cuda(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y) {
  if (dx.numel() == 0) return;
  const char* name = unary_name(op);
  const StridedLayout<4> l =
      make_strided_layout<4>(name, dx.shape(), {dx.strides(), dy.strides(), x.strides(), y.strides()});
  const Path path =
      choose_path(l, {dx.raw_data(), dy.raw_data(), x.raw_data(), y.raw_data()});
  cudaStream_t stream = cuda_stream(dx.device().index);
  SIMBA_DISPATCH_COMPUTE(dx.dtype(), name, [&] {
    with_unary_op(op, [&](auto OP) {
      unary_backward_kernel<decltype(OP)::value, scalar_t><<<grid_for<scalar_t>(l, path), kThreads, 0, stream>>>(
          dx.device_data<scalar_t>(), dy.device_data<scalar_t>(), x.device_data<scalar_t>(),
          y.device_data<scalar_t>(), l, path);
    });
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void binary_cuda(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  if (out.numel() == 0) return;
  const char* name = binary_name(op);
  const StridedLayout<3> l = make_strided_layout<3>(name, out.shape(), {out.strides(), a.strides(), b.strides()});
  const Path path = choose_path(l, {out.raw_data(), a.raw_data(), b.raw_data()});
  cudaStream_t stream = cuda_stream(out.device().index);
  SIMBA_DISPATCH_COMPUTE(out.dtype(), name, [&] {
    with_binary_op(op, [&](auto OP) {
      binary_kernel<decltype(OP)::value, scalar_t><<<grid_for<scalar_t>(l, path), kThreads, 0, stream>>>(
          out.device_data<scalar_t>(), a.device_data<scalar_t>(), b.device_data<scalar_t>(), l, path);
    });
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void scalar_op_cuda(ScalarOp op, const Tensor& out, const Tensor& x, double s, double t) {
  if (out.numel() == 0) return;
  const char* name = scalar_op_name(op);
  const StridedLayout<2> l = make_strided_layout<2>(name, out.shape(), {out.strides(), x.strides()});
  const Path path = choose_path(l, {out.raw_data(), x.raw_data()});
  cudaStream_t stream = cuda_stream(out.device().index);
  SIMBA_DISPATCH_COMPUTE(out.dtype(), name, [&] {
    with_scalar_op(op, [&](auto OP) {
      scalar_op_kernel<decltype(OP)::value, scalar_t><<<grid_for<scalar_t>(l, path), kThreads, 0, stream>>>(
          out.device_data<scalar_t>(), x.device_data<scalar_t>(), static_cast<acc_t<scalar_t>>(s),
          static_cast<acc_t<scalar_t>>(t), l, path);
    });
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void clamp_backward_cuda(const Tensor& dx, const Tensor& dy, const Tensor& x, double lo, double hi) {
  if (dx.numel() == 0) return;
  const StridedLayout<3> l =
      make_strided_layout<3>("clamp", dx.shape(), {dx.strides(), dy.strides(), x.strides()});
  const Path path = choose_path(l, {dx.raw_data(), dy.raw_data(), x.raw_data()});
  cudaStream_t stream = cuda_stream(dx.device().index);
  SIMBA_DISPATCH_COMPUTE(dx.dtype(), "clamp", [&] {
    clamp_backward_kernel<scalar_t><<<grid_for<scalar_t>(l, path), kThreads, 0, stream>>>(
        dx.device_data<scalar_t>(), dy.device_data<scalar_t>(), x.device_data<scalar_t>(),
        static_cast<acc_t<scalar_t>>(lo), static_cast<acc_t<scalar_t>>(hi), l, path);
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace simba
