#include "tensor/elementwise.h"

#include <cmath>
#include <type_traits>

#include "tensor/strided_loop.h"
#include "tensor/vector_math.h"

namespace simba {

namespace {

// Each op is a compile-time constant in its kernel (with_unary_op below), so
// every op gets its own loop that the compiler can vectorise; exp goes
// through exp_fast (tensor/vector_math.h, < 1 ulp), which vectorises where a
// libm call would not; softplus likewise uses log1p_fast. The log, log1p and
// sqrt ops stay libm calls (they are not on the model's hot path).
template <class T>
inline T sigmoid_of(T v) {
  return T(1) / (T(1) + exp_fast(-v));
}

// softplus(x) = log(1 + e^x); for x > 20, e^x > 4.8e8 and log1p(e^x) equals x
// to float64 rounding, while exp(x) would overflow for x > ~88 in float32.
template <class T>
inline T softplus_of(T v) {
  return v > T(20) ? v : log1p_fast(exp_fast(v));
}

template <UnaryOp OP, class T>
inline T apply_unary(T v) {
  if constexpr (OP == UnaryOp::Neg) return -v;
  if constexpr (OP == UnaryOp::Exp) return exp_fast(v);
  if constexpr (OP == UnaryOp::Log) return std::log(v);
  if constexpr (OP == UnaryOp::Log1p) return std::log1p(v);
  if constexpr (OP == UnaryOp::Sqrt) return std::sqrt(v);
  if constexpr (OP == UnaryOp::Rsqrt) return T(1) / std::sqrt(v);
  if constexpr (OP == UnaryOp::Sigmoid) return sigmoid_of(v);
  if constexpr (OP == UnaryOp::Silu) return v * sigmoid_of(v);
  if constexpr (OP == UnaryOp::Softplus) return softplus_of(v);
  if constexpr (OP == UnaryOp::Abs) return std::fabs(v);
  if constexpr (OP == UnaryOp::Square) return v * v;
}

// d op(x)/dx expressed with x and y = op(x), whichever is cheaper.
template <UnaryOp OP, class T>
inline T unary_derivative(T x, T y) {
  if constexpr (OP == UnaryOp::Neg) return T(-1);
  if constexpr (OP == UnaryOp::Exp) return y;
  if constexpr (OP == UnaryOp::Log) return T(1) / x;
  if constexpr (OP == UnaryOp::Log1p) return T(1) / (T(1) + x);
  if constexpr (OP == UnaryOp::Sqrt) return T(0.5) / y;
  if constexpr (OP == UnaryOp::Rsqrt) return T(-0.5) * y * y * y;
  if constexpr (OP == UnaryOp::Sigmoid) return y * (T(1) - y);
  if constexpr (OP == UnaryOp::Silu) {  // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
    T s = sigmoid_of(x);
    return s * (T(1) + x * (T(1) - s));
  }
  if constexpr (OP == UnaryOp::Softplus) return x > T(20) ? T(1) : sigmoid_of(x);
  if constexpr (OP == UnaryOp::Abs) return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
  if constexpr (OP == UnaryOp::Square) return T(2) * x;
}

// Calls f(std::integral_constant<UnaryOp, op>{}): turns the runtime op into a
// compile-time one.
template <class F>
decltype(auto) with_unary_op(UnaryOp op, F&& f) {
  using U = UnaryOp;
  switch (op) {
    case U::Neg: return f(std::integral_constant<U, U::Neg>{});
    case U::Exp: return f(std::integral_constant<U, U::Exp>{});
    case U::Log: return f(std::integral_constant<U, U::Log>{});
    case U::Log1p: return f(std::integral_constant<U, U::Log1p>{});
    case U::Sqrt: return f(std::integral_constant<U, U::Sqrt>{});
    case U::Rsqrt: return f(std::integral_constant<U, U::Rsqrt>{});
    case U::Sigmoid: return f(std::integral_constant<U, U::Sigmoid>{});
    case U::Silu: return f(std::integral_constant<U, U::Silu>{});
    case U::Softplus: return f(std::integral_constant<U, U::Softplus>{});
    case U::Abs: return f(std::integral_constant<U, U::Abs>{});
    case U::Square: return f(std::integral_constant<U, U::Square>{});
  }
  SIMBA_FAIL("unknown unary op " << static_cast<int>(op));
}

template <BinaryOp OP, class T>
inline T apply_binary(T a, T b) {
  if constexpr (OP == BinaryOp::Add) return a + b;
  if constexpr (OP == BinaryOp::Sub) return a - b;
  if constexpr (OP == BinaryOp::Mul) return a * b;
  if constexpr (OP == BinaryOp::Div) return a / b;
  if constexpr (OP == BinaryOp::Pow) return std::pow(a, b);
}

template <class F>
decltype(auto) with_binary_op(BinaryOp op, F&& f) {
  using O = BinaryOp;
  switch (op) {
    case O::Add: return f(std::integral_constant<O, O::Add>{});
    case O::Sub: return f(std::integral_constant<O, O::Sub>{});
    case O::Mul: return f(std::integral_constant<O, O::Mul>{});
    case O::Div: return f(std::integral_constant<O, O::Div>{});
    case O::Pow: return f(std::integral_constant<O, O::Pow>{});
  }
  SIMBA_FAIL("unknown binary op " << static_cast<int>(op));
}

// out = a OP b over the broadcast shape.
template <BinaryOp OP, class T>
void binary_kernel(Tensor& out, const Tensor& a, const Tensor& b) {
  const Shape& shape = out.shape();
  T* po = out.numel() ? out.data<T>() : nullptr;
  const T* pa = a.numel() ? a.data<T>() : nullptr;
  const T* pb = b.numel() ? b.data<T>() : nullptr;
  for_each_strided<3>(shape, {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape)},
                      [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
                        T* o = po + off[0];
                        const T* x = pa + off[1];
                        const T* y = pb + off[2];
                        if (st[1] == 1 && st[2] == 1) {  // the common contiguous case, vectorised
#pragma omp simd
                          for (int64_t k = 0; k < n; ++k) o[k] = apply_binary<OP>(x[k], y[k]);
                        } else {
                          for (int64_t k = 0; k < n; ++k) o[k] = apply_binary<OP>(x[k * st[1]], y[k * st[2]]);
                        }
                      });
}

void check_float_cpu(const char* op, const Tensor& x) {
  SIMBA_CHECK(x.defined(), op << ": undefined tensor");
  SIMBA_CHECK(is_floating(x.dtype()), op << ": expected a float tensor, got " << dtype_name(x.dtype()) << " "
                                         << shape_str(x.shape()));
  SIMBA_CHECK_HINT(x.device().is_cpu(), op << " on " << x.device().str() << " is not available in this build",
                   "rebuild with CUDA enabled");
}

// out = f(x) elementwise over x's shape; out is fresh and contiguous.
template <class T, class F>
void map_kernel(Tensor& out, const Tensor& x, F f) {
  T* po = out.numel() ? out.data<T>() : nullptr;
  const T* px = x.numel() ? x.data<T>() : nullptr;
  for_each_strided<2>(x.shape(), {out.strides(), x.strides()},
                      [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& step) {
                        T* o = po + off[0];
                        const T* i = px + off[1];
                        if (step[1] == 1) {
#pragma omp simd
                          for (int64_t k = 0; k < n; ++k) o[k] = f(i[k]);
                        } else {
                          for (int64_t k = 0; k < n; ++k) o[k] = f(i[k * step[1]]);
                        }
                      });
}

template <class T, class F>
Tensor map_unary(const char* op, const Tensor& x, F f) {
  check_float_cpu(op, x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  map_kernel<T>(out, x, f);
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
    return with_unary_op(op, [&](auto OP) {
      return map_unary<scalar_t>(unary_name(op), x, [](scalar_t v) { return apply_unary<decltype(OP)::value>(v); });
    });
  });
}

