// autograd/matmul_ops.cpp: the gradient of the matrix product.
//
// For y = a @ b with upstream gradient g (batch..., M, N):
//   da = g @ bᵀ,  db = aᵀ @ g,
// with bᵀ and aᵀ passed as transposed views, which BLAS reads in place. An
// operand that was broadcast over batch dims receives the sum over those dims
// (sum_to, the adjoint of expand). A 2-D b shared by a batch of a (the Linear
// case) gets that sum from a single GEMM, db = a_flatᵀ @ g_flat, with
// a_flat (prod(batch)·M, K) and g_flat (prod(batch)·M, N): the batch sum is
// folded into the GEMM's inner dimension instead of materialising per-batch
// products.
#include "autograd/ops.h"

namespace simba {

namespace {
// True when every batch dim of x (all dims but the last two) has size 1.
bool shared_matrix(const Shape& shape) {
  for (size_t d = 0; d + 2 < shape.size(); ++d)
    if (shape[d] != 1) return false;
  return true;
}
}  // namespace

Variable matmul(const Variable& a, const Variable& b) {
  Tensor av = a.data(), bv = b.data();
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return make_result(matmul(av, bv), "matmul", {a, b},
                     [av, bv, need_a, need_b](const Tensor& g) -> std::vector<Tensor> {
                       Tensor da, db;
                       if (need_a) da = sum_to(matmul(g, bv.transpose(-1, -2)), av.shape());
                       if (need_b) {
                         if (shared_matrix(bv.shape())) {
                           const int64_t rows = shape_numel(Shape(av.shape().begin(), av.shape().end() - 1));
                           const Tensor a_flat = av.reshape({rows, av.size(-1)});
                           const Tensor g_flat = g.reshape({rows, g.size(-1)});
                           db = matmul(a_flat.transpose(0, 1), g_flat).reshape(bv.shape());
                         } else {
                           db = sum_to(matmul(av.transpose(-1, -2), g), bv.shape());
                         }
                       }
                       return {da, db};
                     });
}

}  // namespace simba
