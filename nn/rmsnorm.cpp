// nn/rmsnorm.cpp: fused RMSNorm kernels and their autograd wiring.
#include "nn/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "nn/kernel_check.h"
#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/strided_loop.h"

namespace simba {

namespace {
// Rows per dw partial. Fixed (not per thread) so that the summation order,
// and hence every bit of dw, does not depend on the thread count.
constexpr int64_t kRowsPerChunk = 32;
}  // namespace

template <class T>
void rmsnorm_forward_ref(T* y, acc_t<T>* rstd, const T* x, const T* w, int64_t rows, int64_t D, double eps) {
  kernel_check::rmsnorm_forward("rmsnorm_forward_ref", y, rstd, x, w, rows, D, eps);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t j = 0; j < D; ++j) ss += static_cast<double>(x[r * D + j]) * x[r * D + j];
    const double s = 1.0 / std::sqrt(ss / static_cast<double>(D) + eps);
    rstd[r] = static_cast<T>(s);
    for (int64_t j = 0; j < D; ++j) y[r * D + j] = static_cast<T>(x[r * D + j] * s * w[j]);
  }
}

namespace {
// x <- x + add, rounded once to T (the first half of add_rmsnorm_forward).
template <class T>
void add_rows(T* x, const T* add, int64_t n) {
  using Acc = acc_t<T>;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<T>(static_cast<Acc>(x[i]) + static_cast<Acc>(add[i]));
}
}  // namespace

template <class T>
void add_rmsnorm_forward_ref(T* y, acc_t<T>* rstd, T* x, const T* add, const T* w, int64_t rows, int64_t D,
                             double eps) {
  kernel_check::rmsnorm_forward("add_rmsnorm_forward_ref", y, rstd, x, w, rows, D, eps);
  if (rows > 0) kernel_check::not_null("add_rmsnorm_forward_ref", add, "add");
  for (int64_t i = 0; i < rows * D; ++i) x[i] = static_cast<T>(static_cast<double>(x[i]) + add[i]);
  rmsnorm_forward_ref(y, rstd, x, w, rows, D, eps);
}

template <class T>
void add_rmsnorm_forward_cpu(T* y, acc_t<T>* rstd, T* x, const T* add, const T* w, int64_t rows, int64_t D,
                             double eps) {
  kernel_check::rmsnorm_forward("add_rmsnorm_forward_cpu", y, rstd, x, w, rows, D, eps);
  if (rows > 0) kernel_check::not_null("add_rmsnorm_forward_cpu", add, "add");
  add_rows(x, add, rows * D);
  rmsnorm_forward_cpu(y, rstd, x, w, rows, D, eps);
}

template <class T>
void rmsnorm_backward_ref(T* dx, T* dw, const T* dy, const T* x, const T* w, const acc_t<T>* rstd, int64_t rows,
                          int64_t D, bool add_dx) {
  kernel_check::rmsnorm_backward("rmsnorm_backward_ref", dy, x, w, rstd, rows, D);
  std::vector<double> acc(static_cast<size_t>(D), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const double s = rstd[r];
    double dot = 0.0;
    for (int64_t j = 0; j < D; ++j) dot += static_cast<double>(dy[r * D + j]) * w[j] * x[r * D + j];
    for (int64_t j = 0; j < D; ++j) {
      if (dx)
        dx[r * D + j] = static_cast<T>((add_dx ? static_cast<double>(dx[r * D + j]) : 0.0) + s * w[j] * dy[r * D + j] -
                                       s * s * s * x[r * D + j] / D * dot);
      acc[j] += static_cast<double>(dy[r * D + j]) * x[r * D + j] * s;
    }
  }
  if (dw)
    for (int64_t j = 0; j < D; ++j) dw[j] = static_cast<T>(acc[j]);
}

