// nn/linear_cross_entropy.cpp: the fused classifier of nn/linear_cross_entropy.h, composed of
// the GEMMs of tensor/matmul.h and the row kernels of nn/cross_entropy.h.
#include "nn/linear_cross_entropy.h"

#include <algorithm>

#include "nn/cross_entropy.h"
#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/matmul.h"

namespace simba {

int64_t linear_cross_entropy_chunk_rows(int64_t rows, int64_t V) {
  if (rows <= 0) return 1;
  const int64_t most = std::max<int64_t>(1, kLinearCrossEntropyChunkLogits / std::max<int64_t>(V, 1));
  const int64_t chunks = (rows + most - 1) / most, even = (rows + chunks - 1) / chunks;
  const int64_t a = kLinearCrossEntropyChunkAlign, whole = std::min(rows, (even + a - 1) / a * a);
  return whole <= most ? whole : even;
}

Variable linear_cross_entropy(const Variable& hidden, const Variable& weight, const Tensor& targets,
                              int64_t ignore_index, int64_t chunk_rows) {
  const char* op = "linear_cross_entropy";
  const Tensor h = hidden.data(), W = weight.data();
  SIMBA_CHECK(h.dim() >= 1 && W.dim() == 2 && W.size(1) == h.size(-1),
              op << ": expected hidden (..., D) and weight (V, D), got " << shape_str(h.shape()) << " and "
                 << shape_str(W.shape()));
  SIMBA_CHECK(h.dtype() == W.dtype(), op << ": hidden is " << dtype_name(h.dtype()) << ", weight is "
                                         << dtype_name(W.dtype()));
  SIMBA_CHECK(targets.dtype() == DType::I64, op << ": targets must be int64, got " << dtype_name(targets.dtype()));
  const Shape lead(h.shape().begin(), h.shape().end() - 1);
  SIMBA_CHECK(targets.shape() == lead, op << ": targets of shape " << shape_str(targets.shape())
                                          << " for hidden of shape " << shape_str(h.shape()) << " (expected "
                                          << shape_str(lead) << ")");
  SIMBA_CHECK(chunk_rows >= 0, op << ": chunk_rows must be >= 0 (0: automatic), got " << chunk_rows);
  const Device dev = op_device(op, {h, W, targets});
  const int64_t D = W.size(1), V = W.size(0), rows = shape_numel(lead);
  SIMBA_CHECK(V > 0 || rows == 0, op << ": weight of shape " << shape_str(W.shape()) << " has no classes");
  const DType dt = h.dtype(), acc = acc_dtype(dt);
  const Tensor h2 = h.contiguous().view({rows, D}), t1 = targets.contiguous().view({rows});
  // Without grad mode (evaluation) the gradients are not formed: only the losses.
  const bool need_h = grad_enabled() && hidden.requires_grad(), need_w = grad_enabled() && weight.requires_grad();
  const int64_t step = chunk_rows > 0 ? chunk_rows : linear_cross_entropy_chunk_rows(rows, V);

  Tensor losses = Tensor::empty({rows}, acc, dev);
  Tensor dh = need_h ? Tensor::zeros({rows, D}, acc, dev) : Tensor();  // Σ of G·W, unscaled
  Tensor dW = need_w ? Tensor::zeros({V, D}, acc, dev) : Tensor();     // Σ of Gᵀ·h, unscaled
  const Tensor ones = Tensor::ones({std::min(step, rows)}, acc, dev);  // d(Σ losses)/d loss_r
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t n = std::min(step, rows - r0);
    const Tensor hc = h2.narrow(0, r0, n), tc = t1.narrow(0, r0, n);
    const Tensor logits = matmul(hc, W.transpose(0, 1));  // (n, V)
    Tensor lse = Tensor::empty({n}, acc, dev);
    SIMBA_DISPATCH_COMPUTE_KERNEL(dev, dt, op, cross_entropy_forward, losses.device_data<acc_t<scalar_t>>() + r0,
                                  lse.device_data<acc_t<scalar_t>>(), logits.device_data<scalar_t>(),
                                  tc.device_data<int64_t>(), n, V, ignore_index);
    if (!need_h && !need_w) continue;
    const Tensor& G = logits;  // the gradient of the chunk's losses, written over its logits
    SIMBA_DISPATCH_COMPUTE_KERNEL(dev, dt, op, cross_entropy_backward, G.device_data<scalar_t>(),
                                  ones.device_data<acc_t<scalar_t>>(), logits.device_data<scalar_t>(),
                                  lse.device_data<acc_t<scalar_t>>(), tc.device_data<int64_t>(), n, V, ignore_index);
    // Both land in acc_t unrounded (bfloat16 operands into float32: tensor/matmul.h).
    if (need_h) {
      Tensor dh_chunk = dh.narrow(0, r0, n);
      gemm(dh_chunk, G, W);
    }
    if (need_w) gemm(dW, G.transpose(0, 1), hc, 1.0, 1.0);
  }
  // The mean and 1/count, on the device (as cross_entropy: the host never reads the count).
  Tensor loss = Tensor::empty({}, acc, dev), inv_count = Tensor::empty({}, acc, dev);
  SIMBA_DISPATCH_KERNEL(dev, acc, op, cross_entropy_mean, loss.device_data<scalar_t>(),
                        inv_count.device_data<scalar_t>(), losses.device_data<scalar_t>(),
                        t1.device_data<int64_t>(), rows, ignore_index);
  const Shape h_shape = h.shape();
  return make_result(loss, op, {hidden, weight},
                     [dh, dW, inv_count, h_shape, dt](const Tensor& g) -> std::vector<Tensor> {
                       const Tensor scale = mul(g, inv_count);  // d loss / d Σ losses, times upstream
                       return {dh.defined() ? mul(dh, scale).to(dt).view(h_shape) : Tensor(),
                               dW.defined() ? mul(dW, scale).to(dt) : Tensor()};
                     });
}

}  // namespace simba
