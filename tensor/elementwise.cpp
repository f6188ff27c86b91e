// tensor/elementwise.cpp: the public pointwise ops (argument checks, output, dispatch) and
// their CPU kernel family.
#include "tensor/elementwise.h"

#include "tensor/dispatch.h"
#include "tensor/elementwise_math.h"
#include "tensor/strided_loop.h"

namespace simba {

using namespace pointwise;

namespace {

void check_float(const char* op, const Tensor& x) {
  SIMBA_CHECK(x.defined(), op << ": undefined tensor");
  SIMBA_CHECK(is_floating(x.dtype()), op << ": expected a float tensor, got " << dtype_name(x.dtype()) << " "
                                         << shape_str(x.shape()));
}

template <class T>
T* ptr(const Tensor& t) {
  return t.numel() ? t.data<T>() : nullptr;
}

// The kernels below load storage type T, evaluate f in A = acc_t<T> (tensor/dtype.h: float
// for bfloat16) and round once on store; for float and double A is T and the casts vanish.

// out = f(x) elementwise over x's shape.
template <class T, class F>
void map_kernel(const Tensor& out, const Tensor& x, F f) {
  using A = acc_t<T>;
  T* po = ptr<T>(out);
  const T* px = ptr<T>(x);
  for_each_strided<2>(x.shape(), {out.strides(), x.strides()},
                      [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& step) {
                        T* o = po + off[0];
                        const T* i = px + off[1];
                        if (step[0] == 1 && step[1] == 1) {
#pragma omp simd
                          for (int64_t k = 0; k < n; ++k) o[k] = T(f(A(i[k])));
                        } else {
                          for (int64_t k = 0; k < n; ++k) o[k * step[0]] = T(f(A(i[k * step[1]])));
                        }
                      });
}

// out = f(a, b) elementwise over out's shape (a and b have it too, with any strides).
template <class T, class F>
void zip_kernel(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  using A = acc_t<T>;
  T* po = ptr<T>(out);
  const T* pa = ptr<T>(a);
  const T* pb = ptr<T>(b);
  for_each_strided<3>(out.shape(), {out.strides(), a.strides(), b.strides()},
                      [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
                        T* o = po + off[0];
                        const T* x = pa + off[1];
                        const T* y = pb + off[2];
                        if (st[0] == 1 && st[1] == 1 && st[2] == 1) {  // the common contiguous case, vectorised
#pragma omp simd
                          for (int64_t k = 0; k < n; ++k) o[k] = T(f(A(x[k]), A(y[k])));
                        } else {  // out strided too: add_ into a slice
                          for (int64_t k = 0; k < n; ++k) o[k * st[0]] = T(f(A(x[k * st[1]]), A(y[k * st[2]])));
                        }
                      });
}

// dx = dy · op'(x, y), one pass over four operands.
template <UnaryOp OP, class T>
void unary_backward_kernel(const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y) {
  using A = acc_t<T>;
  T* pdx = ptr<T>(dx);
  const T* pdy = ptr<T>(dy);
  const T* px = ptr<T>(x);
  const T* py = ptr<T>(y);
  for_each_strided<4>(x.shape(), {dx.strides(), dy.strides(), x.strides(), y.strides()},
                      [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& st) {
                        if (st[0] == 1 && st[1] == 1 && st[2] == 1 && st[3] == 1) {
                          T* o = pdx + off[0];
                          const T *g = pdy + off[1], *a = px + off[2], *b = py + off[3];
#pragma omp simd
                          for (int64_t k = 0; k < n; ++k) o[k] = T(A(g[k]) * unary_derivative<OP>(A(a[k]), A(b[k])));
                        } else {
                          for (int64_t k = 0; k < n; ++k)
                            pdx[off[0] + k * st[0]] =
                                T(A(pdy[off[1] + k * st[1]]) *
                                  unary_derivative<OP>(A(px[off[2] + k * st[2]]), A(py[off[3] + k * st[3]])));
                        }
                      });
}

// out = f(x) for a unary-shaped op: checks, allocation, dispatch through `launch`.
template <class Launch>
Tensor map_op(const char* op, const Tensor& x, Launch launch) {
  check_float(op, x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  launch(out);
  return out;
}

}  // namespace

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Log1p: return "log1p";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Silu: return "silu";
    case UnaryOp::Softplus: return "softplus";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Square: return "square";
  }
  return "?";
}

UnaryReads unary_reads(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return UnaryReads::Neither;
    case UnaryOp::Exp:
    case UnaryOp::Sqrt:
    case UnaryOp::Rsqrt:
    case UnaryOp::Sigmoid:
    case UnaryOp::Softplus: return UnaryReads::Output;
    case UnaryOp::Log:
    case UnaryOp::Log1p:
    case UnaryOp::Silu:
    case UnaryOp::Abs:
    case UnaryOp::Square: return UnaryReads::Input;
  }
  SIMBA_FAIL("unknown unary op " << static_cast<int>(op));
}

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Pow: return "pow";
  }
  return "?";
}

const char* scalar_op_name(ScalarOp op) {
  switch (op) {
    case ScalarOp::Affine: return "affine";
    case ScalarOp::Pow: return "pow";
    case ScalarOp::Clamp: return "clamp";
  }
  return "?";
}

// ---- public ops ----

