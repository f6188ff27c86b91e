// tensor/index.h: integer indexing along a dim (all indices are int64 tensors).
//
// Simba moves token rows with these: index_select gathers the kept rows of a
// (B, L, D) stream, index_add/scatter_add put results and gradients back.
// Every index is bounds-checked; an error names the op, the bad index and the
// size of the dim. On the CPU the error is thrown before any data is written; on
// CUDA the kernels check on the device and the host throws at the next sync point
// (a device-to-host copy or cuda_synchronize), so no op reads indices on the host.
#pragma once

#include "tensor/tensor.h"

namespace simba {

// out = x with dim `dim` replaced by index (1-D, length n): out[.., i, ..] = x[.., index[i], ..].
Tensor index_select(const Tensor& x, int dim, const Tensor& index);
// out = base + Σ: out[.., index[i], ..] += src[.., i, ..]  (the adjoint of index_select).
Tensor index_add(const Tensor& base, int dim, const Tensor& index, const Tensor& src);
// What the caller knows of an index list: Any (a row may be named several times: its rows are
// added in index-list order), or Increasing (strictly increasing, as Simba's kept rows are: each
// row of base receives at most one row of src, so the CUDA variant adds them directly instead of
// sorting the destinations first). An Increasing list that is not is an error, reported like an
// out-of-range index, with the range the index had to lie in (on CUDA at the next sync, the rows
// it names in base then unspecified; on the CPU before anything is written).
enum class IndexOrder { Any, Increasing };
// The same sum into base itself (contiguous): for callers without autograd that own base.
void index_add_(const Tensor& base, int dim, const Tensor& index, const Tensor& src,
                IndexOrder order = IndexOrder::Any);

// gather: out has index's shape; out[i][j][k] = x[index[i][j][k]][j][k] for dim 0 (numpy take_along_axis).
Tensor gather(const Tensor& x, int dim, const Tensor& index);
// scatter_add: out = base; out[index[i][j][k]][j][k] += src[i][j][k] for dim 0 (the adjoint of gather).
Tensor scatter_add(const Tensor& base, int dim, const Tensor& index, const Tensor& src);

// weight (V, D), ids int64 of any shape S -> (S..., D). Ids outside [0, V) are an error.
Tensor embedding(const Tensor& weight, const Tensor& ids);
// The weight gradient: (V, D) zeros + rows of dout accumulated at ids.
Tensor embedding_backward(const Tensor& dout, const Tensor& ids, int64_t num_embeddings);

// ---- the kernels behind these ops ---------------------------------------------------------
// Every op sees its data as (outer, S, inner): the dims before the indexed dim `dim`, that
// dim, the dims after it; all buffers contiguous. Two kernel pairs do all the work:
//   index_select_forward / _backward: one index per row (index_select, index_add, embedding,
//     embedding_backward);
//   gather_forward / _backward: one index per element (gather, scatter_add).
//   *_cpu:  tensor/index.cpp; OpenMP over rows, or over (outer, column chunk) tasks for the
//           backward kernels.
//   *_cuda: tensor/index.cu, on the device's stream.
// The forward kernels exist for every dtype (they only move values), the backward ones for
// the compute dtypes float, double and bfloat16 (accumulated in float32, rounded once). `op` (a string literal: the CUDA variants record its address) and `dim` name the
// op and the indexed dim in a bad-index error. Out-of-range indices are never used: the CPU
// variants throw before writing, the CUDA variants record the error
// (cuda_report_index_error) and skip them.
// The backward kernels ADD into dx, and are deterministic: each element of dx receives its
// contributions in increasing index-list position, on either device (CUDA sorts the
// destinations with a stable radix sort and reduces each run in order, no atomics), so the
// two variants give the same bits. index_select_backward's `order` (IndexOrder above): with
// Increasing, each index must also exceed the one before it; CUDA then adds each row directly
// (one contribution a row of dx: the same bits as the sorted path).

// out (outer, n, inner) = x (outer, S, inner)[:, index[i], :]; index (n).
template <class T>
void index_select_forward_cpu(const char* op, int dim, T* out, const T* x, const int64_t* index, int64_t outer,
                              int64_t S, int64_t n, int64_t inner);
template <class T>
void index_select_forward_cuda(const char* op, int dim, T* out, const T* x, const int64_t* index, int64_t outer,
                               int64_t S, int64_t n, int64_t inner);
// dx (outer, S, inner) += dout (outer, n, inner) scattered to rows index (n): the adjoint of
// index_select_forward.
template <class T>
void index_select_backward_cpu(const char* op, int dim, T* dx, const T* dout, const int64_t* index, int64_t outer,
                               int64_t S, int64_t n, int64_t inner, IndexOrder order);
template <class T>
void index_select_backward_cuda(const char* op, int dim, T* dx, const T* dout, const int64_t* index,
                                int64_t outer, int64_t S, int64_t n, int64_t inner, IndexOrder order);
// out (outer, n, inner): out[o, i, j] = x[o, index[o, i, j], j], x (outer, S, inner),
// index (outer, n, inner).
template <class T>
void gather_forward_cpu(const char* op, int dim, T* out, const T* x, const int64_t* index, int64_t outer,
                        int64_t S, int64_t n, int64_t inner);
template <class T>
void gather_forward_cuda(const char* op, int dim, T* out, const T* x, const int64_t* index, int64_t outer,
                         int64_t S, int64_t n, int64_t inner);
// dx (outer, S, inner): dx[o, index[o, i, j], j] += dout[o, i, j], dout and index
// (outer, n, inner): the adjoint of gather_forward.
template <class T>
void gather_backward_cpu(const char* op, int dim, T* dx, const T* dout, const int64_t* index, int64_t outer,
                         int64_t S, int64_t n, int64_t inner);
template <class T>
void gather_backward_cuda(const char* op, int dim, T* dx, const T* dout, const int64_t* index, int64_t outer,
                          int64_t S, int64_t n, int64_t inner);

}  // namespace simba
