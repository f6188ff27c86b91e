// tensor/shape_ops.h: joining and splitting tensors along a dim.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace simba {

// All inputs share dtype, device and every size except `dim`.
Tensor cat(const std::vector<Tensor>& xs, int dim);
// Views (narrow) of x with the given sizes along dim; sizes must sum to x.size(dim).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim);

}  // namespace simba
