// tensor/elementwise.cu: the CUDA kernel family of tensor/elementwise.h.
//
// Every kernel: a 1-D grid-stride loop, kThreads threads per block, cuda_grid_size blocks, on
// the stream of the output's device. Thread i handles the elements of row-major linear index
// i, i + gridDim·blockDim, ... of the output's shape; the operands' coalesced layout
// (tensor/strided_layout.h, passed by value) turns each index into one offset per operand.
// When every operand is one dense row (`flat`: the usual contiguous, same-shape case) the
// offset is the index itself, which skips the per-dim divisions. Indices are int64 all the way.
// Arithmetic is in acc_t of the dtype (float for float32 and bfloat16, double for float64; a
// bfloat16 operand widens exactly on load and the result rounds once on store) with the
// formulas of tensor/elementwise_math.h.
#include <cuda_runtime.h>

#include "tensor/cuda_check.cuh"
#include "tensor/elementwise.h"
#include "tensor/elementwise_math.h"
#include "tensor/strided_layout.h"

namespace simba {

using namespace pointwise;

namespace {

constexpr int kThreads = 256;

// True when every operand's element i sits at offset i (one dense row, or a single element).
template <size_t N>
bool is_flat(const StridedLayout<N>& l) {
  if (l.ndim == 0) return true;
  if (l.ndim > 1) return false;
  for (size_t k = 0; k < N; ++k)
    if (l.stride[k][0] != 1) return false;
  return true;
}

template <size_t N>
__device__ inline void element_offsets(const StridedLayout<N>& l, bool flat, int64_t i, int64_t (&off)[N]) {
  if (flat) {
    for (size_t k = 0; k < N; ++k) off[k] = i;
  } else {
    l.offsets(i, off);
  }
}

#define SIMBA_GRID_STRIDE_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// out = op(x); layout operands: {out, x}.
template <UnaryOp OP, class T>
__global__ void unary_kernel(T* out, const T* x, StridedLayout<2> l, bool flat) {
  using A = acc_t<T>;
  SIMBA_GRID_STRIDE_LOOP(i, l.numel) {
    int64_t off[2];
    element_offsets(l, flat, i, off);
    out[off[0]] = T(apply_unary<OP>(A(x[off[1]])));
  }
}

// dx = dy · op'(x, y); layout operands: {dx, dy, x, y}.
template <UnaryOp OP, class T>
__global__ void unary_backward_kernel(T* dx, const T* dy, const T* x, const T* y, StridedLayout<4> l, bool flat) {
  using A = acc_t<T>;
  SIMBA_GRID_STRIDE_LOOP(i, l.numel) {
    int64_t off[4];
    element_offsets(l, flat, i, off);
    dx[off[0]] = T(A(dy[off[1]]) * unary_derivative<OP>(A(x[off[2]]), A(y[off[3]])));
  }
}

// out = a op b; layout operands: {out, a, b} (a, b expanded: stride 0 on broadcast dims).
template <BinaryOp OP, class T>
__global__ void binary_kernel(T* out, const T* a, const T* b, StridedLayout<3> l, bool flat) {
  using A = acc_t<T>;
  SIMBA_GRID_STRIDE_LOOP(i, l.numel) {
    int64_t off[3];
    element_offsets(l, flat, i, off);
    out[off[0]] = T(apply_binary<OP>(A(a[off[1]]), A(b[off[2]])));
  }
}

// out = op(x; s, t); layout operands: {out, x}.
template <ScalarOp OP, class T>
__global__ void scalar_op_kernel(T* out, const T* x, acc_t<T> s, acc_t<T> t, StridedLayout<2> l, bool flat) {
  SIMBA_GRID_STRIDE_LOOP(i, l.numel) {
    int64_t off[2];
    element_offsets(l, flat, i, off);
    out[off[0]] = T(apply_scalar<OP>(acc_t<T>(x[off[1]]), s, t));
  }
}

// dx = dy · [clamp(x) == x]; layout operands: {dx, dy, x}.
template <class T>
__global__ void clamp_backward_kernel(T* dx, const T* dy, const T* x, acc_t<T> lo, acc_t<T> hi, StridedLayout<3> l,
                                      bool flat) {
  using A = acc_t<T>;
  SIMBA_GRID_STRIDE_LOOP(i, l.numel) {
    int64_t off[3];
    element_offsets(l, flat, i, off);
    dx[off[0]] = T(A(dy[off[1]]) * clamp_pass(A(x[off[2]]), lo, hi));
  }
}

#undef SIMBA_GRID_STRIDE_LOOP

}  // namespace

void unary_cuda(UnaryOp op, const Tensor& out, const Tensor& x) {
  if (out.numel() == 0) return;
  const char* name = unary_name(op);
  const StridedLayout<2> l = make_strided_layout<2>(name, out.shape(), {out.strides(), x.strides()});
  const bool flat = is_flat(l);
  cudaStream_t stream = cuda_stream(out.device().index);
  SIMBA_DISPATCH_COMPUTE(out.dtype(), name, [&] {
    with_unary_op(op, [&](auto OP) {
      unary_kernel<decltype(OP)::value, scalar_t><<<cuda_grid_size(l.numel, kThreads), kThreads, 0, stream>>>(
          out.device_data<scalar_t>(), x.device_data<scalar_t>(), l, flat);
    });
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void unary_backward_cuda(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y) {
  if (dx.numel() == 0) return;
  const char* name = unary_name(op);
  const StridedLayout<4> l =
      make_strided_layout<4>(name, dx.shape(), {dx.strides(), dy.strides(), x.strides(), y.strides()});
  const bool flat = is_flat(l);
  cudaStream_t stream = cuda_stream(dx.device().index);
  SIMBA_DISPATCH_COMPUTE(dx.dtype(), name, [&] {
    with_unary_op(op, [&](auto OP) {
      unary_backward_kernel<decltype(OP)::value, scalar_t>
          <<<cuda_grid_size(l.numel, kThreads), kThreads, 0, stream>>>(
              dx.device_data<scalar_t>(), dy.device_data<scalar_t>(), x.device_data<scalar_t>(),
              y.device_data<scalar_t>(), l, flat);
    });
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void binary_cuda(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  if (out.numel() == 0) return;
  const char* name = binary_name(op);
  const StridedLayout<3> l = make_strided_layout<3>(name, out.shape(), {out.strides(), a.strides(), b.strides()});
  const bool flat = is_flat(l);
  cudaStream_t stream = cuda_stream(out.device().index);
  SIMBA_DISPATCH_COMPUTE(out.dtype(), name, [&] {
    with_binary_op(op, [&](auto OP) {
      binary_kernel<decltype(OP)::value, scalar_t><<<cuda_grid_size(l.numel, kThreads), kThreads, 0, stream>>>(
          out.device_data<scalar_t>(), a.device_data<scalar_t>(), b.device_data<scalar_t>(), l, flat);
    });
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void scalar_op_cuda(ScalarOp op, const Tensor& out, const Tensor& x, double s, double t) {
  if (out.numel() == 0) return;
  const char* name = scalar_op_name(op);
  const StridedLayout<2> l = make_strided_layout<2>(name, out.shape(), {out.strides(), x.strides()});
  const bool flat = is_flat(l);
  cudaStream_t stream = cuda_stream(out.device().index);
  SIMBA_DISPATCH_COMPUTE(out.dtype(), name, [&] {
    with_scalar_op(op, [&](auto OP) {
      scalar_op_kernel<decltype(OP)::value, scalar_t><<<cuda_grid_size(l.numel, kThreads), kThreads, 0, stream>>>(
          out.device_data<scalar_t>(), x.device_data<scalar_t>(), static_cast<acc_t<scalar_t>>(s),
          static_cast<acc_t<scalar_t>>(t), l, flat);
    });
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void clamp_backward_cuda(const Tensor& dx, const Tensor& dy, const Tensor& x, double lo, double hi) {
  if (dx.numel() == 0) return;
  const StridedLayout<3> l =
      make_strided_layout<3>("clamp", dx.shape(), {dx.strides(), dy.strides(), x.strides()});
  const bool flat = is_flat(l);
  cudaStream_t stream = cuda_stream(dx.device().index);
  SIMBA_DISPATCH_COMPUTE(dx.dtype(), "clamp", [&] {
    clamp_backward_kernel<scalar_t><<<cuda_grid_size(l.numel, kThreads), kThreads, 0, stream>>>(
        dx.device_data<scalar_t>(), dy.device_data<scalar_t>(), x.device_data<scalar_t>(),
        static_cast<acc_t<scalar_t>>(lo), static_cast<acc_t<scalar_t>>(hi), l, flat);
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace simba
