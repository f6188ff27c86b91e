// tensor/reduce.h: reductions over one dim or over all elements.
//
// Accumulation is in double for float32 inputs only where it matters for
// exactness of tests (sum over all); per-dim sums accumulate in the input type.
// max/argmax break ties toward the lowest index.
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

}  // namespace simba