namespace {
// dx = dy · op'(x, y), one pass over four operands.
template <UnaryOp OP, class T>
void unary_backward_kernel(Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y) {
  T* pdx = dx.numel() ? dx.data<T>() : nullptr;
  const T* pdy = dy.numel() ? dy.data<T>() : nullptr;
  const T* px = x.numel() ? x.data<T>() : nullptr;
  const T* py = y.numel() ? y.data<T>() : nullptr;
  for_each_strided<4>(x.shape(), {dx.strides(), dy.strides(), x.strides(), y.strides()},
                      [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& st) {
                        if (st[0] == 1 && st[1] == 1 && st[2] == 1 && st[3] == 1) {
                          T* o = pdx + off[0];
                          const T *g = pdy + off[1], *a = px + off[2], *b = py + off[3];
#pragma omp simd
                          for (int64_t k = 0; k < n; ++k) o[k] = g[k] * unary_derivative<OP>(a[k], b[k]);
                        } else {
                          for (int64_t k = 0; k < n; ++k)
                            pdx[off[0] + k * st[0]] = pdy[off[1] + k * st[1]] *
                                                      unary_derivative<OP>(px[off[2] + k * st[2]], py[off[3] + k * st[3]]);
                        }
                      });
}
}  // namespace

Tensor unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y) {
  const char* name = unary_name(op);
  check_float_cpu(name, dy);
  check_same_shape(name, dy, x);
  check_same_shape(name, dy, y);
  check_same_dtype(name, dy, x);
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  SIMBA_DISPATCH_FLOAT(x.dtype(), name, [&] {
    with_unary_op(op, [&](auto OP) { unary_backward_kernel<decltype(OP)::value, scalar_t>(dx, dy, x, y); });
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
    with_binary_op(op, [&](auto OP) { binary_kernel<decltype(OP)::value, scalar_t>(out, a, b); });
  });
  return out;
}

Tensor affine(const Tensor& x, double scale, double shift) {
  return SIMBA_DISPATCH_FLOAT(x.dtype(), "affine", [&] {
    const scalar_t s = static_cast<scalar_t>(scale), t = static_cast<scalar_t>(shift);
    return map_unary<scalar_t>("affine", x, [s, t](scalar_t v) { return v * s + t; });
  });
}

Tensor pow(const Tensor& x, double p) {
  return SIMBA_DISPATCH_FLOAT(x.dtype(), "pow", [&] {
    const scalar_t e = static_cast<scalar_t>(p);
    return map_unary<scalar_t>("pow", x, [e](scalar_t v) { return std::pow(v, e); });
  });
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  SIMBA_CHECK(lo <= hi, "clamp: lower bound " << lo << " is above upper bound " << hi);
  return SIMBA_DISPATCH_FLOAT(x.dtype(), "clamp", [&] {
    const scalar_t l = static_cast<scalar_t>(lo), h = static_cast<scalar_t>(hi);
    return map_unary<scalar_t>("clamp", x, [l, h](scalar_t v) { return v < l ? l : (v > h ? h : v); });
  });
}

}  // namespace simba
