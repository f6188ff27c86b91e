// ssm/delta_softplus.cpp: Δ = softplus(dt + b) (ssm/delta_softplus.h): the reference and CPU
// kernels, the backward and the autograd op.
#include "ssm/delta_softplus.h"

#include <cmath>

#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/elementwise_math.h"
#include "tensor/reduce.h"
#include "tensor/strided_loop.h"

namespace simba {

template <class T>
void delta_softplus_forward_ref(T* delta, const T* dt, const T* bias, int64_t M, int64_t Di) {
  check_delta_softplus("delta_softplus_forward_ref", delta, dt, bias, M, Di);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t d = 0; d < Di; ++d) {
      const double v = static_cast<double>(dt[m * Di + d]) + static_cast<double>(bias[d]);
      delta[m * Di + d] = static_cast<T>(v > 20.0 ? v : std::log1p(std::exp(v)));  // (1)
    }
}

template <class T>
void delta_softplus_forward_cpu(T* delta, const T* dt, const T* bias, int64_t M, int64_t Di) {
  check_delta_softplus("delta_softplus_forward_cpu", delta, dt, bias, M, Di);
  using A = acc_t<T>;
#pragma omp parallel for schedule(static) if (M * Di > kParallelGrain)
  for (int64_t m = 0; m < M; ++m) {
    const T* x = dt + m * Di;
    T* o = delta + m * Di;
#pragma omp simd
    for (int64_t d = 0; d < Di; ++d) o[d] = T(pointwise::softplus_of(A(x[d]) + A(bias[d])));  // (1)
  }
}

#define SIMBA_INSTANTIATE_DELTA_SOFTPLUS(T)                                                  \
  template void delta_softplus_forward_ref<T>(T*, const T*, const T*, int64_t, int64_t); \
  template void delta_softplus_forward_cpu<T>(T*, const T*, const T*, int64_t, int64_t);
SIMBA_INSTANTIATE_DELTA_SOFTPLUS(float)
SIMBA_INSTANTIATE_DELTA_SOFTPLUS(double)
SIMBA_INSTANTIATE_DELTA_SOFTPLUS(bfloat16)
#undef SIMBA_INSTANTIATE_DELTA_SOFTPLUS

void delta_softplus_backward(Tensor& ddt, Tensor& db, const Tensor& ddelta, const Tensor& delta) {
  ddt = unary_backward(UnaryOp::Softplus, ddelta, delta, delta);  // (2), from the output
  const int64_t Di = delta.size(-1);
  db = sum(ddt.reshape({ddt.numel() / Di, Di}), 0);  // (3)
}

Variable delta_softplus(const Variable& dt, const Variable& b) {
  SIMBA_CHECK(dt.dim() >= 1 && b.dim() == 1 && b.size(0) == dt.size(-1),
              "delta_softplus: bias of shape " << shape_str(b.shape()) << " for dt of shape " << shape_str(dt.shape())
                                               << " (expected " << shape_str({dt.dim() >= 1 ? dt.size(-1) : 0})
                                               << ")");
  check_same_dtype("delta_softplus", dt.data(), b.data());
  const Device dev = op_device("delta_softplus", {dt.data(), b.data()});
  const int64_t Di = dt.size(-1), M = dt.numel() / Di;
  const Tensor dtc = dt.data().contiguous(), bc = b.data().contiguous();
  Tensor delta = Tensor::empty(dt.shape(), dt.dtype(), dev);
  if (M > 0)
    SIMBA_DISPATCH_COMPUTE_KERNEL(dev, dt.dtype(), "delta_softplus", delta_softplus_forward,
                                  delta.device_data<scalar_t>(), dtc.device_data<scalar_t>(),
                                  bc.device_data<scalar_t>(), M, Di);
  return make_result(delta, "delta_softplus", {dt, b}, [delta](const Tensor& g) -> std::vector<Tensor> {
    Tensor ddt, db;
    delta_softplus_backward(ddt, db, g, delta);
    return {ddt, db};
  });
}

}  // namespace simba