namespace {

// One row of rmsnorm_forward_cpu: yr and its rstd from xr.
template <class T>
void norm_row_cpu(T* yr, acc_t<T>* rstd, const T* xr, const T* w, int64_t D, double eps) {
  using Acc = acc_t<T>;
  double ss = 0.0;
  for (int64_t j = 0; j < D; ++j) ss += static_cast<double>(xr[j]) * static_cast<double>(xr[j]);
  const Acc s = static_cast<Acc>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
  *rstd = s;
  for (int64_t j = 0; j < D; ++j) yr[j] = static_cast<T>(static_cast<Acc>(xr[j]) * s * static_cast<Acc>(w[j]));
}

// The checks of the gather variants: sizes and pointers as rmsnorm_forward, every row in [0, S).
void check_gather(const char* op, const void* y, const void* rstd, const void* x, const int64_t* rows,
                  const void* w, int64_t n, int64_t S, int64_t D, double eps) {
  kernel_check::rmsnorm_forward(op, y, rstd, x, w, n, D, eps);
  if (n > 0) kernel_check::not_null(op, rows, "rows");
  for (int64_t i = 0; i < n; ++i)
    SIMBA_CHECK(rows[i] >= 0 && rows[i] < S,
                op << ": rows[" << i << "] = " << rows[i] << " out of range (expected 0 <= row < " << S << ")");
}

}  // namespace

template <class T>
void rmsnorm_forward_cpu(T* y, acc_t<T>* rstd, const T* x, const T* w, int64_t rows, int64_t D, double eps) {
  kernel_check::rmsnorm_forward("rmsnorm_forward_cpu", y, rstd, x, w, rows, D, eps);
#pragma omp parallel for schedule(static) if (rows * D > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) norm_row_cpu(y + r * D, rstd + r, x + r * D, w, D, eps);
}

template <class T>
void gather_rmsnorm_forward_ref(T* y, acc_t<T>* rstd, const T* x, const int64_t* rows, const T* w, int64_t n,
                                int64_t S, int64_t D, double eps) {
  check_gather("gather_rmsnorm_forward_ref", y, rstd, x, rows, w, n, S, D, eps);
  for (int64_t i = 0; i < n; ++i) rmsnorm_forward_ref(y + i * D, rstd + i, x + rows[i] * D, w, 1, D, eps);
}

template <class T>
void gather_rmsnorm_forward_cpu(T* y, acc_t<T>* rstd, const T* x, const int64_t* rows, const T* w, int64_t n,
                                int64_t S, int64_t D, double eps) {
  check_gather("gather_rmsnorm_forward_cpu", y, rstd, x, rows, w, n, S, D, eps);
#pragma omp parallel for schedule(static) if (n * D > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) norm_row_cpu(y + i * D, rstd + i, x + rows[i] * D, w, D, eps);
}

// With s = rstd = (mean(x²) + eps)^(-1/2), ∂s/∂x_k = −s³·x_k / D, so for one row
//   y_j   = x_j·s·w_j
//   dx_k  = Σ_j dy_j·∂y_j/∂x_k = s·w_k·dy_k − (s³·x_k / D)·Σ_j dy_j·w_j·x_j
//   dw_j  = Σ_rows dy_j·x_j·s
template <class T>
void rmsnorm_backward_cpu(T* dx, T* dw, const T* dy, const T* x, const T* w, const acc_t<T>* rstd, int64_t rows,
                          int64_t D, bool add_dx) {
  using Acc = acc_t<T>;
  kernel_check::rmsnorm_backward("rmsnorm_backward_cpu", dy, x, w, rstd, rows, D);
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  std::vector<double> partial(dw ? static_cast<size_t>(chunks * D) : 0, 0.0);
#pragma omp parallel for schedule(static) if (rows * D > kParallelGrain)
  for (int64_t c = 0; c < chunks; ++c) {
    double* pw = dw ? partial.data() + c * D : nullptr;
    const int64_t end = std::min(rows, (c + 1) * kRowsPerChunk);
    for (int64_t r = c * kRowsPerChunk; r < end; ++r) {
      const T* xr = x + r * D;
      const T* dyr = dy + r * D;
      const double s = rstd[r];
      if (dx) {
        double dot = 0.0;  // Σ_j dy_j·w_j·x_j
        for (int64_t j = 0; j < D; ++j)
          dot += static_cast<double>(dyr[j]) * static_cast<double>(w[j]) * static_cast<double>(xr[j]);
        const Acc a = static_cast<Acc>(s), b = static_cast<Acc>(s * s * s * dot / static_cast<double>(D));
        T* dxr = dx + r * D;
        for (int64_t j = 0; j < D; ++j) {
          Acc v = a * static_cast<Acc>(w[j]) * static_cast<Acc>(dyr[j]) - b * static_cast<Acc>(xr[j]);
          if (add_dx) v += static_cast<Acc>(dxr[j]);
          dxr[j] = static_cast<T>(v);
        }
      }
      if (pw)
        for (int64_t j = 0; j < D; ++j) pw[j] += static_cast<double>(dyr[j]) * static_cast<double>(xr[j]) * s;
    }
  }
  if (!dw) return;
#pragma omp parallel for schedule(static) if (chunks * D > kParallelGrain)
  for (int64_t j = 0; j < D; ++j) {
    double acc = 0.0;
    for (int64_t c = 0; c < chunks; ++c) acc += partial[c * D + j];
    dw[j] = static_cast<T>(acc);
  }
}

