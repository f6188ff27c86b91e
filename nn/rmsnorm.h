// nn/rmsnorm.h: root-mean-square normalisation over the last dim.
//
//   y = x · rstd · w,   rstd = 1 / sqrt(mean(x²) + eps)      (per row of D)
//
// Mamba's pre-mixer norm and its final norm_f (no bias, eps = 1e-5 from the
// config). The kernels are fused: one pass over a row in the forward, one in
// the backward, with rstd saved in between so the backward never recomputes it.
#pragma once

#include "autograd/variable.h"
#include "nn/module.h"

namespace simba {

// Kernels, in three variants with identical signatures:
//   *_ref:  plain sequential loops in double, the specification the others are tested against.
//           T = float or double.
//   *_cpu:  the fast CPU path (rows in parallel with OpenMP). nn/rmsnorm.cpp.
//   *_cuda: the CUDA kernels (one block per row; dw from per-block partials added in a fixed
//           order). nn/rmsnorm.cu, built with the CUDA backend only; every pointer is CUDA device
//           memory on the current device, and the call returns once the work is queued on that
//           device's stream (tensor/cuda_check.cuh).
// *_cpu and *_cuda take T = float, double or bfloat16. A bfloat16 call loads x, w and dy,
// computes in float (acc_t<T>: the statistics, rstd and the dw sums never leave float or
// double) and rounds each y, dx and dw element once on store; rstd is kept in acc_t<T> so the
// backward reuses the forward's unrounded value.
// All are deterministic: the same inputs give the same bits on every run and for any number
// of CPU threads. rows may be 0 (nothing to do; dw becomes 0).

// y (rows, D), rstd (rows) <- x (rows, D), w (D); all contiguous row-major.
// mean(x²) is accumulated in double on the CPU (in acc_t<T> per row on CUDA, then the rsqrt
// in double), then rstd is stored in acc_t<T>.
template <class T>
void rmsnorm_forward_ref(T* y, acc_t<T>* rstd, const T* x, const T* w, int64_t rows, int64_t D, double eps);
template <class T>
void rmsnorm_forward_cpu(T* y, acc_t<T>* rstd, const T* x, const T* w, int64_t rows, int64_t D, double eps);
template <class T>
void rmsnorm_forward_cuda(T* y, acc_t<T>* rstd, const T* x, const T* w, int64_t rows, int64_t D, double eps);

// A block's residual add fused with the next norm (the recurrent step, MambaLM::step, where
// they were an add kernel and a norm kernel a layer): x <- x + add, each element formed in
// acc_t<T> and rounded once to T as the tensor add does, then y and rstd from the new x exactly
// as rmsnorm_forward gives them: the same bits as the two calls. x, add, y (rows, D) and w (D)
// contiguous; x is updated in place.
template <class T>
void add_rmsnorm_forward_ref(T* y, acc_t<T>* rstd, T* x, const T* add, const T* w, int64_t rows, int64_t D,
                             double eps);
template <class T>
void add_rmsnorm_forward_cpu(T* y, acc_t<T>* rstd, T* x, const T* add, const T* w, int64_t rows, int64_t D,
                             double eps);
template <class T>
void add_rmsnorm_forward_cuda(T* y, acc_t<T>* rstd, T* x, const T* add, const T* w, int64_t rows, int64_t D,
                              double eps);

// The norm of rows picked by index (Simba's pruned layers, whose input rows are picked from the
// residual stream): y[i, :] and rstd[i] of row rows[i] of x, exactly as rmsnorm_forward gives
// them for those rows gathered first (index_select), without writing the gathered rows: a pass
// of n·D elements written and read again saved. x (S, D), y (n, D), w (D) contiguous; rows (n)
// int64, each in [0, S): the CPU variants throw before writing on one that is not, the CUDA
// variant records it (thrown at the next sync, like tensor/index.h's ops) and writes its row
// from zeros.
template <class T>
void gather_rmsnorm_forward_ref(T* y, acc_t<T>* rstd, const T* x, const int64_t* rows, const T* w, int64_t n,
                                int64_t S, int64_t D, double eps);
template <class T>
void gather_rmsnorm_forward_cpu(T* y, acc_t<T>* rstd, const T* x, const int64_t* rows, const T* w, int64_t n,
                                int64_t S, int64_t D, double eps);
template <class T>
void gather_rmsnorm_forward_cuda(T* y, acc_t<T>* rstd, const T* x, const int64_t* rows, const T* w, int64_t n,
                                 int64_t S, int64_t D, double eps);

// dx (rows, D), dw (D) <- dy (rows, D), x (rows, D), w (D), rstd (rows).
// dx or dw may be null (not needed). dw is overwritten, not accumulated; dx is overwritten, or,
// when add_dx, added to (each element read, added in acc_t<T> and rounded once): a block's input
// gets the residual path's gradient and the norm's in one pass (autograd's accumulating
// backward, rms_norm below).
// dw is summed over fixed chunks of rows into double partials, then the
// partials are added in chunk order: the result is the same bits whatever
// the number of threads.
template <class T>
void rmsnorm_backward_ref(T* dx, T* dw, const T* dy, const T* x, const T* w, const acc_t<T>* rstd, int64_t rows,
                          int64_t D, bool add_dx);
template <class T>
void rmsnorm_backward_cpu(T* dx, T* dw, const T* dy, const T* x, const T* w, const acc_t<T>* rstd, int64_t rows,
                          int64_t D, bool add_dx);
template <class T>
void rmsnorm_backward_cuda(T* dx, T* dw, const T* dy, const T* x, const T* w, const acc_t<T>* rstd, int64_t rows,
                           int64_t D, bool add_dx);

// x (..., D), w (D) -> (..., D); differentiable in x and w. float32, float64 or bfloat16
// (x and w of one dtype); the saved rstd is float32 for bfloat16.
Variable rms_norm(const Variable& x, const Variable& w, double eps);

// x += add (in place), then the norm of the new x with weight w (no autograd): the fused step
// of add_rmsnorm_forward. x, add (..., D) of one dtype and device, x contiguous.
Tensor add_rms_norm_(Tensor& x, const Tensor& add, const Tensor& w, double eps);

// The norm of x's rows `rows` (no autograd): gather_rmsnorm_forward. x (S, D) contiguous, rows
// (n) int64 on x's device -> (n, D), the bits of rms_norm(index_select(x, 0, rows), w, eps).
Tensor gather_rms_norm(const Tensor& x, const Tensor& rows, const Tensor& w, double eps);

class RMSNorm : public Module {
 public:
  // weight = ones (PyTorch and Mamba); no random draw, so no Generator.
  explicit RMSNorm(int64_t dim, double eps = 1e-5, DType dtype = DType::F32);
  Variable forward(const Variable& x) const;

  int64_t dim;
  double eps;
  Variable weight;  // (D)
};

}  // namespace simba
