// nn/linear.cpp: Linear's fused forward (bias + one GEMM) and its backward
// (two GEMMs + one row reduction), wired into autograd.
#include "nn/linear.h"

#include "autograd/ops.h"
#include "nn/init.h"

namespace simba {

void linear_forward(Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias) {
  if (bias.defined()) {
    out.copy_(bias.expand(out.shape()));
    gemm(out, x, w.transpose(0, 1), 1.0, 1.0);
  } else {
    gemm(out, x, w.transpose(0, 1), 1.0, 0.0);
  }
}

void linear_backward(Tensor& dx, Tensor& dw, Tensor& dbias, const Tensor& dout, const Tensor& x, const Tensor& w,
                     LinearBackwardAdds adds) {
  if (dx.defined()) gemm(dx, dout, w, 1.0, adds.dx ? 1.0 : 0.0);
  if (dw.defined()) gemm(dw, dout.transpose(0, 1), x, 1.0, adds.dw ? 1.0 : 0.0);
  if (dbias.defined()) {
    if (adds.dbias)
      add_(dbias, sum(dout, 0));
    else
      dbias.copy_(sum(dout, 0));
  }
}

Variable linear(const Variable& x, const Variable& w, const Variable& bias) {
  SIMBA_CHECK(w.dim() == 2, "linear: weight must be (out, in), got shape " << shape_str(w.shape()));
  const int64_t in = w.size(1), out = w.size(0);
  SIMBA_CHECK(x.dim() >= 1 && x.size(-1) == in,
              "linear: input of shape " << shape_str(x.shape()) << " does not match weight of shape "
                                        << shape_str(w.shape()) << " (expected last dim " << in << ")");
  check_same_dtype("linear", x.data(), w.data());
  if (bias.defined()) {
    SIMBA_CHECK(bias.dim() == 1 && bias.size(0) == out,
                "linear: bias of shape " << shape_str(bias.shape()) << " for weight of shape "
                                         << shape_str(w.shape()) << " (expected " << shape_str({out}) << ")");
    check_same_dtype("linear", x.data(), bias.data());
  }
  Shape out_shape = x.shape();
  out_shape.back() = out;
  const int64_t M = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  // Rows of x: a view when x is contiguous, else one copy (kept for backward).
  Tensor x2 = x.data().reshape({M, in});
  Tensor wd = w.data();
  Tensor bd = bias.defined() ? bias.data().contiguous() : Tensor();
  Tensor y = Tensor::empty({M, out}, x.dtype(), x.data().device());
  linear_forward(y, x2, wd, bd);

  Shape x_shape = x.shape();
  const bool has_bias = bias.defined();
  // A frozen operand (e.g. the data entering the first layer) costs no GEMM.
  const bool need_x = x.requires_grad(), need_w = w.requires_grad(), need_b = has_bias && bias.requires_grad();
  std::vector<Variable> inputs{x, w};
  if (has_bias) inputs.push_back(bias);
  // Each gradient is added by its GEMM (beta = 1) to what its input has so far where there is
  // any: an input read by several products (a layer's normed input, the conv's output) gets
  // their sum without a separate add.
  return make_result_into(
      y.view(out_shape), "linear", inputs,
      [x2, wd, x_shape, need_x, need_w, need_b, M, in, out](const Tensor& g, std::vector<Tensor>& grads) {
        const Tensor g2 = g.reshape({M, out});
        const LinearBackwardAdds adds{need_x && grads[0].defined(), need_w && grads[1].defined(),
                                      need_b && grads[2].defined()};
        auto into = [&](bool add, int i, const Shape& shape) {
          return add ? grads[i].view(shape) : Tensor::empty(shape, g.dtype(), g.device());
        };
        Tensor dx = need_x ? into(adds.dx, 0, {M, in}) : Tensor();
        Tensor dw = need_w ? into(adds.dw, 1, {out, in}) : Tensor();
        Tensor db = need_b ? into(adds.dbias, 2, {out}) : Tensor();
        linear_backward(dx, dw, db, g2, x2, wd, adds);
        if (need_x) grads[0] = dx.view(x_shape);
        if (need_w) grads[1] = dw;
        if (need_b) grads[2] = db;
      });
}

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator* g, DType dtype)
    : in_features(in), out_features(out) {
  SIMBA_CHECK(in > 0 && out > 0, "Linear: features must be positive, got in " << in << ", out " << out);
  Tensor w = Tensor::empty({out, in}, dtype);
  if (g) kaiming_uniform_(w, *g);
  weight = register_parameter("weight", w);
  if (with_bias) {
    Tensor b = Tensor::empty({out}, dtype);
    if (g) default_bias_uniform_(b, w.shape(), *g);
    bias = register_parameter("bias", b);
  }
}

Variable Linear::forward(const Variable& x) const {
  SIMBA_CHECK(x.dim() >= 1 && x.size(-1) == in_features,
              "Linear(" << in_features << " -> " << out_features << "): input of shape " << shape_str(x.shape())
                        << " has last dim " << (x.dim() ? x.size(-1) : 0) << ", expected " << in_features
                        << " (weight shape " << shape_str(weight.shape()) << ")");
  return linear(x, weight, bias);
}

}  // namespace simba
