// autograd/view_ops.cpp: gradients through views.
//
// A view moves no data, so its backward moves the gradient back to the
// input's layout: reshape back, permute by the inverse order, pad a narrowed
// slice with zeros, sum over expanded dims.
#include "autograd/ops.h"

namespace simba {

Variable reshape(const Variable& x, const Shape& shape) {
  Shape in = x.shape();
  return make_result(x.data().reshape(shape), "reshape", {x},
                     [in](const Tensor& g) -> std::vector<Tensor> { return {g.reshape(in)}; });
}

Variable permute(const Variable& x, const std::vector<int>& order) {
  Tensor y = x.data().permute(order);
  std::vector<int> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[x.data().wrap_dim(order[i])] = static_cast<int>(i);
  return make_result(y, "permute", {x},
                     [inverse](const Tensor& g) -> std::vector<Tensor> { return {g.permute(inverse)}; });
}

Variable transpose(const Variable& x, int a, int b) {
  return make_result(x.data().transpose(a, b), "transpose", {x},
                     [a, b](const Tensor& g) -> std::vector<Tensor> { return {g.transpose(a, b)}; });
}

Variable narrow(const Variable& x, int dim, int64_t start, int64_t length) {
  Shape in = x.shape();
  DType dt = x.dtype();
  const int d = x.data().wrap_dim(dim);
  // Into the input's gradient so far where there is one (slices of one tensor, each narrowed
  // out for a different op: no zeroed buffer and no add of whole buffers a slice).
  return make_result_into(x.data().narrow(d, start, length), "narrow", {x},
                          [in, dt, d, start, length](const Tensor& g, std::vector<Tensor>& grads) {
                            Tensor& gx = grads[0];
                            if (gx.defined()) return add_(gx.narrow(d, start, length), g);
                            gx = Tensor::zeros(in, dt, g.device());
                            gx.narrow(d, start, length).copy_(g);
                          });
}

Variable select(const Variable& x, int dim, int64_t index) {
  const int d = x.data().wrap_dim(dim);
  if (index < 0) index += x.size(d);
  return squeeze(narrow(x, d, index, 1), d);
}

Variable expand(const Variable& x, const Shape& shape) {
  Shape in = x.shape();
  return make_result(x.data().expand(shape), "expand", {x},
                     [in](const Tensor& g) -> std::vector<Tensor> { return {sum_to(g, in)}; });
}

Variable unsqueeze(const Variable& x, int dim) {
  Shape in = x.shape();
  return make_result(x.data().unsqueeze(dim), "unsqueeze", {x},
                     [in](const Tensor& g) -> std::vector<Tensor> { return {g.reshape(in)}; });
}

Variable squeeze(const Variable& x, int dim) {
  Shape in = x.shape();
  return make_result(x.data().squeeze(dim), "squeeze", {x},
                     [in](const Tensor& g) -> std::vector<Tensor> { return {g.reshape(in)}; });
}

Variable contiguous(const Variable& x) {
  return make_result(x.data().contiguous(), "contiguous", {x},
                     [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
}

}  // namespace simba