Tensor unary(UnaryOp op, const Tensor& x) {
  const char* name = unary_name(op);
  return map_op(name, x, [&](const Tensor& out) { SIMBA_ON_DEVICE(x.device(), name, unary, op, out, x); });
}

Tensor unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y) {
  const char* name = unary_name(op);
  check_float(name, dy);
  check_float(name, x);
  check_float(name, y);
  check_same_shape(name, dy, x);
  check_same_shape(name, dy, y);
  check_same_dtype(name, dy, x);
  check_same_dtype(name, dy, y);
  const Device dev = op_device(name, {dy, x, y});
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), dev);
  SIMBA_ON_DEVICE(dev, name, unary_backward, op, dx, dy, x, y);
  return dx;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_float(name, a);
  check_float(name, b);
  check_same_dtype(name, a, b);
  const Device dev = op_device(name, {a, b});
  const Shape shape = broadcast_shapes(name, a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), dev);
  SIMBA_ON_DEVICE(dev, name, binary, op, out, a.expand(shape), b.expand(shape));
  return out;
}

void add_(const Tensor& x, const Tensor& y) {
  const char* name = "add_";
  check_float(name, x);
  check_float(name, y);
  check_same_dtype(name, x, y);
  const Device dev = op_device(name, {x, y});
  SIMBA_CHECK(broadcast_shapes(name, x.shape(), y.shape()) == x.shape(),
              name << ": " << shape_str(y.shape()) << " does not broadcast to the updated tensor's "
                   << shape_str(x.shape()));
  // A broadcast view (stride 0) would have one element updated once for each place it appears.
  for (int d = 0; d < x.dim(); ++d)
    SIMBA_CHECK(x.size(d) == 1 || x.strides()[d] != 0,
                name << ": the updated tensor " << shape_str(x.shape()) << " repeats its elements along dim " << d
                     << " (a broadcast view); add into a tensor of its own");
  SIMBA_ON_DEVICE(dev, name, binary, BinaryOp::Add, x, x, y.expand(x.shape()));
}

Tensor affine(const Tensor& x, double scale, double shift) {
  return map_op("affine", x, [&](const Tensor& out) {
    SIMBA_ON_DEVICE(x.device(), "affine", scalar_op, ScalarOp::Affine, out, x, scale, shift);
  });
}

Tensor pow(const Tensor& x, double p) {
  return map_op("pow", x, [&](const Tensor& out) {
    SIMBA_ON_DEVICE(x.device(), "pow", scalar_op, ScalarOp::Pow, out, x, p, 0.0);
  });
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  SIMBA_CHECK(lo <= hi, "clamp: lower bound " << lo << " is above upper bound " << hi);
  return map_op("clamp", x, [&](const Tensor& out) {
    SIMBA_ON_DEVICE(x.device(), "clamp", scalar_op, ScalarOp::Clamp, out, x, lo, hi);
  });
}

Tensor clamp_backward(const Tensor& dy, const Tensor& x, double lo, double hi) {
  check_float("clamp", dy);
  check_float("clamp", x);
  check_same_shape("clamp", dy, x);
  check_same_dtype("clamp", dy, x);
  const Device dev = op_device("clamp", {dy, x});
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), dev);
  SIMBA_ON_DEVICE(dev, "clamp", clamp_backward, dx, dy, x, lo, hi);
  return dx;
}

// ---- CPU kernel family ----

void unary_cpu(UnaryOp op, const Tensor& out, const Tensor& x) {
  SIMBA_DISPATCH_COMPUTE(x.dtype(), unary_name(op), [&] {
    using A = acc_t<scalar_t>;
    with_unary_op(op, [&](auto OP) {
      map_kernel<scalar_t>(out, x, [](A v) { return apply_unary<decltype(OP)::value>(v); });
    });
  });
}

void unary_backward_cpu(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y) {
  SIMBA_DISPATCH_COMPUTE(x.dtype(), unary_name(op), [&] {
    with_unary_op(op, [&](auto OP) { unary_backward_kernel<decltype(OP)::value, scalar_t>(dx, dy, x, y); });
  });
}

void binary_cpu(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  SIMBA_DISPATCH_COMPUTE(out.dtype(), binary_name(op), [&] {
    using A = acc_t<scalar_t>;
    with_binary_op(op, [&](auto OP) {
      zip_kernel<scalar_t>(out, a, b, [](A u, A v) { return apply_binary<decltype(OP)::value>(u, v); });
    });
  });
}

void scalar_op_cpu(ScalarOp op, const Tensor& out, const Tensor& x, double s, double t) {
  SIMBA_DISPATCH_COMPUTE(x.dtype(), scalar_op_name(op), [&] {
    using A = acc_t<scalar_t>;
    const A sv = static_cast<A>(s), tv = static_cast<A>(t);
    with_scalar_op(op, [&](auto OP) {
      map_kernel<scalar_t>(out, x, [sv, tv](A v) { return apply_scalar<decltype(OP)::value>(v, sv, tv); });
    });
  });
}

void clamp_backward_cpu(const Tensor& dx, const Tensor& dy, const Tensor& x, double lo, double hi) {
  SIMBA_DISPATCH_COMPUTE(x.dtype(), "clamp", [&] {
    using A = acc_t<scalar_t>;
    const A l = static_cast<A>(lo), h = static_cast<A>(hi);
    zip_kernel<scalar_t>(dx, dy, x, [l, h](A g, A v) { return g * clamp_pass(v, l, h); });
  });
}

}  // namespace simba
