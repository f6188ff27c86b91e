// nn/cross_entropy.cpp: fused log-sum-exp cross-entropy kernels and the loss op.
#include "nn/cross_entropy.h"

#include <algorithm>
#include <cmath>

#include "nn/kernel_check.h"
#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/strided_loop.h"

namespace simba {

template <class T>
void cross_entropy_forward_ref(acc_t<T>* losses, acc_t<T>* lse, const T* logits, const int64_t* targets,
                               int64_t rows, int64_t V, int64_t ignore) {
  kernel_check::cross_entropy_forward("cross_entropy_forward_ref", losses, lse, logits, targets, rows, V);
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == ignore) {
      losses[r] = lse[r] = T(0);
      continue;
    }
    const T* z = logits + r * V;
    double m = z[0];
    for (int64_t v = 1; v < V; ++v) m = std::max(m, static_cast<double>(z[v]));
    double s = 0.0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(z[v]) - m);
    const double l = m + std::log(s);
    lse[r] = static_cast<T>(l);
    losses[r] = static_cast<T>(l - static_cast<double>(z[targets[r]]));
  }
}

template <class T>
void cross_entropy_backward_ref(T* dlogits, const acc_t<T>* dlosses, const T* logits, const acc_t<T>* lse,
                                const int64_t* targets, int64_t rows, int64_t V, int64_t ignore) {
  kernel_check::cross_entropy_backward("cross_entropy_backward_ref", dlogits, dlosses, logits, lse, targets, rows,
                                       V);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t v = 0; v < V; ++v) {
      const double p = std::exp(static_cast<double>(logits[r * V + v]) - static_cast<double>(lse[r]));
      dlogits[r * V + v] =
          targets[r] == ignore ? T(0) : static_cast<T>((p - (v == targets[r] ? 1.0 : 0.0)) * dlosses[r]);
    }
}

template <class T>
void cross_entropy_forward_cpu(acc_t<T>* losses, acc_t<T>* lse, const T* logits, const int64_t* targets,
                               int64_t rows, int64_t V, int64_t ignore) {
  using Acc = acc_t<T>;
  kernel_check::cross_entropy_forward("cross_entropy_forward_cpu", losses, lse, logits, targets, rows, V);
  for (int64_t r = 0; r < rows; ++r)
    SIMBA_CHECK_HINT(targets[r] == ignore || (targets[r] >= 0 && targets[r] < V),
                     "cross_entropy: target " << targets[r] << " at row " << r << " is outside [0, V) with V = " << V,
                     "targets must be token ids below the vocabulary size, or ignore_index (" << ignore << ")");
#pragma omp parallel for schedule(static) if (rows * V > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == ignore) {
      losses[r] = lse[r] = Acc(0);
      continue;
    }
    const T* z = logits + r * V;
    Acc m = static_cast<Acc>(z[0]);
    for (int64_t v = 1; v < V; ++v) m = static_cast<Acc>(z[v]) > m ? static_cast<Acc>(z[v]) : m;
    double s = 0.0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<Acc>(z[v]) - m);
    const double l = static_cast<double>(m) + std::log(s);
    lse[r] = static_cast<Acc>(l);
    losses[r] = static_cast<Acc>(l - static_cast<double>(z[targets[r]]));
  }
}

template <class T>
void cross_entropy_backward_cpu(T* dlogits, const acc_t<T>* dlosses, const T* logits, const acc_t<T>* lse,
                                const int64_t* targets, int64_t rows, int64_t V, int64_t ignore) {
  using Acc = acc_t<T>;
  kernel_check::cross_entropy_backward("cross_entropy_backward_cpu", dlogits, dlosses, logits, lse, targets, rows,
                                       V);
#pragma omp parallel for schedule(static) if (rows * V > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    T* d = dlogits + r * V;
    if (targets[r] == ignore) {
      for (int64_t v = 0; v < V; ++v) d[v] = T(0);
      continue;
    }
    const T* z = logits + r * V;
    const Acc l = lse[r], g = dlosses[r];
    // The target's element with −g applied before its one rounding; its logit is read first,
    // as the loop may overwrite it (in place, dlogits == logits).
    const int64_t t = targets[r];
    const T dt = static_cast<T>(std::exp(static_cast<Acc>(z[t]) - l) * g - g);
    for (int64_t v = 0; v < V; ++v) d[v] = static_cast<T>(std::exp(static_cast<Acc>(z[v]) - l) * g);
    d[t] = dt;
  }
}

template <class T>
void cross_entropy_mean_cpu(T* loss, T* inv_count, const T* losses, const int64_t* targets, int64_t rows,
                            int64_t ignore) {
  const char* op = "cross_entropy_mean_cpu";
  kernel_check::cross_entropy_mean(op, loss, inv_count, losses, targets, rows);
  double sum = 0.0;
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == ignore) continue;
    sum += static_cast<double>(losses[r]);
    ++count;
  }
  const double inv = count > 0 ? 1.0 / static_cast<double>(count) : 0.0;
  *inv_count = static_cast<T>(inv);
  *loss = static_cast<T>(sum * inv);
}

