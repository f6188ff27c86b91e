#include "tensor/elementwise.h"

#include <cmath>

#include "tensor/strided_loop.h"

namespace simba {

namespace {

template <class T>
inline T sigmoid_of(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// softplus(x) = log(1 + e^x); for x > 20, e^x > 4.8e8 and log1p(e^x) equals x
// to float64 rounding, while exp(x) would overflow for x > ~88 in float32.
template <class T>
inline T softplus_of(T v) {
  return v > T(20) ? v : std::log1p(std::exp(v));
}

template <class T>
inline T apply_unary(UnaryOp op, T v) {
  switch (op) {
    case UnaryOp::Neg: return -v;
    case UnaryOp::Exp: return std::exp(v);
    case UnaryOp::Log: return std::log(v);
    case UnaryOp::Log1p: return std::log1p(v);
    case UnaryOp::Sqrt: return std::sqrt(v);
    case UnaryOp::Rsqrt: return T(1) / std::sqrt(v);
    case UnaryOp::Sigmoid: return sigmoid_of(v);
    case UnaryOp::Silu: return v * sigmoid_of(v);
    case UnaryOp::Softplus: return softplus_of(v);
    case UnaryOp::Abs: return std::fabs(v);
    case UnaryOp::Square: return v * v;
  }
  return v;
}

// d op(x)/dx expressed with x and y = op(x), whichever is cheaper.
template <class T>
inline T unary_derivative(UnaryOp op, T x, T y) {
  switch (op) {
    case UnaryOp::Neg: return T(-1);
    case UnaryOp::Exp: return y;
    case UnaryOp::Log: return T(1) / x;
    case UnaryOp::Log1p: return T(1) / (T(1) + x);
    case UnaryOp::Sqrt: return T(0.5) / y;
    case UnaryOp::Rsqrt: return T(-0.5) * y * y * y;
    case UnaryOp::Sigmoid: return y * (T(1) - y);
    case UnaryOp::Silu: {  // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
      T s = sigmoid_of(x);
      return s * (T(1) + x * (T(1) - s));
    }
    case UnaryOp::Softplus: return x > T(20) ? T(1) : sigmoid_of(x);
    case UnaryOp::Abs: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryOp::Square: return T(2) * x;
  }
  return T(0);
}

template <class T>
inline T apply_binary(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Pow: return std::pow(a, b);
  }
  return a;
}

void check_float_cpu(const char* op, const Tensor& x) {
  SIMBA_CHECK(x.defined(), op << ": undefined tensor");
  SIMBA_CHECK(is_floating(x.dtype()), op << ": expected a float tensor, got " << dtype_name(x.dtype()) << " "
                                         << shape_str(x.shape()));
  SIMBA_CHECK_HINT(x.device().is_cpu(), op << " on " << x.device().str() << " is not available in this build",
                   "rebuild with CUDA enabled");
}

// out = f(x) elementwise over x's shape; out is fresh and contiguous.
template <class F>
Tensor map_unary(const char* op, const Tensor& x, F f) {
  check_float_cpu(op, x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  SIMBA_DISPATCH_FLOAT(x.dtype(), op, [&] {
    scalar_t* po = out.numel() ? out.data<scalar_t>() : nullptr;
    const scalar_t* px = x.numel() ? x.data<scalar_t>() : nullptr;
    for_each_strided<2>(x.shape(), {out.strides(), x.strides()},
                        [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& step) {
                          scalar_t* o = po + off[0];
                          const scalar_t* i = px + off[1];
                          if (step[1] == 1) {
                            for (int64_t k = 0; k < n; ++k) o[k] = f(i[k]);
                          } else {
                            for (int64_t k = 0; k < n; ++k) o[k] = f(i[k * step[1]]);
                          }
                        });
  });
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

Tensor unary(UnaryOp op, const Tensor& x) {
  return SIMBA_DISPATCH_FLOAT(x.dtype(), unary_name(op), [&] {
    return map_unary(unary_name(op), x, [op](scalar_t v) { return apply_unary(op, v); });
  });
}

Tensor unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y) {
  const char* name = unary_name(op);
  check_float_cpu(name, dy);
  check_same_shape(name, dy, x);
  check_same_shape(name, dy, y);
  check_same_dtype(name, dy, x);
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  SIMBA_DISPATCH_FLOAT(x.dtype(), name, [&] {
    scalar_t* pdx = dx.numel() ? dx.data<scalar_t>() : nullptr;
    const scalar_t* pdy = dy.numel() ? dy.data<scalar_t>() : nullptr;
    const scalar_t* px = x.numel() ? x.data<scalar_t>() : nullptr;
    const scalar_t* py = y.numel() ? y.data<scalar_t>() : nullptr;
    for_each_strided<4>(x.shape(), {dx.strides(), dy.strides(), x.strides(), y.strides()},
                        [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& st) {
                          for (int64_t k = 0; k < n; ++k)
                            pdx[off[0] + k * st[0]] =
                                pdy[off[1] + k * st[1]] *
                                unary_derivative(op, px[off[2] + k * st[2]], py[off[3] + k * st[3]]);
                        });
  });
  return dx;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  static const char* names[] = {"add", "sub", "mul", "div", "pow"};
  const char* name = names[static_cast<int>(op)];
  check_float_cpu(name, a);
  check_float_cpu(name, b);
  check_same_dtype(name, a, b);
  check_same_device(name, a, b);
  Shape shape = broadcast_shapes(name, a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  SIMBA_DISPATCH_FLOAT(a.dtype(), name, [&] {
    scalar_t* po = out.numel() ? out.data<scalar_t>() : nullptr;
    const scalar_t* pa = a.numel() ? a.data<scalar_t>() : nullptr;
    const scalar_t* pb = b.numel() ? b.data<scalar_t>() : nullptr;
    for_each_strided<3>(shape, {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape)},
                        [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
                          scalar_t* o = po + off[0];
                          const scalar_t* x = pa + off[1];
                          const scalar_t* y = pb + off[2];
                          if (st[1] == 1 && st[2] == 1) {  // the common contiguous case, vectorised
                            for (int64_t k = 0; k < n; ++k) o[k] = apply_binary(op, x[k], y[k]);
                          } else {
                            for (int64_t k = 0; k < n; ++k) o[k] = apply_binary(op, x[k * st[1]], y[k * st[2]]);
                          }
                        });
  });
  return out;
}

Tensor affine(const Tensor& x, double scale, double shift) {
  return SIMBA_DISPATCH_FLOAT(x.dtype(), "affine", [&] {
    const scalar_t s = static_cast<scalar_t>(scale), t = static_cast<scalar_t>(shift);
    return map_unary("affine", x, [s, t](scalar_t v) { return v * s + t; });
  });
}

Tensor pow(const Tensor& x, double p) {
  return SIMBA_DISPATCH_FLOAT(x.dtype(), "pow", [&] {
    const scalar_t e = static_cast<scalar_t>(p);
    return map_unary("pow", x, [e](scalar_t v) { return std::pow(v, e); });
  });
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  SIMBA_CHECK(lo <= hi, "clamp: lower bound " << lo << " is above upper bound " << hi);
  return SIMBA_DISPATCH_FLOAT(x.dtype(), "clamp", [&] {
    const scalar_t l = static_cast<scalar_t>(lo), h = static_cast<scalar_t>(hi);
    return map_unary("clamp", x, [l, h](scalar_t v) { return v < l ? l : (v > h ? h : v); });
  });
}

}  // namespace simba
