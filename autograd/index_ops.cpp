// autograd/index_ops.cpp: gradients of joining, splitting and indexing.
//
// Each indexing op's gradient is its adjoint, computed by the tensor layer:
//   cat          -> the upstream gradient split into per-input slices (views)
//   split        -> one differentiable narrow per piece
//   index_select -> index_add into zeros;      index_add  -> (g, index_select(g))
//   gather       -> scatter_add into zeros;    scatter_add -> (g, gather(g))
//   embedding    -> embedding_backward (ids are integers: no gradient)
// Repeated indices therefore sum their gradients, as the forward of the
// adjoint sums them.
#include "autograd/ops.h"

namespace simba {

Variable cat(const std::vector<Variable>& xs, int dim) {
  std::vector<Tensor> data;
  data.reserve(xs.size());
  for (const Variable& x : xs) data.push_back(x.data());
  Tensor out = cat(data, dim);
  const int d = out.wrap_dim(dim);
  std::vector<int64_t> sizes;
  sizes.reserve(xs.size());
  for (const Tensor& t : data) sizes.push_back(t.size(d));
  return make_result(out, "cat", xs, [sizes, d](const Tensor& g) -> std::vector<Tensor> { return split(g, sizes, d); });
}

std::vector<Variable> split(const Variable& x, const std::vector<int64_t>& sizes, int dim) {
  const int d = x.data().wrap_dim(dim);
  // Validates sizes against x with the tensor op's message before any narrow.
  split(x.data(), sizes, d);
  std::vector<Variable> pieces;
  pieces.reserve(sizes.size());
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(narrow(x, d, start, s));
    start += s;
  }
  return pieces;
}

Variable index_select(const Variable& x, int dim, const Tensor& index) {
  const int d = x.data().wrap_dim(dim);
  const Shape in = x.shape();
  const DType dt = x.dtype();
  return make_result(index_select(x.data(), d, index), "index_select", {x},
                     [in, dt, d, index](const Tensor& g) -> std::vector<Tensor> {
                       return {index_add(Tensor::zeros(in, dt, g.device()), d, index, g)};
                     });
}

Variable index_add(const Variable& base, int dim, const Tensor& index, const Variable& src) {
  const int d = base.data().wrap_dim(dim);
  return make_result(index_add(base.data(), d, index, src.data()), "index_add", {base, src},
                     [d, index](const Tensor& g) -> std::vector<Tensor> { return {g, index_select(g, d, index)}; });
}

Variable gather(const Variable& x, int dim, const Tensor& index) {
  const int d = x.data().wrap_dim(dim);
  const Shape in = x.shape();
  const DType dt = x.dtype();
  return make_result(gather(x.data(), d, index), "gather", {x},
                     [in, dt, d, index](const Tensor& g) -> std::vector<Tensor> {
                       return {scatter_add(Tensor::zeros(in, dt, g.device()), d, index, g)};
                     });
}

Variable scatter_add(const Variable& base, int dim, const Tensor& index, const Variable& src) {
  const int d = base.data().wrap_dim(dim);
  return make_result(scatter_add(base.data(), d, index, src.data()), "scatter_add", {base, src},
                     [d, index](const Tensor& g) -> std::vector<Tensor> { return {g, gather(g, d, index)}; });
}

Variable embedding(const Variable& weight, const Tensor& ids) {
  Tensor out = embedding(weight.data(), ids);  // validates weight as (V, D)
  const int64_t V = weight.size(0);
  return make_result(out, "embedding", {weight},
                     [ids, V](const Tensor& g) -> std::vector<Tensor> { return {embedding_backward(g, ids, V)}; });
}

}  // namespace simba
