// tensor/reduce.cpp: the public reductions (checks, geometry, dispatch) and their CPU kernel
// family.
#include "tensor/reduce.h"

#include <type_traits>
#include <vector>

#include "tensor/dispatch.h"
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
}

}  // namespace

// ---- public ops ----

Tensor sum(const Tensor& x, int dim, bool keepdim) {
  check_reduce_input("sum", x);
  const int d = x.wrap_dim(dim);
  const Tensor c = x.contiguous();
  const ReduceGeometry g = geometry(c, d);
  Tensor out = Tensor::empty(g.out_shape, x.dtype(), x.device());
  SIMBA_ON_DEVICE(x.device(), "sum", sum_dim, out, c, g.outer, g.n, g.inner);
  return drop_dim(out, d, keepdim);
}

Tensor sum(const Tensor& x) {
  check_reduce_input("sum", x);
  const Tensor c = x.contiguous();
  Tensor out = Tensor::empty({}, x.dtype(), x.device());
  SIMBA_ON_DEVICE(x.device(), "sum", sum_all, out, c);
  return out;
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
  SIMBA_ON_DEVICE(x.device(), "max", max_dim, values, indices, c, g.outer, g.n, g.inner);
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

// ---- CPU kernel family ----

namespace {

// out (outer, inner) = Σ_k x (outer, n, inner)[:, k, :], accumulated in acc_t<T>: in out
// itself when that is T (float, double), else in a float row per thread, rounded once.
template <class T>
void sum_dim_kernel(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  using A = acc_t<T>;
  const T* px = x.numel() ? x.data<T>() : nullptr;
  T* po = out.numel() ? out.data<T>() : nullptr;
#pragma omp parallel if (outer > 1 && x.numel() > kParallelGrain)
  {
    std::vector<A> row_acc(std::is_same_v<A, T> ? 0 : inner);
#pragma omp for schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      A* acc;
      if constexpr (std::is_same_v<A, T>)
        acc = po + o * inner;
      else
        acc = row_acc.data();
      for (int64_t i = 0; i < inner; ++i) acc[i] = 0;
      for (int64_t k = 0; k < n; ++k) {
        const T* row = px + (o * n + k) * inner;
        for (int64_t i = 0; i < inner; ++i) acc[i] += A(row[i]);
      }
      if constexpr (!std::is_same_v<A, T>)
        for (int64_t i = 0; i < inner; ++i) po[o * inner + i] = T(acc[i]);
    }
  }
}

// values, indices (outer, inner) = max / argmax over k of x (outer, n, inner), compared in
// acc_t<T> (exact: a bfloat16 widens to the float of the same value).
template <class T>
void max_dim_kernel(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t outer, int64_t n,
                    int64_t inner) {
  using A = acc_t<T>;
  const T* px = x.data<T>();
  T* pv = values.numel() ? values.data<T>() : nullptr;
  int64_t* pi = indices.numel() ? indices.data<int64_t>() : nullptr;
#pragma omp parallel for schedule(static) if (outer > 1 && x.numel() > kParallelGrain)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      A best = A(px[o * n * inner + i]);
      int64_t arg = 0;
      for (int64_t k = 1; k < n; ++k) {
        const A v = A(px[(o * n + k) * inner + i]);
        if (v > best) {  // strict: ties keep the lowest index
          best = v;
          arg = k;
        }
      }
      pv[o * inner + i] = T(best);
      pi[o * inner + i] = arg;
    }
  }
}

}  // namespace

void sum_dim_cpu(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  SIMBA_DISPATCH_COMPUTE(x.dtype(), "sum", [&] { sum_dim_kernel<scalar_t>(out, x, outer, n, inner); });
}

void max_dim_cpu(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t outer, int64_t n,
                 int64_t inner) {
  SIMBA_DISPATCH_COMPUTE(x.dtype(), "max", [&] { max_dim_kernel<scalar_t>(values, indices, x, outer, n, inner); });
}

void sum_all_cpu(const Tensor& out, const Tensor& x) {
  SIMBA_DISPATCH_COMPUTE(x.dtype(), "sum", [&] {
    const scalar_t* p = x.numel() ? x.data<scalar_t>() : nullptr;
    double s = 0.0;
    for (int64_t i = 0; i < x.numel(); ++i) s += static_cast<double>(p[i]);
    *out.data<scalar_t>() = static_cast<scalar_t>(s);
  });
}

}  // namespace simba
