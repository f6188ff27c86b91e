// autograd/reduce_ops.cpp: gradients of reductions.
//
// sum spreads the gradient back over the reduced dim (an expand); mean also
// divides by the count; max routes it to the winning element only (ties went
// to the lowest index in the forward, and so does the gradient).
#include "autograd/ops.h"

namespace simba {

Variable sum(const Variable& x, int dim, bool keepdim) {
  Shape in = x.shape();
  const int d = x.data().wrap_dim(dim);
  return make_result(sum(x.data(), d, keepdim), "sum", {x}, [in, d, keepdim](const Tensor& g) -> std::vector<Tensor> {
    return {(keepdim ? g : g.unsqueeze(d)).expand(in).contiguous()};
  });
}

Variable sum(const Variable& x) {
  Shape in = x.shape();
  return make_result(sum(x.data()), "sum", {x},
                     [in](const Tensor& g) -> std::vector<Tensor> { return {g.expand(in).contiguous()}; });
}

Variable mean(const Variable& x, int dim, bool keepdim) {
  const int d = x.data().wrap_dim(dim);
  return sum(x, d, keepdim) * (1.0 / static_cast<double>(x.size(d)));
}

Variable mean(const Variable& x) {
  SIMBA_CHECK(x.numel() > 0, "mean of an empty tensor of shape " << shape_str(x.shape()));
  return sum(x) * (1.0 / static_cast<double>(x.numel()));
}

Variable max(const Variable& x, int dim, bool keepdim) {
  const int d = x.data().wrap_dim(dim);
  MaxResult r = max(x.data(), d, /*keepdim=*/true);
  Shape in = x.shape();
  DType dt = x.dtype();
  Tensor idx = r.indices;
  Tensor values = keepdim ? r.values : r.values.squeeze(d);
  return make_result(values, "max", {x}, [in, dt, d, keepdim, idx](const Tensor& g) -> std::vector<Tensor> {
    return {scatter_add(Tensor::zeros(in, dt, g.device()), d, idx, keepdim ? g : g.unsqueeze(d))};
  });
}

Variable max(const Variable& x) {
  return reshape(max(reshape(x, {x.numel()}), 0), {});
}

}  // namespace simba
