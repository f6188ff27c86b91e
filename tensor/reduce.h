// tensor/reduce.h: reductions over one dim or over all elements.
//
// Compute dtypes only (float32, float64, bfloat16; float16 is converted with Tensor::to
// first). Accumulation: a sum over one dim accumulates in acc_t of the input's dtype (float for
// float32 and bfloat16, double for float64) and rounds once on store; the
// sum over all elements accumulates in double whatever the dtype (a float32 loss summed over
// 10^5 tokens would otherwise lose ~3 digits). max/argmax break ties toward the lowest index;
// no value compares greater than a NaN nor a NaN greater than a value, so a NaN at k = 0 of
// the reduced dim is the result and a NaN anywhere else is passed over.
//
// Each public function checks its arguments, makes the input contiguous, allocates the
// output and hands both to a kernel family through tensor/dispatch.h (declared below).
#pragma once

#include "tensor/tensor.h"

namespace simba {

Tensor sum(const Tensor& x, int dim, bool keepdim = false);
Tensor sum(const Tensor& x);  // all elements, 0-dim result
Tensor mean(const Tensor& x, int dim, bool keepdim = false);
Tensor mean(const Tensor& x);

struct MaxResult {
  Tensor values;   // x's dtype
  Tensor indices;  // int64
};
MaxResult max(const Tensor& x, int dim, bool keepdim = false);
Tensor max(const Tensor& x);  // all elements, 0-dim result
Tensor argmax(const Tensor& x, int dim, bool keepdim = false);

// Sum g over the dims that were broadcast to reach g's shape from `shape`:
// the gradient of expand(). shape must broadcast to g.shape().
Tensor sum_to(const Tensor& g, const Shape& shape);

// ---- kernel families (tensor/dispatch.h) ----
// A reduction over dim d of a contiguous x sees it as (outer, n, inner) and writes a fresh
// contiguous (outer, inner) result; x and the outputs share a device, x and `out`/`values`
// a compute dtype, `indices` is int64.
//   sum_dim: out[o, i] = Σ_k x[o, k, i], accumulated in acc_t of the dtype.
//   max_dim: values[o, i] = max_k x[o, k, i], indices[o, i] = its lowest k (n >= 1).
//   sum_all: out (0-dim) = Σ of every element of x, accumulated in double.
// The CPU variants (tensor/reduce.cpp) sum k in increasing order. The CUDA variants
// (tensor/reduce.cu) use fixed-order reductions (no atomics: same bits on every run); their
// sum_dim follows the CPU's order, and so matches it bit for bit, when it gives one thread
// per output, and sums in a tree otherwise; max_dim matches the CPU exactly (values and
// indices); sum_all differs from the CPU only by double rounding (so a float32 total almost
// always has the same bits).
void sum_dim_cpu(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner);
void sum_dim_cuda(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner);
void max_dim_cpu(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t outer, int64_t n,
                 int64_t inner);
void max_dim_cuda(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t outer, int64_t n,
                  int64_t inner);
void sum_all_cpu(const Tensor& out, const Tensor& x);
void sum_all_cuda(const Tensor& out, const Tensor& x);

}  // namespace simba