#define SIMBA_INSTANTIATE_RMSNORM(T, V)                                                                     \
  template void rmsnorm_forward_##V<T>(T*, acc_t<T>*, const T*, const T*, int64_t, int64_t, double);        \
  template void add_rmsnorm_forward_##V<T>(T*, acc_t<T>*, T*, const T*, const T*, int64_t, int64_t, double); \
  template void rmsnorm_backward_##V<T>(T*, T*, const T*, const T*, const T*, const acc_t<T>*, int64_t, int64_t, bool); \
  template void gather_rmsnorm_forward_##V<T>(T*, acc_t<T>*, const T*, const int64_t*, const T*, int64_t, int64_t,     \
                                              int64_t, double);
SIMBA_INSTANTIATE_RMSNORM(float, ref)
SIMBA_INSTANTIATE_RMSNORM(double, ref)
SIMBA_INSTANTIATE_RMSNORM(float, cpu)
SIMBA_INSTANTIATE_RMSNORM(double, cpu)
SIMBA_INSTANTIATE_RMSNORM(bfloat16, cpu)
#undef SIMBA_INSTANTIATE_RMSNORM

Tensor add_rms_norm_(Tensor& x, const Tensor& add, const Tensor& w, double eps) {
  SIMBA_CHECK(x.dim() >= 1 && add.shape() == x.shape(),
              "add_rms_norm_: x of shape " << shape_str(x.shape()) << " and add of shape " << shape_str(add.shape())
                                           << " (expected the same shape, (..., D))");
  const int64_t D = x.size(-1);
  SIMBA_CHECK(w.dim() == 1 && w.size(0) == D,
              "add_rms_norm_: weight of shape " << shape_str(w.shape()) << " for rows of " << D);
  SIMBA_CHECK(x.is_contiguous(), "add_rms_norm_: x is updated in place and must be contiguous");
  check_same_dtype("add_rms_norm_", x, add);
  check_same_dtype("add_rms_norm_", x, w);
  const Device dev = op_device("add_rms_norm_", {x, add, w});
  const int64_t rows = D ? x.numel() / D : 0;
  const Tensor ac = add.contiguous(), wc = w.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), dev);
  Tensor rstd = Tensor::empty({rows}, acc_dtype(x.dtype()), dev);
  if (x.numel() > 0)
    SIMBA_DISPATCH_COMPUTE_KERNEL(dev, x.dtype(), "add_rms_norm_", add_rmsnorm_forward, y.device_data<scalar_t>(),
                                  rstd.device_data<acc_t<scalar_t>>(), x.device_data<scalar_t>(),
                                  ac.device_data<scalar_t>(), wc.device_data<scalar_t>(), rows, D, eps);
  return y;
}

Tensor gather_rms_norm(const Tensor& x, const Tensor& rows, const Tensor& w, double eps) {
  SIMBA_CHECK(x.dim() == 2 && x.is_contiguous(),
              "gather_rms_norm: x must be a contiguous (S, D) matrix, got shape " << shape_str(x.shape()));
  const int64_t S = x.size(0), D = x.size(1);
  SIMBA_CHECK(rows.dim() == 1 && rows.dtype() == DType::I64,
              "gather_rms_norm: rows must be a 1-D int64 tensor, got " << dtype_name(rows.dtype()) << " "
                                                                       << shape_str(rows.shape()));
  SIMBA_CHECK(w.dim() == 1 && w.size(0) == D,
              "gather_rms_norm: weight of shape " << shape_str(w.shape()) << " for rows of " << D);
  const int64_t n = rows.size(0);
  SIMBA_CHECK(n == 0 || S > 0, "gather_rms_norm: " << n << " rows asked of an x with none");
  check_same_dtype("gather_rms_norm", x, w);
  const Device dev = op_device("gather_rms_norm", {x, rows, w});
  const Tensor rc = rows.contiguous(), wc = w.contiguous();
  Tensor y = Tensor::empty({n, D}, x.dtype(), dev);
  Tensor rstd = Tensor::empty({n}, acc_dtype(x.dtype()), dev);
  if (n * D > 0)
    SIMBA_DISPATCH_COMPUTE_KERNEL(dev, x.dtype(), "gather_rms_norm", gather_rmsnorm_forward,
                                  y.device_data<scalar_t>(), rstd.device_data<acc_t<scalar_t>>(),
                                  x.device_data<scalar_t>(), rc.device_data<int64_t>(), wc.device_data<scalar_t>(), n,
                                  S, D, eps);
  return y;
}

