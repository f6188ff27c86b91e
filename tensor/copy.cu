// tensor/copy.cu: the CUDA variants of tensor/copy.h.
//
// Same-dtype copies of dense rows go to the runtime's pitched copy (copy_cuda); other
// same-dtype copies of rows of whole 16-byte pieces run the kernel on those pieces; the rest,
// the kernel on elements. Launch geometry: a 1-D grid-stride loop, kThreads threads per block, cuda_grid_size blocks;
// thread i handles elements i, i + gridDim·blockDim, ... of the row-major index space of dst's
// coalesced layout (tensor/strided_layout.h), which is passed by value as a kernel argument.
// When every operand is one dense row (flat: a contiguous conversion such as mixed precision's
// gradients widened to float32, or a contiguous fill), the index is the offset: the layout's
// 64-bit divisions, dozens of instructions an element on a GPU, are skipped.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "tensor/copy.h"
#include "tensor/cuda_check.cuh"
#include "tensor/strided_layout.h"

namespace simba {
namespace {

constexpr int kThreads = 256;

template <class D, class S>
__global__ void copy_kernel(D* dst, const S* src, StridedLayout<2> layout, bool flat) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < layout.numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2] = {i, i};
    if (!flat) layout.offsets(i, off);
    dst[off[0]] = static_cast<D>(src[off[1]]);
  }
}

template <class T>
__global__ void fill_kernel(T* dst, T value, StridedLayout<1> layout, bool flat) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < layout.numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1] = {i};
    if (!flat) layout.offsets(i, off);
    dst[off[0]] = value;
  }
}

}  // namespace

void copy_cuda(const Tensor& dst, const Tensor& src) {
  const StridedLayout<2> layout = make_strided_layout<2>("copy_", dst.shape(), {dst.strides(), src.strides()});
  cudaStream_t stream = cuda_stream(dst.device().index);
  if (layout.numel == 0) return;
  // Same dtype, and rows of elements dense in both (at most two coalesced dims, no broadcast):
  // the runtime's pitched copy moves whole rows at close to the copy bandwidth, where the
  // kernel below moves one element a thread (a quarter of that for 2-byte elements).
  const int nd = layout.ndim;
  const bool same_dtype = dst.dtype() == src.dtype();
  const bool dense_rows = nd >= 1 && layout.stride[0][nd - 1] == 1 && layout.stride[1][nd - 1] == 1;
  if (same_dtype && (nd == 0 || (nd <= 2 && dense_rows))) {
    const int64_t width = nd == 0 ? 1 : layout.size[nd - 1], rows = nd == 2 ? layout.size[0] : 1;
    const int64_t dpitch = nd == 2 ? layout.stride[0][0] : width, spitch = nd == 2 ? layout.stride[1][0] : width;
    if (dst.raw_data() == src.raw_data() && dpitch == spitch) return;  // the same view: nothing moves
    if (dpitch >= width && spitch >= width) {
      const size_t es = dtype_size(dst.dtype());
      SIMBA_CUDA_CHECK(cudaMemcpy2DAsync(dst.raw_data(), size_t(dpitch) * es, src.raw_data(), size_t(spitch) * es,
                                         size_t(width) * es, size_t(rows), cudaMemcpyDeviceToDevice, stream));
      return;
    }
  }
  // Same dtype, rows dense in both and made of whole 16-byte pieces at 16-byte-aligned places
  // (a bias broadcast over rows, strided rows): the kernel below moves Bytes16 pieces
  // (tensor/cuda_check.cuh), the layout rescaled to them.
  if (same_dtype && dense_rows) {
    const int64_t es = int64_t(dtype_size(dst.dtype())), V = 16 / es;
    bool pieces = es <= 16 && (layout.size[nd - 1] * es) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(dst.raw_data()) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(src.raw_data()) % 16 == 0;
    for (int d = 0; d < nd - 1 && pieces; ++d)
      pieces = (layout.stride[0][d] * es) % 16 == 0 && (layout.stride[1][d] * es) % 16 == 0;
    if (pieces) {
      StridedLayout<2> l = layout;
      l.size[nd - 1] /= V;
      l.numel /= V;
      for (int d = 0; d < nd - 1; ++d)
        for (int k = 0; k < 2; ++k) l.stride[k][d] /= V;
      copy_kernel<Bytes16, Bytes16><<<cuda_grid_size(l.numel, kThreads), kThreads, 0, stream>>>(
          static_cast<Bytes16*>(dst.raw_data()), static_cast<const Bytes16*>(src.raw_data()), l, l.flat());
      SIMBA_CUDA_CHECK(cudaGetLastError());
      return;
    }
  }
  SIMBA_DISPATCH_ALL(dst.dtype(), "copy_", [&] {
    using D = scalar_t;
    SIMBA_DISPATCH_ALL(src.dtype(), "copy_", [&] {
      copy_kernel<D, scalar_t><<<cuda_grid_size(layout.numel, kThreads), kThreads, 0, stream>>>(
          dst.device_data<D>(), src.device_data<scalar_t>(), layout, layout.flat());
    });
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void fill_cuda(const Tensor& dst, double value) {
  const StridedLayout<1> layout = make_strided_layout<1>("fill_", dst.shape(), {dst.strides()});
  cudaStream_t stream = cuda_stream(dst.device().index);
  // +0 into one dense row (the zeros of new gradient and state buffers): every dtype's +0 is
  // all-zero bytes, so the runtime's memset writes it at the copy bandwidth. −0 has its sign bit.
  if (value == 0.0 && !std::signbit(value) && layout.flat()) {
    SIMBA_CUDA_CHECK(cudaMemsetAsync(dst.raw_data(), 0, size_t(layout.numel) * dtype_size(dst.dtype()), stream));
    return;
  }
  SIMBA_DISPATCH_ALL(dst.dtype(), "fill_", [&] {
    fill_kernel<scalar_t><<<cuda_grid_size(layout.numel, kThreads), kThreads, 0, stream>>>(
        dst.device_data<scalar_t>(), static_cast<scalar_t>(value), layout, layout.flat());
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace simba
