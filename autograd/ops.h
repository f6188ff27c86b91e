// autograd/ops.h: differentiable versions of the tensor ops.
//
// Same names and argument conventions as tensor/ops.h, on Variables. Each is
// implemented in autograd/<group>_ops.cpp as "compute with the tensor op,
// then make_result(out, name, inputs, backward)" where backward calls the
// tensor layer's *_backward functions or other tensor ops. Every one has a
// float64 finite-difference test in tests/test_grad_*.cpp.
#pragma once

#include <vector>

#include "autograd/variable.h"
#include "tensor/ops.h"

namespace simba {

// ---- elementwise (autograd/elementwise_ops.cpp)
Variable unary(UnaryOp op, const Variable& x);
Variable binary(BinaryOp op, const Variable& a, const Variable& b);
inline Variable neg(const Variable& x) { return unary(UnaryOp::Neg, x); }
inline Variable exp(const Variable& x) { return unary(UnaryOp::Exp, x); }
inline Variable log(const Variable& x) { return unary(UnaryOp::Log, x); }
inline Variable log1p(const Variable& x) { return unary(UnaryOp::Log1p, x); }
inline Variable sqrt(const Variable& x) { return unary(UnaryOp::Sqrt, x); }
inline Variable rsqrt(const Variable& x) { return unary(UnaryOp::Rsqrt, x); }
inline Variable sigmoid(const Variable& x) { return unary(UnaryOp::Sigmoid, x); }
inline Variable silu(const Variable& x) { return unary(UnaryOp::Silu, x); }
inline Variable softplus(const Variable& x) { return unary(UnaryOp::Softplus, x); }
inline Variable abs(const Variable& x) { return unary(UnaryOp::Abs, x); }
inline Variable square(const Variable& x) { return unary(UnaryOp::Square, x); }
inline Variable add(const Variable& a, const Variable& b) { return binary(BinaryOp::Add, a, b); }
inline Variable sub(const Variable& a, const Variable& b) { return binary(BinaryOp::Sub, a, b); }
inline Variable mul(const Variable& a, const Variable& b) { return binary(BinaryOp::Mul, a, b); }
inline Variable div(const Variable& a, const Variable& b) { return binary(BinaryOp::Div, a, b); }
inline Variable pow(const Variable& a, const Variable& b) { return binary(BinaryOp::Pow, a, b); }
Variable affine(const Variable& x, double scale, double shift);
Variable pow(const Variable& x, double p);
Variable clamp(const Variable& x, double lo, double hi);

inline Variable operator+(const Variable& a, const Variable& b) { return add(a, b); }
inline Variable operator-(const Variable& a, const Variable& b) { return sub(a, b); }
inline Variable operator*(const Variable& a, const Variable& b) { return mul(a, b); }
inline Variable operator/(const Variable& a, const Variable& b) { return div(a, b); }
inline Variable operator-(const Variable& x) { return neg(x); }
inline Variable operator*(const Variable& x, double s) { return affine(x, s, 0.0); }
inline Variable operator*(double s, const Variable& x) { return affine(x, s, 0.0); }
inline Variable operator+(const Variable& x, double s) { return affine(x, 1.0, s); }
inline Variable operator-(const Variable& x, double s) { return affine(x, 1.0, -s); }

// ---- views (autograd/view_ops.cpp): the gradient is mapped back through the view
Variable reshape(const Variable& x, const Shape& shape);
Variable permute(const Variable& x, const std::vector<int>& order);
Variable transpose(const Variable& x, int a, int b);
Variable narrow(const Variable& x, int dim, int64_t start, int64_t length);
Variable select(const Variable& x, int dim, int64_t index);
Variable expand(const Variable& x, const Shape& shape);
Variable unsqueeze(const Variable& x, int dim);
Variable squeeze(const Variable& x, int dim);
Variable contiguous(const Variable& x);

// ---- reductions (autograd/reduce_ops.cpp)
Variable sum(const Variable& x, int dim, bool keepdim = false);
Variable sum(const Variable& x);
Variable mean(const Variable& x, int dim, bool keepdim = false);
Variable mean(const Variable& x);
Variable max(const Variable& x, int dim, bool keepdim = false);  // values; gradient goes to the argmax
Variable max(const Variable& x);

// ---- matmul (autograd/matmul_ops.cpp)
Variable matmul(const Variable& a, const Variable& b);

// ---- joining and indexing (autograd/index_ops.cpp)
Variable cat(const std::vector<Variable>& xs, int dim);
std::vector<Variable> split(const Variable& x, const std::vector<int64_t>& sizes, int dim);
Variable index_select(const Variable& x, int dim, const Tensor& index);
Variable index_add(const Variable& base, int dim, const Tensor& index, const Variable& src);
Variable gather(const Variable& x, int dim, const Tensor& index);
Variable scatter_add(const Variable& base, int dim, const Tensor& index, const Variable& src);
Variable embedding(const Variable& weight, const Tensor& ids);

}  // namespace simba
