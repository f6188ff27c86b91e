// tensor/copy.h: the kernels behind Tensor::copy_ and Tensor::fill_ on one device.
//
// copy: dst[i] = (dst dtype) src[i] for every index i of dst's shape; src has exactly dst's
// shape (Tensor::copy_ expands a broadcast source first, so its strides may be 0). Any strides
// on both sides, any pair of dtypes. The views must not overlap unless they are the same view.
// fill: dst[i] = (dst dtype) value through dst's strides.
// Both tensors are on the device of the variant; dst has at least one element.
//   *_cpu:  tensor/copy.cpp, the strided loop nest of tensor/strided_loop.h (OpenMP).
//   *_cuda: tensor/copy.cu, on the device's stream: the runtime's pitched copy for same-dtype
//           dense rows, else one thread per element over the coalesced layout
//           (tensor/strided_layout.h), grid-stride.
// A copy or fill is exact (a conversion rounds once, to nearest even; those to and from
// bfloat16/float16 are the integer bit arithmetic of tensor/half_types.h, the same code on both
// devices), so the variants agree bit for bit. The exception is a float that int64 cannot hold
// (NaN, ±inf, |x| >= 2^63): C++ leaves that conversion undefined, and the devices differ.
#pragma once

#include "tensor/tensor.h"

namespace simba {

void copy_cpu(const Tensor& dst, const Tensor& src);
void copy_cuda(const Tensor& dst, const Tensor& src);
void fill_cpu(const Tensor& dst, double value);
void fill_cuda(const Tensor& dst, double value);

}  // namespace simba
