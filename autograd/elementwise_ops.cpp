// autograd/elementwise_ops.cpp: gradients of pointwise ops.
//
// For broadcasting binary ops the upstream gradient has the broadcast shape;
// sum_to folds it back onto each operand's own shape (the adjoint of expand).
#include "autograd/ops.h"

namespace simba {

Variable unary(UnaryOp op, const Variable& x) {
  Tensor y = unary(op, x.data());
  // The node keeps only what its derivative reads (unary_reads: x, y or neither), handed to
  // unary_backward in both places: Δ = softplus(dt) keeps Δ, which the scan keeps anyway, and
  // dt_proj's output is freed after the forward.
  const UnaryReads reads = unary_reads(op);
  const Tensor kept = reads == UnaryReads::Input ? x.data() : reads == UnaryReads::Output ? y : Tensor();
  return make_result(y, unary_name(op), {x}, [op, kept](const Tensor& g) -> std::vector<Tensor> {
    const Tensor& v = kept.defined() ? kept : g;
    return {unary_backward(op, g, v, v)};
  });
}

Variable binary(BinaryOp op, const Variable& a, const Variable& b) {
  const Tensor out = binary(op, a.data(), b.data());
  // The node keeps only what its gradient reads (the operands for Mul, Div and Pow, the output
  // for Pow): the residual adds of a model (h + mixer(h)) would otherwise hold both summands of
  // every layer until backward. The shapes stay, for sum_to.
  const Shape a_shape = a.shape(), b_shape = b.shape();
  const bool reads_operands = op != BinaryOp::Add && op != BinaryOp::Sub;
  const Tensor av = reads_operands ? a.data() : Tensor(), bv = reads_operands ? b.data() : Tensor();
  const Tensor y = op == BinaryOp::Pow ? out : Tensor();
  return make_result(out, binary_name(op), {a, b},
                     [op, av, bv, y, a_shape, b_shape](const Tensor& g) -> std::vector<Tensor> {
    Tensor ga, gb;
    switch (op) {
      case BinaryOp::Add: ga = g; gb = g; break;
      case BinaryOp::Sub: ga = g; gb = neg(g); break;
      case BinaryOp::Mul: ga = mul(g, bv); gb = mul(g, av); break;
      case BinaryOp::Div: {  // d(a/b) = da/b − a·db/b² = (da − y·db)/b
        ga = div(g, bv);
        gb = neg(mul(ga, div(av, bv)));
        break;
      }
      case BinaryOp::Pow: {  // d(a^b) = b·a^(b−1)·da + a^b·ln(a)·db
        ga = mul(g, mul(bv, pow(av, affine(bv, 1.0, -1.0))));
        gb = mul(g, mul(y, log(av)));
        break;
      }
    }
    return {sum_to(ga, a_shape), sum_to(gb, b_shape)};
  });
}

Variable affine(const Variable& x, double scale, double shift) {
  return make_result(affine(x.data(), scale, shift), "affine", {x},
                     [scale](const Tensor& g) -> std::vector<Tensor> { return {affine(g, scale, 0.0)}; });
}

Variable pow(const Variable& x, double p) {
  Tensor xs = x.data();
  return make_result(pow(xs, p), "pow", {x}, [xs, p](const Tensor& g) -> std::vector<Tensor> {
    return {mul(g, affine(pow(xs, p - 1.0), p, 0.0))};
  });
}

Variable clamp(const Variable& x, double lo, double hi) {
  Tensor xs = x.data();
  return make_result(clamp(xs, lo, hi), "clamp", {x}, [xs, lo, hi](const Tensor& g) -> std::vector<Tensor> {
    return {clamp_backward(g, xs, lo, hi)};
  });
}

}  // namespace simba
