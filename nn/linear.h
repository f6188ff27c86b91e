// nn/linear.h: the fully connected layer y = x·Wᵀ + b.
//
// The weight is (out, in), Hugging Face's layout, so checkpoints load without
// a transpose; the product uses a transposed view of it, never a copy. Every
// projection of the Mamba block (in_proj, x_proj, dt_proj, out_proj) and the
// tied LM head is one of these.
#pragma once

#include "autograd/variable.h"
#include "nn/module.h"
#include "tensor/random.h"

namespace simba {

// out (M, out) = x (M, in) · w (out, in)ᵀ + bias (out)
// x: any layout BLAS takes (tensor/matmul.h); w: (out, in), row-major or a
// transposed view; bias: (out) contiguous, or undefined for no bias;
// out: (M, out), stride 1 in its last dim. One GEMM; the bias is written
// first and the product accumulated onto it (beta = 1).
void linear_forward(Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias);

// Gradients of linear_forward given dout (M, out):
//   dx (M, in)   = dout · w           (one GEMM)
//   dw (out, in) = doutᵀ · x          (one GEMM, doutᵀ as a transposed view)
//   dbias (out)  = Σ_rows dout        (one reduction over the M rows)
// Each output is skipped when undefined; defined ones are overwritten, or added
// to where `adds` says so (the GEMMs with beta = 1), and must be allocated with
// the shapes above (stride 1 in the last dim).
struct LinearBackwardAdds {
  bool dx = false, dw = false, dbias = false;
};
void linear_backward(Tensor& dx, Tensor& dw, Tensor& dbias, const Tensor& dout, const Tensor& x, const Tensor& w,
                     LinearBackwardAdds adds);

// y (..., out) = x (..., in) · wᵀ + bias. The leading dims of x are flattened
// into the M rows of one GEMM. bias may be undefined.
Variable linear(const Variable& x, const Variable& w, const Variable& bias);

class Linear : public Module {
 public:
  // weight ~ kaiming_uniform (PyTorch's default, bound 1/sqrt(in)),
  // bias ~ U(±1/sqrt(in)), both drawn from g in that order. g null: the values
  // are left unset, for a caller that fills them (a model about to be loaded).
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator* g, DType dtype = DType::F32);
  Variable forward(const Variable& x) const;

  int64_t in_features, out_features;
  Variable weight;  // (out, in)
  Variable bias;    // (out), undefined without bias
};

}  // namespace simba
