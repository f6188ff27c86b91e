// nn/kernel_check.h: the argument checks every variant (reference, CPU, CUDA) of the nn/ kernel
// families runs before touching memory, so all of them reject the same bad calls with the same
// messages (nn/rmsnorm.h, nn/causal_conv1d.h, nn/cross_entropy.h, nn/optim.h). Host code only.
#pragma once

#include <cstdint>

#include "tensor/error.h"

namespace simba {
namespace kernel_check {

inline void not_null(const char* op, const void* p, const char* name) {
  SIMBA_CHECK(p != nullptr, op << ": " << name << " is null");
}

// rows >= 0 rows of D >= 1 values (rows = 0 is an empty batch: nothing to do).
inline void rows_by_width(const char* op, int64_t rows, int64_t D, const char* width_name) {
  SIMBA_CHECK(rows >= 0 && D >= 1, op << ": sizes must be rows >= 0 and " << width_name
                                      << " >= 1, got rows=" << rows << " " << width_name << "=" << D);
}

// nn/rmsnorm.h
inline void rmsnorm_forward(const char* op, const void* y, const void* rstd, const void* x, const void* w,
                           int64_t rows, int64_t D, double eps) {
  rows_by_width(op, rows, D, "D");
  SIMBA_CHECK(eps >= 0, op << ": eps must be >= 0, got " << eps);
  if (rows == 0) return;
  not_null(op, y, "y");
  not_null(op, rstd, "rstd");
  not_null(op, x, "x");
  not_null(op, w, "w");
}

inline void rmsnorm_backward(const char* op, const void* dy, const void* x, const void* w, const void* rstd,
                            int64_t rows, int64_t D) {
  rows_by_width(op, rows, D, "D");
  if (rows == 0) return;
  not_null(op, dy, "dy");
  not_null(op, x, "x");
  not_null(op, w, "w");
  not_null(op, rstd, "rstd");
}

// nn/causal_conv1d.h
inline void conv_sizes(const char* op, const void* x, const void* w, int64_t B, int64_t L, int64_t C, int64_t K) {
  SIMBA_CHECK(B >= 0 && L >= 0 && C >= 1 && K >= 1, op << ": sizes must be B >= 0, L >= 0, C >= 1, K >= 1, got B="
                                                       << B << " L=" << L << " C=" << C << " K=" << K);
  not_null(op, w, "w");
  if (B * L > 0) not_null(op, x, "x");
}

inline void conv_forward(const char* op, const void* out, const void* x, const void* w, int64_t B, int64_t L,
                         int64_t C, int64_t K) {
  conv_sizes(op, x, w, B, L, C, K);
  if (B * L > 0) not_null(op, out, "out");
}

inline void conv_silu_grad(const char* op, const void* dv, const void* dout, const void* x, const void* w, int64_t B,
                           int64_t L, int64_t C, int64_t K) {
  conv_forward(op, dv, x, w, B, L, C, K);
  if (B * L > 0) not_null(op, dout, "dout");
}

inline void conv_backward(const char* op, const void* dout, const void* x, const void* w, int64_t B, int64_t L,
                          int64_t C, int64_t K) {
  conv_sizes(op, x, w, B, L, C, K);
  if (B * L > 0) not_null(op, dout, "dout");
}

// nn/cross_entropy.h
inline void cross_entropy_forward(const char* op, const void* losses, const void* lse, const void* logits,
                                  const void* targets, int64_t rows, int64_t V) {
  rows_by_width(op, rows, V, "V");
  if (rows == 0) return;
  not_null(op, losses, "losses");
  not_null(op, lse, "lse");
  not_null(op, logits, "logits");
  not_null(op, targets, "targets");
}

inline void cross_entropy_backward(const char* op, const void* dlogits, const void* dlosses, const void* logits,
                                   const void* lse, const void* targets, int64_t rows, int64_t V) {
  rows_by_width(op, rows, V, "V");
  if (rows == 0) return;
  not_null(op, dlogits, "dlogits");
  not_null(op, dlosses, "dlosses");
  not_null(op, logits, "logits");
  not_null(op, lse, "lse");
  not_null(op, targets, "targets");
}

inline void cross_entropy_mean(const char* op, const void* loss, const void* inv_count, const void* losses,
                               const void* targets, int64_t rows) {
  SIMBA_CHECK(rows >= 0, op << ": rows must be >= 0, got " << rows);
  not_null(op, loss, "loss");
  not_null(op, inv_count, "inv_count");
  if (rows > 0) {
    not_null(op, losses, "losses");
    not_null(op, targets, "targets");
  }
}

// nn/optim.h: the descriptor array and the settings (every variant), then each descriptor
// (host variants only: the CUDA variants' descriptors live in device memory).
inline void optim_tensors(const char* op, const void* tensors, int64_t count) {
  SIMBA_CHECK(count >= 0, op << ": tensor count must be >= 0, got " << count);
  if (count > 0) not_null(op, tensors, "tensors");
}

template <class Step>
void adamw(const char* op, const void* tensors, int64_t count, const Step& s) {
  optim_tensors(op, tensors, count);
  SIMBA_CHECK(s.t >= 1, op << ": step count t must be >= 1, got " << s.t);
  SIMBA_CHECK(s.beta1 >= 0.0 && s.beta1 < 1.0 && s.beta2 >= 0.0 && s.beta2 < 1.0,
              op << ": betas must lie in [0, 1), got " << s.beta1 << ", " << s.beta2);
}

template <class Step>
void sgd(const char* op, const void* tensors, int64_t count, const Step& s) {
  optim_tensors(op, tensors, count);
  SIMBA_CHECK(s.momentum >= 0.0, op << ": momentum must be >= 0, got " << s.momentum);
}

inline void grad_norm(const char* op, const double* norm, const void* tensors, int64_t count, double max_norm) {
  optim_tensors(op, tensors, count);
  not_null(op, norm, "norm");
  SIMBA_CHECK(max_norm > 0.0, op << ": max_norm must be > 0, got " << max_norm);
}

inline void optim_tensor(const char* op, int64_t k, const void* param, const void* grad, const void* m,
                         const void* v, int64_t n, bool need_param, bool need_m, bool need_v) {
  SIMBA_CHECK(n >= 0, op << ": tensor " << k << " has n=" << n << ", expected >= 0");
  if (n == 0) return;
  SIMBA_CHECK(grad != nullptr, op << ": tensor " << k << " has a null grad");
  SIMBA_CHECK(!need_param || param != nullptr, op << ": tensor " << k << " has a null param");
  SIMBA_CHECK(!need_m || m != nullptr, op << ": tensor " << k << " has a null m (the "
                                          << (need_v ? "first moment" : "momentum buffer") << ")");
  SIMBA_CHECK(!need_v || v != nullptr, op << ": tensor " << k << " has a null v (the second moment)");
}

inline void widen_tensor(const char* op, int64_t k, const void* dst, const void* src, int64_t n) {
  SIMBA_CHECK(n >= 0, op << ": tensor " << k << " has n=" << n << ", expected >= 0");
  if (n == 0) return;
  SIMBA_CHECK(dst != nullptr && src != nullptr, op << ": tensor " << k << " has a null dst or src");
}

}  // namespace kernel_check
}  // namespace simba
