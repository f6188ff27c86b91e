// nn/causal_conv1d.h: Mamba's causal depthwise 1-D convolution over time.
//
//   out[b,t,c] = bias[c] + Σ_{k=0..K-1} w[c,0,k] · x[b, t−(K−1)+k, c],   x[b, t<0, c] = 0
//
// i.e. PyTorch's Conv1d(C, C, K, groups=C, padding=K−1) truncated to the first
// L outputs, as mamba_ssm's Mamba does, so step t sees only x[..t]. Sequences are
// channels-last (B, L, C). The input is usually the first half of in_proj's
// (B, L, 2·Di) output, a column view, so the kernels take x's batch and time
// strides instead of requiring a contiguous copy.
#pragma once

#include "autograd/variable.h"
#include "nn/module.h"
#include "tensor/random.h"

namespace simba {

// Kernels, in three variants with identical signatures:
//   *_ref:  plain sequential loops in double, the specification the others are tested against.
//           T = float or double.
//   *_cpu:  the fast CPU path (OpenMP over (batch, block of channels)). nn/causal_conv1d.cpp.
//   *_cuda: the CUDA kernels (a thread per output element; dw and dbias from per-(batch, time
//           chunk) partials added in a fixed order). nn/causal_conv1d.cu, built with the CUDA
//           backend only; every pointer is CUDA device memory on the current device, and the
//           call returns once the work is queued on that device's stream.
// *_cpu and *_cuda take T = float, double or bfloat16. Every sum runs in acc_t<T> (float for
// bfloat16: an output is bias + taps accumulated in float, then rounded once) or, for dw and
// dbias, in double.
// All are deterministic (same bits on every run, for any number of CPU threads). B or L may
// be 0 (nothing to do; dw and dbias become 0).

// out (B, L, C) contiguous <- x (B, L, C) with element (b, t, c) at
// x[b·x_stride_b + t·x_stride_l + c], w (C, 1, K) contiguous, bias (C) or null.
// silu: out = SiLU(the sum) instead, v·σ(v) applied to the accumulator before its one rounding
// (tensor/elementwise_math.h's SiLU): the mixer's activation without a second pass over
// (B, L, C).
template <class T>
void causal_conv1d_forward_ref(T* out, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t C,
                               int64_t K, int64_t x_stride_b, int64_t x_stride_l, bool silu = false);
template <class T>
void causal_conv1d_forward_cpu(T* out, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t C,
                               int64_t K, int64_t x_stride_b, int64_t x_stride_l, bool silu = false);
template <class T>
void causal_conv1d_forward_cuda(T* out, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t C,
                                int64_t K, int64_t x_stride_b, int64_t x_stride_l, bool silu = false);

// SiLU's backward at the convolution's output, the sum v of the forward above formed again
// from x instead of stored (causal_conv1d_silu's backward): dv (B, L, C) contiguous =
// dout·SiLU'(v) for dout (B, L, C) contiguous, the gradient reaching SiLU(v); v stays in the
// accumulator, SiLU'(v) = σ(v)·(1 + v·(1 − σ(v))), and dv is rounded once. One pass over x
// and dout where the convolution, stored, and then SiLU's backward took two.
template <class T>
void causal_conv1d_silu_grad_ref(T* dv, const T* dout, const T* x, const T* w, const T* bias, int64_t B, int64_t L,
                                 int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l);
template <class T>
void causal_conv1d_silu_grad_cpu(T* dv, const T* dout, const T* x, const T* w, const T* bias, int64_t B, int64_t L,
                                 int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l);
template <class T>
void causal_conv1d_silu_grad_cuda(T* dv, const T* dout, const T* x, const T* w, const T* bias, int64_t B, int64_t L,
                                  int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l);

// dx (B, L, C) contiguous, dw (C, 1, K), dbias (C) <- dout (B, L, C) contiguous,
// x and w as in the forward. Any output may be null (not needed); defined ones
// are overwritten. From the forward's equation:
//   dx[b,s,c]  = Σ_k w[c,k] · dout[b, s+(K−1)−k, c]      (terms with that index ≥ L drop)
//   dw[c,k]    = Σ_{b,t} dout[b,t,c] · x[b, t−(K−1)+k, c]
//   dbias[c]   = Σ_{b,t} dout[b,t,c]
// dw and dbias are reduced into double partials over fixed slices of (batch, time), then
// the partials are added in order: the same bits whatever the thread count.
template <class T>
void causal_conv1d_backward_ref(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, int64_t B,
                                int64_t L, int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l);
template <class T>
void causal_conv1d_backward_cpu(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, int64_t B,
                                int64_t L, int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l);
template <class T>
void causal_conv1d_backward_cuda(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, int64_t B,
                                 int64_t L, int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l);

// The backward of causal_conv1d_silu: dx, dw, dbias as causal_conv1d_backward gives them for
// dout' = causal_conv1d_silu_grad(dout) (each dout' element rounded to T once), from dout (B, L,
// C) contiguous, the gradient reaching SiLU's output, and x, w, bias as in the forward. Any
// output may be null; defined ones are overwritten. The _ref and _cpu variants run the two
// kernels above; the CUDA variant (K <= 4) forms dout' where it uses it, in the pass that sums
// dw and dbias, and dx from the last K values of dout' it keeps: one pass over x and dout where
// the two kernels took three (dout' written, then read twice), with the same bits.
template <class T>
void causal_conv1d_silu_backward_ref(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, const T* bias,
                                     int64_t B, int64_t L, int64_t C, int64_t K, int64_t x_stride_b,
                                     int64_t x_stride_l);
template <class T>
void causal_conv1d_silu_backward_cpu(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, const T* bias,
                                     int64_t B, int64_t L, int64_t C, int64_t K, int64_t x_stride_b,
                                     int64_t x_stride_l);
template <class T>
void causal_conv1d_silu_backward_cuda(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, const T* bias,
                                      int64_t B, int64_t L, int64_t C, int64_t K, int64_t x_stride_b,
                                      int64_t x_stride_l);

// One recurrent step on raw memory (the kernel of causal_conv1d_step below): state (B, C, K)
// contiguous is shifted left by one and x[b·x_ld + c] written into column K−1, then
// out[b·out_ld + c] = bias[c] + Σ_k w[c,0,k]·state[b,c,k], summed bias first then taps in
// order k = 0..K−1 like the full forward, so both agree. w (C, 1, K) contiguous, bias (C) or
// null; B·C >= 1; silu as for the forward.
//   *_cpu:  nn/causal_conv1d.cpp (OpenMP over batch rows).
//   *_cuda: nn/causal_conv1d.cu, a thread per (b, c) owning its K state values.
template <class T>
void causal_conv1d_step_cpu(T* out, int64_t out_ld, T* state, const T* x, int64_t x_ld, const T* w, const T* bias,
                            int64_t B, int64_t C, int64_t K, bool silu = false);
template <class T>
void causal_conv1d_step_cuda(T* out, int64_t out_ld, T* state, const T* x, int64_t x_ld, const T* w, const T* bias,
                             int64_t B, int64_t C, int64_t K, bool silu = false);

// x (B, L, C) with stride 1 in its last dim (other strides taken as they are),
// w (C, 1, K), bias (C) or undefined -> (B, L, C) contiguous; differentiable
// in all three.
Variable causal_conv1d(const Variable& x, const Variable& w, const Variable& bias);
// SiLU(causal_conv1d(x, w, bias)), the same values and gradients, for a smaller footprint:
// causal_conv1d's output, the input of the SiLU, is not kept until backward (a (B, L, C)
// tensor a layer during training) but formed again there from x, which the convolution's
// backward keeps anyway, inside SiLU's backward (causal_conv1d_silu_grad: K multiply-adds per
// element more, no pass of its own). Where T is narrower than its accumulator the values and
// the gradients come from the unrounded sum (each output rounded once), so they are the
// float32 pipeline's, not those of silu(causal_conv1d) on a rounded convolution.
Variable causal_conv1d_silu(const Variable& x, const Variable& w, const Variable& bias);

// One step of recurrent generation, equal to position t of causal_conv1d when
// state holds x[t−K+1..t−1]. state (B, C, K) contiguous, HF's conv_states
// layout, newest value last: it is shifted left by one and x_t written into
// column K−1, then out (B, C) = bias + Σ_k w[c,0,k]·state[b,c,k].
// x_t (B, C) and out (B, C) need stride 1 in their last dim; bias may be undefined.
// silu: out = SiLU(that), as causal_conv1d_silu gives.
void causal_conv1d_step(Tensor& out, Tensor& state, const Tensor& x_t, const Tensor& w, const Tensor& bias,
                        bool silu = false);

class CausalConv1d : public Module {
 public:
  // PyTorch's Conv1d defaults with groups = C: weight kaiming-uniform with
  // fan_in = K (bound 1/sqrt(K)), bias U(±1/sqrt(K)); Mamba keeps both. g null: the
  // values are left unset, for a caller that fills them.
  CausalConv1d(int64_t channels, int64_t kernel, bool bias, Generator* g, DType dtype = DType::F32);
  Variable forward(const Variable& x) const;       // (B, L, C) -> (B, L, C)
  Variable forward_silu(const Variable& x) const;  // SiLU(forward(x)) by causal_conv1d_silu

  int64_t channels, kernel;
  Variable weight;  // (C, 1, K)
  Variable bias;    // (C), undefined without bias

 private:
  void check_input(const Variable& x) const;  // (B, L, channels)
};

}  // namespace simba
