// tensor/index.h: integer indexing along a dim (all indices are int64 tensors).
//
// Simba moves token rows with these: index_select gathers the kept rows of a
// (B, L, D) stream, index_add/scatter_add put results and gradients back.
// Every index is bounds-checked; an error names the op, the bad index and the
// size of the dim.
#pragma once

#include "tensor/tensor.h"

namespace simba {

// out = x with dim `dim` replaced by index (1-D, length n): out[.., i, ..] = x[.., index[i], ..].
Tensor index_select(const Tensor& x, int dim, const Tensor& index);
// out = base + Σ: out[.., index[i], ..] += src[.., i, ..]  (the adjoint of index_select).
Tensor index_add(const Tensor& base, int dim, const Tensor& index, const Tensor& src);

// gather: out has index's shape; out[i][j][k] = x[index[i][j][k]][j][k] for dim 0 (numpy take_along_axis).
Tensor gather(const Tensor& x, int dim, const Tensor& index);
// scatter_add: out = base; out[index[i][j][k]][j][k] += src[i][j][k] for dim 0 (the adjoint of gather).
Tensor scatter_add(const Tensor& base, int dim, const Tensor& index, const Tensor& src);

// weight (V, D), ids int64 of any shape S -> (S..., D). Ids outside [0, V) are an error.
Tensor embedding(const Tensor& weight, const Tensor& ids);
// The weight gradient: (V, D) zeros + rows of dout accumulated at ids.
Tensor embedding_backward(const Tensor& dout, const Tensor& ids, int64_t num_embeddings);

}  // namespace simba
