// tensor/elementwise.h: pointwise math with numpy broadcasting.
//
// Compute dtypes only (float32, float64, bfloat16: a bfloat16 op loads, computes in float32
// and rounds once on store; float16 is converted with Tensor::to first). Both operands of a
// binary op must have the same dtype and device, and their shapes must broadcast (an error names
// the op and both shapes). Results are new contiguous tensors.
//
// The *_backward functions return dx given the upstream gradient dy, the
// input x and the forward output y (each uses what it needs). They are one
// fused pass, so a unary op costs two sweeps over memory in training.
//
// Each public function checks its arguments, allocates the output and hands both to a
// kernel family through tensor/dispatch.h (declared at the end of this file): `*_cpu` in
// tensor/elementwise.cpp, `*_cuda` in tensor/elementwise.cu, with the per-element formulas
// of tensor/elementwise_math.h shared by both.
#pragma once

#include "tensor/tensor.h"

namespace simba {

enum class UnaryOp { Neg, Exp, Log, Log1p, Sqrt, Rsqrt, Sigmoid, Silu, Softplus, Abs, Square };
enum class BinaryOp { Add, Sub, Mul, Div, Pow };

const char* unary_name(UnaryOp op);
const char* binary_name(BinaryOp op);
Tensor unary(UnaryOp op, const Tensor& x);
// dx = dy · op'(x), from x and y = op(x). Each op's derivative reads one of them, or neither
// (unary_reads); the other argument is not read and may be any tensor of the same shape and
// dtype, so that an autograd node keeps only the one its gradient needs.
Tensor unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y);
enum class UnaryReads { Input, Output, Neither };
UnaryReads unary_reads(UnaryOp op);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);

inline Tensor neg(const Tensor& x) { return unary(UnaryOp::Neg, x); }
inline Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, x); }
inline Tensor log(const Tensor& x) { return unary(UnaryOp::Log, x); }
inline Tensor log1p(const Tensor& x) { return unary(UnaryOp::Log1p, x); }
inline Tensor sqrt(const Tensor& x) { return unary(UnaryOp::Sqrt, x); }
inline Tensor rsqrt(const Tensor& x) { return unary(UnaryOp::Rsqrt, x); }
inline Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::Sigmoid, x); }
inline Tensor silu(const Tensor& x) { return unary(UnaryOp::Silu, x); }
// softplus(x) = x > 20 ? x : log1p(exp(x)), the rule of Mamba's CUDA kernel.
inline Tensor softplus(const Tensor& x) { return unary(UnaryOp::Softplus, x); }
inline Tensor abs(const Tensor& x) { return unary(UnaryOp::Abs, x); }
inline Tensor square(const Tensor& x) { return unary(UnaryOp::Square, x); }

inline Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
inline Tensor pow(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Pow, a, b); }

// x += y in place, y broadcast to x's shape (x may be a strided view): each element formed and
// rounded as add forms it. For the accumulating backwards (autograd/variable.h), which add into
// a gradient they own instead of allocating a sum.
void add_(const Tensor& x, const Tensor& y);

// x·scale + shift in one pass (add a scalar, multiply by a scalar, both).
Tensor affine(const Tensor& x, double scale, double shift);
Tensor pow(const Tensor& x, double p);
// min(max(x, lo), hi); the gradient passes where clamp(x) == x (lo <= x <= hi).
Tensor clamp(const Tensor& x, double lo, double hi);
// dx = dy where clamp(x, lo, hi) == x, 0 elsewhere.
Tensor clamp_backward(const Tensor& dy, const Tensor& x, double lo, double hi);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator*(const Tensor& x, double s) { return affine(x, s, 0.0); }
inline Tensor operator*(double s, const Tensor& x) { return affine(x, s, 0.0); }
inline Tensor operator+(const Tensor& x, double s) { return affine(x, 1.0, s); }
inline Tensor operator-(const Tensor& x, double s) { return affine(x, 1.0, -s); }

// ---- kernel families (tensor/dispatch.h) ----
// Every output is a fresh contiguous tensor of the op's result shape; inputs have any
// strides. Operands share out's dtype (float32, float64, bfloat16) and device and have out's shape
// (binary's operands expanded to it: stride 0 on the broadcast dims).
//   *_cpu:  the strided loop nest of tensor/strided_loop.h (OpenMP, vectorised rows).
//   *_cuda: one thread per element over the coalesced layout (tensor/strided_layout.h),
//           grid-stride, on the device's stream, computing in acc_t of the dtype (float for
//           float32 and bfloat16, double for float64).
// The ops with scalar parameters (s, t): Affine x·s + t, Pow x^s, Clamp min(max(x, s), t).
enum class ScalarOp { Affine, Pow, Clamp };
const char* scalar_op_name(ScalarOp op);

void unary_cpu(UnaryOp op, const Tensor& out, const Tensor& x);
void unary_cuda(UnaryOp op, const Tensor& out, const Tensor& x);
void unary_backward_cpu(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y);
void unary_backward_cuda(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y);
void binary_cpu(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b);
void binary_cuda(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b);
void scalar_op_cpu(ScalarOp op, const Tensor& out, const Tensor& x, double s, double t);
void scalar_op_cuda(ScalarOp op, const Tensor& out, const Tensor& x, double s, double t);
void clamp_backward_cpu(const Tensor& dx, const Tensor& dy, const Tensor& x, double lo, double hi);
void clamp_backward_cuda(const Tensor& dx, const Tensor& dy, const Tensor& x, double lo, double hi);

}  // namespace simba