Variable rms_norm(const Variable& x, const Variable& w, double eps) {
  SIMBA_CHECK(x.dim() >= 1, "rms_norm: expected an input of shape (..., D), got a 0-dim tensor");
  const int64_t D = x.size(-1);
  SIMBA_CHECK(w.dim() == 1 && w.size(0) == D,
              "rms_norm: weight of shape " << shape_str(w.shape()) << " for input of shape " << shape_str(x.shape())
                                           << " (expected " << shape_str({D}) << ")");
  SIMBA_CHECK(eps >= 0, "rms_norm: eps must be >= 0, got " << eps);
  check_same_dtype("rms_norm", x.data(), w.data());
  const Device dev = op_device("rms_norm", {x.data(), w.data()});
  const int64_t rows = D ? x.numel() / D : 0;
  Tensor xc = x.data().contiguous(), wc = w.data().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), dev);
  Tensor rstd = Tensor::empty({rows}, acc_dtype(x.dtype()), dev);
  if (x.numel() > 0)
    SIMBA_DISPATCH_COMPUTE_KERNEL(dev, x.dtype(), "rms_norm", rmsnorm_forward, y.device_data<scalar_t>(),
                                  rstd.device_data<acc_t<scalar_t>>(), xc.device_data<scalar_t>(),
                                  wc.device_data<scalar_t>(), rows, D, eps);
  const bool need_x = x.requires_grad(), need_w = w.requires_grad();
  // dx is added in the kernel's pass to what x has so far where there is any: in a residual
  // block x also feeds the residual add, whose gradient is there by the time the norm's runs.
  return make_result_into(y, "rms_norm", {x, w},
                          [xc, wc, rstd, rows, D, need_x, need_w, dev](const Tensor& g, std::vector<Tensor>& grads) {
                            const Tensor gc = g.contiguous();
                            const bool add_dx = need_x && grads[0].defined();
                            Tensor dx = !need_x  ? Tensor()
                                        : add_dx ? grads[0]
                                                 : Tensor::empty(xc.shape(), xc.dtype(), dev);
                            // The kernel writes every element of dw when there are rows.
                            Tensor dw = !need_w   ? Tensor()
                                        : rows > 0 ? Tensor::empty({D}, xc.dtype(), dev)
                                                   : Tensor::zeros({D}, xc.dtype(), dev);
                            if (rows > 0)
                              SIMBA_DISPATCH_COMPUTE_KERNEL(dev, xc.dtype(), "rms_norm backward", rmsnorm_backward,
                                                            need_x ? dx.device_data<scalar_t>() : nullptr,
                                                            need_w ? dw.device_data<scalar_t>() : nullptr,
                                                            gc.device_data<scalar_t>(), xc.device_data<scalar_t>(),
                                                            wc.device_data<scalar_t>(),
                                                            rstd.device_data<acc_t<scalar_t>>(), rows, D, add_dx);
                            if (need_x) grads[0] = dx;
                            if (need_w) {
                              if (grads[1].defined())
                                add_(grads[1], dw);
                              else
                                grads[1] = dw;
                            }
                          });
}

RMSNorm::RMSNorm(int64_t D, double eps_, DType dtype) : dim(D), eps(eps_) {
  SIMBA_CHECK(D > 0, "RMSNorm: dim must be positive, got " << D);
  weight = register_parameter("weight", Tensor::ones({D}, dtype));
}

Variable RMSNorm::forward(const Variable& x) const {
  SIMBA_CHECK(x.dim() >= 1 && x.size(-1) == dim,
              "RMSNorm(" << dim << "): input of shape " << shape_str(x.shape()) << ", expected last dim " << dim);
  return rms_norm(x, weight, eps);
}

}  // namespace simba
