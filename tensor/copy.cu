// tensor/copy.cu: the CUDA variants of tensor/copy.h.
//
// Launch geometry: a 1-D grid-stride loop, kThreads threads per block, cuda_grid_size blocks;
// thread i handles elements i, i + gridDim·blockDim, ... of the row-major index space of dst's
// coalesced layout (tensor/strided_layout.h), which is passed by value as a kernel argument.
#include <cuda_runtime.h>

#include "tensor/copy.h"
#include "tensor/cuda_check.cuh"
#include "tensor/strided_layout.h"

namespace simba {
namespace {

constexpr int kThreads = 256;

template <class D, class S>
__global__ void copy_kernel(D* dst, const S* src, StridedLayout<2> layout) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < layout.numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    layout.offsets(i, off);
    dst[off[0]] = static_cast<D>(src[off[1]]);
  }
}

template <class T>
__global__ void fill_kernel(T* dst, T value, StridedLayout<1> layout) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < layout.numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    layout.offsets(i, off);
    dst[off[0]] = value;
  }
}

}  // namespace

void copy_cuda(const Tensor& dst, const Tensor& src) {
  const StridedLayout<2> layout = make_strided_layout<2>("copy_", dst.shape(), {dst.strides(), src.strides()});
  cudaStream_t stream = cuda_stream(dst.device().index);
  SIMBA_DISPATCH_ALL(dst.dtype(), "copy_", [&] {
    using D = scalar_t;
    SIMBA_DISPATCH_ALL(src.dtype(), "copy_", [&] {
      copy_kernel<D, scalar_t><<<cuda_grid_size(layout.numel, kThreads), kThreads, 0, stream>>>(
          dst.device_data<D>(), src.device_data<scalar_t>(), layout);
    });
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

void fill_cuda(const Tensor& dst, double value) {
  const StridedLayout<1> layout = make_strided_layout<1>("fill_", dst.shape(), {dst.strides()});
  cudaStream_t stream = cuda_stream(dst.device().index);
  SIMBA_DISPATCH_ALL(dst.dtype(), "fill_", [&] {
    fill_kernel<scalar_t><<<cuda_grid_size(layout.numel, kThreads), kThreads, 0, stream>>>(
        dst.device_data<scalar_t>(), static_cast<scalar_t>(value), layout);
  });
  SIMBA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace simba
