#include "tensor/reduce.h"

#include <cmath>

#include "tensor/elementwise.h"
#include "tensor/strided_loop.h"

namespace simba {

namespace {

// A reduction over dim d of a contiguous tensor sees it as (outer, n, inner).
struct ReduceGeometry {
  int64_t outer = 1, n = 1, inner = 1;
  Shape out_shape;  // keepdim form: dim d set to 1
};

ReduceGeometry geometry(const Tensor& x, int d) {
  ReduceGeometry g;
  for (int i = 0; i < x.dim(); ++i) {
    if (i < d) g.outer *= x.size(i);
    if (i > d) g.inner *= x.size(i);
  }
  g.n = x.size(d);
  g.out_shape = x.shape();
  g.out_shape[d] = 1;
  return g;
}

Tensor drop_dim(const Tensor& t, int d, bool keepdim) { return keepdim ? t : t.squeeze(d); }

void check_reduce_input(const char* op, const Tensor& x) {
  SIMBA_CHECK(x.defined(), op << ": undefined tensor");
  SIMBA_CHECK(is_floating(x.dtype()), op << ": expected a float tensor, got " << dtype_name(x.dtype()));
  SIMBA_CHECK_HINT(x.device().is_cpu(), op << " on " << x.device().str() << " is not available in this build",
                   "rebuild with CUDA enabled");
}

// out (outer, inner) = Σ_k x (outer, n, inner)[:, k, :]
template <class T>
void sum_kernel(Tensor& out, const Tensor& x, const ReduceGeometry& g) {
  const T* px = x.numel() ? x.data<T>() : nullptr;
  T* po = out.numel() ? out.data<T>() : nullptr;
#pragma omp parallel for schedule(static) if (g.outer > 1 && x.numel() > kParallelGrain)
  for (int64_t o = 0; o < g.outer; ++o) {
    T* acc = po + o * g.inner;
    for (int64_t i = 0; i < g.inner; ++i) acc[i] = 0;
    for (int64_t k = 0; k < g.n; ++k) {
      const T* row = px + (o * g.n + k) * g.inner;
      for (int64_t i = 0; i < g.inner; ++i) acc[i] += row[i];
    }
  }
}

// values, indices (outer, inner) = max / argmax over k of x (outer, n, inner)
template <class T>
void max_kernel(Tensor& values, Tensor& indices, const Tensor& x, const ReduceGeometry& g) {
  const T* px = x.data<T>();
  T* pv = values.numel() ? values.data<T>() : nullptr;
  int64_t* pi = indices.numel() ? indices.data<int64_t>() : nullptr;
#pragma omp parallel for schedule(static) if (g.outer > 1 && x.numel() > kParallelGrain)
  for (int64_t o = 0; o < g.outer; ++o) {
    for (int64_t i = 0; i < g.inner; ++i) {
      T best = px[o * g.n * g.inner + i];
      int64_t arg = 0;
      for (int64_t k = 1; k < g.n; ++k) {
        T v = px[(o * g.n + k) * g.inner + i];
        if (v > best) {  // strict: ties keep the lowest index
          best = v;
          arg = k;
        }
      }
      pv[o * g.inner + i] = best;
      pi[o * g.inner + i] = arg;
    }
  }
}

}  // namespace

Tensor sum(const Tensor& x, int dim, bool keepdim) {
  check_reduce_input("sum", x);
  const int d = x.wrap_dim(dim);
  const Tensor c = x.contiguous();
  const ReduceGeometry g = geometry(c, d);
  Tensor out = Tensor::empty(g.out_shape, x.dtype(), x.device());
  SIMBA_DISPATCH_FLOAT(x.dtype(), "sum", [&] { sum_kernel<scalar_t>(out, c, g); });
  return drop_dim(out, d, keepdim);
}

Tensor sum(const Tensor& x) {
  check_reduce_input("sum", x);
  // Accumulate in double whatever the dtype: a float32 loss summed over
  // 10^5 tokens would otherwise lose ~3 digits.
  const Tensor c = x.contiguous();
  double total = SIMBA_DISPATCH_FLOAT(x.dtype(), "sum", [&] {
    const scalar_t* p = c.numel() ? c.data<scalar_t>() : nullptr;
    double s = 0.0;
    for (int64_t i = 0; i < c.numel(); ++i) s += static_cast<double>(p[i]);
    return s;
  });
  return Tensor::scalar(total, x.dtype());
}

Tensor mean(const Tensor& x, int dim, bool keepdim) {
  const int d = x.wrap_dim(dim);
  SIMBA_CHECK(x.size(d) > 0, "mean over an empty dim " << d << " of shape " << shape_str(x.shape()));
  return affine(sum(x, d, keepdim), 1.0 / static_cast<double>(x.size(d)), 0.0);
}

Tensor mean(const Tensor& x) {
  SIMBA_CHECK(x.numel() > 0, "mean of an empty tensor of shape " << shape_str(x.shape()));
  return affine(sum(x), 1.0 / static_cast<double>(x.numel()), 0.0);
}

MaxResult max(const Tensor& x, int dim, bool keepdim) {
  check_reduce_input("max", x);
  const int d = x.wrap_dim(dim);
  SIMBA_CHECK(x.size(d) > 0, "max over an empty dim " << d << " of shape " << shape_str(x.shape()));
  const Tensor c = x.contiguous();
  const ReduceGeometry g = geometry(c, d);
  Tensor values = Tensor::empty(g.out_shape, x.dtype(), x.device());
  Tensor indices = Tensor::empty(g.out_shape, DType::I64, x.device());
  SIMBA_DISPATCH_FLOAT(x.dtype(), "max", [&] { max_kernel<scalar_t>(values, indices, c, g); });
  return {drop_dim(values, d, keepdim), drop_dim(indices, d, keepdim)};
}

Tensor max(const Tensor& x) {
  SIMBA_CHECK(x.numel() > 0, "max of an empty tensor of shape " << shape_str(x.shape()));
  return max(x.reshape({x.numel()}), 0).values;
}

Tensor argmax(const Tensor& x, int dim, bool keepdim) { return max(x, dim, keepdim).indices; }

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int lead = g.dim() - static_cast<int>(shape.size());
  SIMBA_CHECK(lead >= 0, "sum_to: cannot reduce shape " << shape_str(g.shape()) << " to " << shape_str(shape));
  Tensor r = g;
  for (int d = g.dim() - 1; d >= 0; --d) {
    const bool leading = d < lead;
    if (!leading) {
      const int64_t want = shape[d - lead];
      SIMBA_CHECK(want == g.size(d) || want == 1,
                  "sum_to: cannot reduce shape " << shape_str(g.shape()) << " to " << shape_str(shape));
      if (want == g.size(d)) continue;
    }
    r = sum(r, d, /*keepdim=*/true);
  }
  return r.reshape(shape);
}

}  // namespace simba
