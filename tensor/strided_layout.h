// tensor/strided_layout.h: N operands walked over one shape, each with its own strides, in a
// form a kernel can index on either device.
//
// coalesce_dims drops size-1 dims and merges a dim into the next one when every operand lays
// the two out back to back, so contiguous operands become one flat row. The CPU loop nest
// (tensor/strided_loop.h) and the CUDA kernels (StridedLayout, passed by value to a kernel)
// both start from it. Offsets are in elements, relative to each operand's element 0; strides
// may be 0 (broadcast) or in any order (permuted views).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "tensor/error.h"
#include "tensor/host_device.h"

namespace simba {

template <size_t N>
void coalesce_dims(const std::vector<int64_t>& shape, const std::array<std::vector<int64_t>, N>& strides,
                   std::vector<int64_t>& sh, std::array<std::vector<int64_t>, N>& st) {
  sh.clear();
  for (auto& s : st) s.clear();
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !sh.empty();
    for (size_t k = 0; k < N && merge; ++k) merge = st[k].back() == strides[k][d] * shape[d];
    if (merge) {
      sh.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) st[k].back() = strides[k][d];
    } else {
      sh.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) st[k].push_back(strides[k][d]);
    }
  }
}

// The most dims a CUDA kernel indexes after coalescing; more is an error naming the op.
constexpr int kMaxKernelDims = 10;

template <size_t N>
struct StridedLayout {
  int ndim = 0;  // 0: a single element (or none when numel == 0)
  int64_t numel = 0;
  int64_t size[kMaxKernelDims] = {};
  int64_t stride[N][kMaxKernelDims] = {};

  // Whether every operand is one dense row (or the layout one element): the offset of the
  // element with linear index i is then i in every operand.
  bool flat() const {
    for (size_t k = 0; k < N && ndim == 1; ++k)
      if (stride[k][0] != 1) return false;
    return ndim <= 1;
  }

  // The offset in each operand of the element with row-major linear index i.
  SIMBA_HOST_DEVICE void offsets(int64_t i, int64_t (&off)[N]) const {
    for (size_t k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t q = i / size[d];
      const int64_t r = i - q * size[d];
      i = q;
      for (size_t k = 0; k < N; ++k) off[k] += r * stride[k][d];
    }
  }
};

template <size_t N>
StridedLayout<N> make_strided_layout(const char* op, const std::vector<int64_t>& shape,
                                     const std::array<std::vector<int64_t>, N>& strides) {
  std::vector<int64_t> sh;
  std::array<std::vector<int64_t>, N> st;
  coalesce_dims<N>(shape, strides, sh, st);
  SIMBA_CHECK(sh.size() <= static_cast<size_t>(kMaxKernelDims),
              op << ": " << sh.size() << " dims that cannot be merged, the CUDA kernels index at most "
                 << kMaxKernelDims);
  StridedLayout<N> l;
  l.ndim = static_cast<int>(sh.size());
  l.numel = 1;
  for (int64_t s : shape) l.numel *= s;
  for (int d = 0; d < l.ndim; ++d) {
    l.size[d] = sh[d];
    for (size_t k = 0; k < N; ++k) l.stride[k][d] = st[k][d];
  }
  return l;
}

}  // namespace simba