#define SIMBA_INSTANTIATE_CE(T, V)                                                                          \
  template void cross_entropy_forward_##V<T>(acc_t<T>*, acc_t<T>*, const T*, const int64_t*, int64_t, int64_t,  \
                                             int64_t);                                                          \
  template void cross_entropy_backward_##V<T>(T*, const acc_t<T>*, const T*, const acc_t<T>*, const int64_t*,   \
                                              int64_t, int64_t, int64_t);
SIMBA_INSTANTIATE_CE(float, ref)
SIMBA_INSTANTIATE_CE(double, ref)
SIMBA_INSTANTIATE_CE(float, cpu)
SIMBA_INSTANTIATE_CE(double, cpu)
SIMBA_INSTANTIATE_CE(bfloat16, cpu)
#undef SIMBA_INSTANTIATE_CE
template void cross_entropy_mean_cpu<float>(float*, float*, const float*, const int64_t*, int64_t, int64_t);
template void cross_entropy_mean_cpu<double>(double*, double*, const double*, const int64_t*, int64_t, int64_t);

namespace {

struct CrossEntropyRows {
  Tensor logits;   // (rows, V) contiguous
  Tensor targets;  // (rows) contiguous int64
  Tensor losses, lse;  // (rows), acc_dtype of the logits' dtype
  int64_t rows = 0, V = 0;
};

// Checks shapes, then runs the forward kernel on the operands' device (which checks every
// target: nn/cross_entropy.h).
CrossEntropyRows cross_entropy_rows_forward(const char* op, const Tensor& logits, const Tensor& targets,
                                            int64_t ignore) {
  SIMBA_CHECK(logits.dim() >= 1, op << ": expected logits (..., V), got a 0-dim tensor");
  SIMBA_CHECK(targets.dtype() == DType::I64, op << ": targets must be int64, got " << dtype_name(targets.dtype()));
  Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  SIMBA_CHECK(targets.shape() == lead, op << ": targets of shape " << shape_str(targets.shape())
                                          << " for logits of shape " << shape_str(logits.shape())
                                          << " (expected " << shape_str(lead) << ")");
  const Device dev = op_device(op, {logits, targets});
  CrossEntropyRows c;
  c.V = logits.size(-1);
  c.rows = shape_numel(lead);
  SIMBA_CHECK(c.V > 0 || c.rows == 0, op << ": logits of shape " << shape_str(logits.shape()) << " have no classes");
  c.logits = logits.contiguous().view({c.rows, c.V});
  c.targets = targets.contiguous().view({c.rows});
  c.losses = Tensor::empty({c.rows}, acc_dtype(logits.dtype()), dev);
  c.lse = Tensor::empty({c.rows}, acc_dtype(logits.dtype()), dev);
  if (c.rows > 0)
    SIMBA_DISPATCH_COMPUTE_KERNEL(dev, logits.dtype(), op, cross_entropy_forward,
                                  c.losses.device_data<acc_t<scalar_t>>(), c.lse.device_data<acc_t<scalar_t>>(),
                                  c.logits.device_data<scalar_t>(), c.targets.device_data<int64_t>(), c.rows, c.V,
                                  ignore);
  return c;
}

}  // namespace

Variable cross_entropy(const Variable& logits, const Tensor& targets, int64_t ignore_index) {
  CrossEntropyRows c = cross_entropy_rows_forward("cross_entropy", logits.data(), targets, ignore_index);
  const Device dev = c.losses.device();
  const DType dt = c.losses.dtype();
  // The mean and 1/count stay on the device: the count is never read by the host. They have
  // the losses' dtype (float32 or float64, whatever the logits'), hence the float dispatch.
  Tensor loss = Tensor::empty({}, dt, dev), inv_count = Tensor::empty({}, dt, dev);
  SIMBA_DISPATCH_KERNEL(dev, dt, "cross_entropy", cross_entropy_mean, loss.device_data<scalar_t>(),
                        inv_count.device_data<scalar_t>(), c.losses.device_data<scalar_t>(),
                        c.targets.device_data<int64_t>(), c.rows, ignore_index);
  Shape shape = logits.shape();
  return make_result(loss, "cross_entropy", {logits},
                     [c, inv_count, shape, ignore_index](const Tensor& g) -> std::vector<Tensor> {
                       // d mean / d loss_r = 1/count on every counted row (the kernel gives
                       // ignored rows zeros whatever dlosses holds there).
                       const Tensor dlosses = mul(g, inv_count).expand({c.rows}).contiguous();
                       const Device dev = c.logits.device();
                       Tensor dlogits = Tensor::empty({c.rows, c.V}, c.logits.dtype(), dev);
                       if (c.rows > 0)
                         SIMBA_DISPATCH_COMPUTE_KERNEL(
                             dev, c.logits.dtype(), "cross_entropy backward", cross_entropy_backward,
                             dlogits.device_data<scalar_t>(), dlosses.device_data<acc_t<scalar_t>>(),
                             c.logits.device_data<scalar_t>(), c.lse.device_data<acc_t<scalar_t>>(),
                             c.targets.device_data<int64_t>(), c.rows, c.V, ignore_index);
                       return {dlogits.view(shape)};
                     });
}

Tensor cross_entropy_rows(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  CrossEntropyRows c = cross_entropy_rows_forward("cross_entropy_rows", logits, targets, ignore_index);
  return c.losses.view(targets.shape());
}

}  // namespace simba
