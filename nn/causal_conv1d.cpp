// nn/causal_conv1d.cpp: causal depthwise conv1d kernels (full sequence and
// single recurrent step) and their autograd wiring.
#include "nn/causal_conv1d.h"

#include <algorithm>
#include <vector>

#include "nn/init.h"
#include "nn/kernel_check.h"
#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/elementwise_math.h"
#include "tensor/strided_loop.h"

namespace simba {

namespace {

// Channels per task. With the weight transposed to (K, C) every inner loop
// runs over contiguous channels of out, x and w, which the compiler vectorises.
// A task's sums for one time step live in a kChannelBlock array of acc_t<T>,
// stored to T once all taps are in.
constexpr int64_t kChannelBlock = 64;

// wt (K, C) <- w (C, 1, K), widened to the compute type.
template <class T>
std::vector<acc_t<T>> weight_by_tap(const T* w, int64_t C, int64_t K) {
  std::vector<acc_t<T>> wt(static_cast<size_t>(K * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) wt[k * C + c] = static_cast<acc_t<T>>(w[c * K + k]);
  return wt;
}

}  // namespace

namespace {

// The forward's sum v at every (b, t, c), written as v, SiLU(v) (silu) or, with dsilu,
// dsilu·SiLU'(v) (causal_conv1d_silu_grad): plain loops in double (the _ref variants).
template <class T>
void conv_rows_ref(T* out, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t C, int64_t K,
                   int64_t x_stride_b, int64_t x_stride_l, bool silu, const T* dsilu) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < C; ++c) {
        double acc = bias ? static_cast<double>(bias[c]) : 0.0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t s = t - (K - 1) + k;
          if (s >= 0) acc += static_cast<double>(w[c * K + k]) * x[b * x_stride_b + s * x_stride_l + c];
        }
        const int64_t i = (b * L + t) * C + c;
        out[i] = static_cast<T>(dsilu  ? static_cast<double>(dsilu[i]) * pointwise::unary_derivative<UnaryOp::Silu>(acc, 0.0)
                                : silu ? pointwise::apply_unary<UnaryOp::Silu>(acc)
                                       : acc);
      }
}

// The same with the fast path's loops: OpenMP over (batch, block of channels), acc_t sums.
template <class T>
void conv_rows_cpu(T* out, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t C, int64_t K,
                   int64_t x_stride_b, int64_t x_stride_l, bool silu, const T* dsilu) {
  using Acc = acc_t<T>;
  const std::vector<Acc> wt = weight_by_tap(w, C, K);
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static) if (B * L * C * K > kParallelGrain)
  for (int64_t task = 0; task < B * blocks; ++task) {
    const int64_t b = task / blocks, c0 = (task % blocks) * kChannelBlock, n = std::min(kChannelBlock, C - c0);
    Acc acc[kChannelBlock];
    for (int64_t t = 0; t < L; ++t) {
      for (int64_t i = 0; i < n; ++i) acc[i] = bias ? static_cast<Acc>(bias[c0 + i]) : Acc(0);
      // Taps with t−(K−1)+k < 0 read the zero padding: skip them.
      for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
        const T* xs = x + b * x_stride_b + (t - (K - 1) + k) * x_stride_l + c0;
        const Acc* wk = wt.data() + k * C + c0;
        for (int64_t i = 0; i < n; ++i) acc[i] += wk[i] * static_cast<Acc>(xs[i]);
      }
      T* o = out + (b * L + t) * C + c0;
      if (dsilu) {
        const T* g = dsilu + (b * L + t) * C + c0;
        for (int64_t i = 0; i < n; ++i)
          o[i] = static_cast<T>(static_cast<Acc>(g[i]) * pointwise::unary_derivative<UnaryOp::Silu>(acc[i], Acc(0)));
      } else if (silu) {
        for (int64_t i = 0; i < n; ++i) o[i] = static_cast<T>(pointwise::apply_unary<UnaryOp::Silu>(acc[i]));
      } else {
        for (int64_t i = 0; i < n; ++i) o[i] = static_cast<T>(acc[i]);
      }
    }
  }
}

}  // namespace

template <class T>
void causal_conv1d_forward_ref(T* out, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t C,
                               int64_t K, int64_t x_stride_b, int64_t x_stride_l, bool silu) {
  kernel_check::conv_forward("causal_conv1d_forward_ref", out, x, w, B, L, C, K);
  conv_rows_ref(out, x, w, bias, B, L, C, K, x_stride_b, x_stride_l, silu, static_cast<const T*>(nullptr));
}

template <class T>
void causal_conv1d_silu_grad_ref(T* dv, const T* dout, const T* x, const T* w, const T* bias, int64_t B, int64_t L,
                                 int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l) {
  kernel_check::conv_silu_grad("causal_conv1d_silu_grad_ref", dv, dout, x, w, B, L, C, K);
  conv_rows_ref(dv, x, w, bias, B, L, C, K, x_stride_b, x_stride_l, true, dout);
}

template <class T>
void causal_conv1d_backward_ref(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, int64_t B,
                                int64_t L, int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l) {
  kernel_check::conv_backward("causal_conv1d_backward_ref", dout, x, w, B, L, C, K);
  for (int64_t c = 0; c < C; ++c) {
    double db = 0.0;
    std::vector<double> dwc(static_cast<size_t>(K), 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < L; ++t) {
        const double g = dout[(b * L + t) * C + c];
        db += g;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t s = t - (K - 1) + k;
          if (s >= 0) dwc[k] += g * x[b * x_stride_b + s * x_stride_l + c];
        }
      }
    if (dbias) dbias[c] = static_cast<T>(db);
    if (dw)
      for (int64_t k = 0; k < K; ++k) dw[c * K + k] = static_cast<T>(dwc[k]);
    if (!dx) continue;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < L; ++s) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t t = s + (K - 1) - k;
          if (t < L) acc += static_cast<double>(w[c * K + k]) * dout[(b * L + t) * C + c];
        }
        dx[(b * L + s) * C + c] = static_cast<T>(acc);
      }
  }
}

template <class T>
void causal_conv1d_forward_cpu(T* out, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t C,
                               int64_t K, int64_t x_stride_b, int64_t x_stride_l, bool silu) {
  kernel_check::conv_forward("causal_conv1d_forward_cpu", out, x, w, B, L, C, K);
  conv_rows_cpu(out, x, w, bias, B, L, C, K, x_stride_b, x_stride_l, silu, static_cast<const T*>(nullptr));
}

template <class T>
void causal_conv1d_silu_grad_cpu(T* dv, const T* dout, const T* x, const T* w, const T* bias, int64_t B, int64_t L,
                                 int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l) {
  kernel_check::conv_silu_grad("causal_conv1d_silu_grad_cpu", dv, dout, x, w, B, L, C, K);
  conv_rows_cpu(dv, x, w, bias, B, L, C, K, x_stride_b, x_stride_l, true, dout);
}

template <class T>
void causal_conv1d_backward_cpu(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, int64_t B,
                                int64_t L, int64_t C, int64_t K, int64_t x_stride_b, int64_t x_stride_l) {
  using Acc = acc_t<T>;
  kernel_check::conv_backward("causal_conv1d_backward_cpu", dout, x, w, B, L, C, K);
  const std::vector<Acc> wt = weight_by_tap(w, C, K);
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
  // Per-batch partial sums: pw (B, K, C), pb (B, C). Each task owns one
  // (b, channel block) slice of them, so there are no races.
  std::vector<double> pw(dw ? static_cast<size_t>(B * K * C) : 0, 0.0);
  std::vector<double> pb(dbias ? static_cast<size_t>(B * C) : 0, 0.0);
#pragma omp parallel for schedule(static) if (B * L * C * K > kParallelGrain)
  for (int64_t task = 0; task < B * blocks; ++task) {
    const int64_t b = task / blocks, c0 = (task % blocks) * kChannelBlock, n = std::min(kChannelBlock, C - c0);
    const T* db = dout + b * L * C + c0;
    if (dx) {
      Acc acc[kChannelBlock];
      for (int64_t s = 0; s < L; ++s) {
        for (int64_t i = 0; i < n; ++i) acc[i] = Acc(0);
        // Output t = s+(K−1)−k used x[s] through tap k; outputs past L do not exist.
        for (int64_t k = std::max<int64_t>(0, s + K - L); k < K; ++k) {
          const T* g = db + (s + K - 1 - k) * C;
          const Acc* wk = wt.data() + k * C + c0;
          for (int64_t i = 0; i < n; ++i) acc[i] += wk[i] * static_cast<Acc>(g[i]);
        }
        T* d = dx + (b * L + s) * C + c0;
        for (int64_t i = 0; i < n; ++i) d[i] = static_cast<T>(acc[i]);
      }
    }
    for (int64_t t = 0; t < L && (dw || dbias); ++t) {
      const T* g = db + t * C;
      if (dbias) {
        double* acc = pb.data() + b * C + c0;
        for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<double>(g[i]);
      }
      if (!dw) continue;
      for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
        const T* xs = x + b * x_stride_b + (t - (K - 1) + k) * x_stride_l + c0;
        double* acc = pw.data() + (b * K + k) * C + c0;
        for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<double>(g[i]) * static_cast<double>(xs[i]);
      }
    }
  }
  if (!dw && !dbias) return;
#pragma omp parallel for schedule(static) if (B * K * C > kParallelGrain)
  for (int64_t c = 0; c < C; ++c) {
    if (dw)
      for (int64_t k = 0; k < K; ++k) {
        double acc = 0.0;
        for (int64_t b = 0; b < B; ++b) acc += pw[(b * K + k) * C + c];
        dw[c * K + k] = static_cast<T>(acc);
      }
    if (dbias) {
      double acc = 0.0;
      for (int64_t b = 0; b < B; ++b) acc += pb[b * C + c];
      dbias[c] = static_cast<T>(acc);
    }
  }
}

// causal_conv1d_silu_backward's _ref and _cpu: SiLU's gradient through the convolution into a
// (B, L, C) buffer, then the convolution's backward from it.
#define SIMBA_CONV_SILU_BACKWARD(V)                                                                                \
  template <class T>                                                                                             \
  void causal_conv1d_silu_backward_##V(T* dx, T* dw, T* dbias, const T* dout, const T* x, const T* w, const T* bias, \
                                       int64_t B, int64_t L, int64_t C, int64_t K, int64_t x_stride_b,            \
                                       int64_t x_stride_l) {                                                      \
    kernel_check::conv_backward("causal_conv1d_silu_backward_" #V, dout, x, w, B, L, C, K);                     \
    std::vector<T> dv(static_cast<size_t>(B * L * C));                                                           \
    causal_conv1d_silu_grad_##V(dv.data(), dout, x, w, bias, B, L, C, K, x_stride_b, x_stride_l);                \
    causal_conv1d_backward_##V(dx, dw, dbias, dv.data(), x, w, B, L, C, K, x_stride_b, x_stride_l);              \
  }
SIMBA_CONV_SILU_BACKWARD(ref)
SIMBA_CONV_SILU_BACKWARD(cpu)
#undef SIMBA_CONV_SILU_BACKWARD

template <class T>
void causal_conv1d_step_cpu(T* out, int64_t out_ld, T* state, const T* x, int64_t x_ld, const T* w, const T* bias,
                            int64_t B, int64_t C, int64_t K, bool silu) {
  using Acc = acc_t<T>;
#pragma omp parallel for schedule(static) if (B * C * K > kParallelGrain)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < C; ++c) {
      T* s = state + (b * C + c) * K;
      std::copy(s + 1, s + K, s);
      s[K - 1] = x[b * x_ld + c];
      Acc acc = bias ? static_cast<Acc>(bias[c]) : Acc(0);
      for (int64_t k = 0; k < K; ++k) acc += static_cast<Acc>(w[c * K + k]) * static_cast<Acc>(s[k]);
      out[b * out_ld + c] = static_cast<T>(silu ? pointwise::apply_unary<UnaryOp::Silu>(acc) : acc);
    }
  }
}

#define SIMBA_INSTANTIATE_CONV(T, V)                                                                          \
  template void causal_conv1d_forward_##V<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                             int64_t, int64_t, bool);                                              \
  template void causal_conv1d_backward_##V<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                              int64_t, int64_t, int64_t);                                           \
  template void causal_conv1d_silu_grad_##V<T>(T*, const T*, const T*, const T*, const T*, int64_t, int64_t,        \
                                               int64_t, int64_t, int64_t, int64_t);                                 \
  template void causal_conv1d_silu_backward_##V<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int64_t,     \
                                                   int64_t, int64_t, int64_t, int64_t, int64_t);
SIMBA_INSTANTIATE_CONV(float, ref)
SIMBA_INSTANTIATE_CONV(double, ref)
SIMBA_INSTANTIATE_CONV(float, cpu)
SIMBA_INSTANTIATE_CONV(double, cpu)
SIMBA_INSTANTIATE_CONV(bfloat16, cpu)
#undef SIMBA_INSTANTIATE_CONV
#define SIMBA_INSTANTIATE_CONV_STEP(T)                                                                          \
  template void causal_conv1d_step_cpu<T>(T*, int64_t, T*, const T*, int64_t, const T*, const T*, int64_t, int64_t, \
                                          int64_t, bool);
SIMBA_INSTANTIATE_CONV_STEP(float)
SIMBA_INSTANTIATE_CONV_STEP(double)
SIMBA_INSTANTIATE_CONV_STEP(bfloat16)
#undef SIMBA_INSTANTIATE_CONV_STEP

namespace {

// Shapes, dtypes and layouts shared by causal_conv1d and the step; returns K.
int64_t check_conv_weights(const char* op, int64_t C, DType dtype, const Tensor& w, const Tensor& bias) {
  SIMBA_CHECK(w.dim() == 3 && w.size(0) == C && w.size(1) == 1 && w.size(2) >= 1,
              op << ": weight of shape " << shape_str(w.shape()) << " for " << C << " channels (expected (" << C
                 << ", 1, K))");
  SIMBA_CHECK(w.dtype() == dtype, op << ": weight is " << dtype_name(w.dtype()) << ", input is " << dtype_name(dtype));
  if (bias.defined()) {
    SIMBA_CHECK(bias.dim() == 1 && bias.size(0) == C,
                op << ": bias of shape " << shape_str(bias.shape()) << " for " << C << " channels (expected "
                   << shape_str({C}) << ")");
    SIMBA_CHECK(bias.dtype() == dtype,
                op << ": bias is " << dtype_name(bias.dtype()) << ", input is " << dtype_name(dtype));
  }
  return w.size(2);
}

// The convolution of xd (B, L, C) with element (b, t, c) at xd's strides, on `dev`, SiLU'd if silu:
// (B, L, C) contiguous.
Tensor conv_output(const Tensor& xd, const Tensor& wd, const Tensor& bd, int64_t K, Device dev, bool silu) {
  const int64_t B = xd.size(0), L = xd.size(1), C = xd.size(2);
  Tensor out = Tensor::empty({B, L, C}, xd.dtype(), dev);
  if (out.numel() > 0)
    SIMBA_DISPATCH_COMPUTE_KERNEL(dev, xd.dtype(), "causal_conv1d", causal_conv1d_forward,
                                  out.device_data<scalar_t>(), xd.device_data<scalar_t>(), wd.device_data<scalar_t>(),
                                  bd.defined() ? bd.device_data<scalar_t>() : nullptr, B, L, C, K, xd.stride(0),
                                  xd.stride(1), silu);
  return out;
}

// The node of causal_conv1d (silu false) and causal_conv1d_silu (silu true). With silu the
// output is SiLU(conv) and the node keeps x, not conv: backward forms conv again from x
// inside SiLU's derivative (causal_conv1d_silu_backward).
Variable conv_node(const char* op, const Variable& x, const Variable& w, const Variable& bias, bool silu) {
  SIMBA_CHECK(x.dim() == 3, op << ": expected input (B, L, C), got shape " << shape_str(x.shape()));
  const Tensor xd = x.data();
  const int64_t B = xd.size(0), L = xd.size(1), C = xd.size(2);
  const Tensor wd = w.data().contiguous();
  const Tensor bd = bias.defined() ? bias.data().contiguous() : Tensor();
  const int64_t K = check_conv_weights(op, C, xd.dtype(), wd, bd);
  SIMBA_CHECK_HINT(xd.stride(2) == 1 || C == 1,
                   op << ": input of shape " << shape_str(xd.shape()) << " has channel stride " << xd.stride(2)
                      << ", expected 1",
                   "pass a channels-last (B, L, C) tensor, or call contiguous() first");
  const Device dev = op_device(op, {xd, wd, bd});
  const Tensor out = conv_output(xd, wd, bd, K, dev, silu);

  const bool has_bias = bias.defined();
  const bool need_x = x.requires_grad(), need_w = w.requires_grad(), need_b = has_bias && bias.requires_grad();
  std::vector<Variable> inputs{x, w};
  if (has_bias) inputs.push_back(bias);
  return make_result(
      out, op, inputs,
      [xd, wd, bd, silu, has_bias, need_x, need_w, need_b, B, L, C, K, dev](const Tensor& g) -> std::vector<Tensor> {
        const Tensor gc = g.contiguous();
        Tensor dx = need_x ? Tensor::empty({B, L, C}, xd.dtype(), dev) : Tensor();
        // The kernels write every element of dw and db when there are steps.
        auto grad = [&](bool need, const Shape& shape) {
          return !need           ? Tensor()
                 : gc.numel() > 0 ? Tensor::empty(shape, xd.dtype(), dev)
                                  : Tensor::zeros(shape, xd.dtype(), dev);
        };
        Tensor dw = grad(need_w, {C, 1, K}), db = grad(need_b, {C});
        // Under SiLU, SiLU's backward and the convolution's run as one kernel family.
        if (gc.numel() > 0 && silu)
          SIMBA_DISPATCH_COMPUTE_KERNEL(dev, xd.dtype(), "causal_conv1d_silu backward", causal_conv1d_silu_backward,
                                        need_x ? dx.device_data<scalar_t>() : nullptr,
                                        need_w ? dw.device_data<scalar_t>() : nullptr,
                                        need_b ? db.device_data<scalar_t>() : nullptr, gc.device_data<scalar_t>(),
                                        xd.device_data<scalar_t>(), wd.device_data<scalar_t>(),
                                        bd.defined() ? bd.device_data<scalar_t>() : nullptr, B, L, C, K,
                                        xd.stride(0), xd.stride(1));
        else if (gc.numel() > 0)
          SIMBA_DISPATCH_COMPUTE_KERNEL(dev, xd.dtype(), "causal_conv1d backward", causal_conv1d_backward,
                                        need_x ? dx.device_data<scalar_t>() : nullptr,
                                        need_w ? dw.device_data<scalar_t>() : nullptr,
                                        need_b ? db.device_data<scalar_t>() : nullptr, gc.device_data<scalar_t>(),
                                        xd.device_data<scalar_t>(), wd.device_data<scalar_t>(), B, L, C, K,
                                        xd.stride(0), xd.stride(1));
        std::vector<Tensor> grads{dx, dw};
        if (has_bias) grads.push_back(db);
        return grads;
      });
}

}  // namespace

Variable causal_conv1d(const Variable& x, const Variable& w, const Variable& bias) {
  return conv_node("causal_conv1d", x, w, bias, false);
}

Variable causal_conv1d_silu(const Variable& x, const Variable& w, const Variable& bias) {
  return conv_node("causal_conv1d_silu", x, w, bias, true);
}

void causal_conv1d_step(Tensor& out, Tensor& state, const Tensor& x_t, const Tensor& w, const Tensor& bias,
                        bool silu) {
  SIMBA_CHECK(x_t.dim() == 2, "causal_conv1d_step: expected x_t (B, C), got shape " << shape_str(x_t.shape()));
  const int64_t B = x_t.size(0), C = x_t.size(1);
  const Tensor wd = w.contiguous();
  const Tensor bd = bias.defined() ? bias.contiguous() : Tensor();
  const int64_t K = check_conv_weights("causal_conv1d_step", C, x_t.dtype(), wd, bd);
  SIMBA_CHECK(state.dim() == 3 && state.size(0) == B && state.size(1) == C && state.size(2) == K,
              "causal_conv1d_step: state of shape " << shape_str(state.shape()) << ", expected (" << B << ", " << C
                                                    << ", " << K << ") for x_t " << shape_str(x_t.shape())
                                                    << " and weight " << shape_str(w.shape()));
  SIMBA_CHECK(state.is_contiguous(), "causal_conv1d_step: state must be contiguous (it is rolled in place)");
  SIMBA_CHECK(out.dim() == 2 && out.size(0) == B && out.size(1) == C,
              "causal_conv1d_step: out of shape " << shape_str(out.shape()) << ", expected (" << B << ", " << C << ")");
  SIMBA_CHECK((x_t.stride(1) == 1 || C == 1) && (out.stride(1) == 1 || C == 1),
              "causal_conv1d_step: x_t and out need stride 1 in their channel dim, got "
                  << x_t.stride(1) << " and " << out.stride(1));
  SIMBA_CHECK(state.dtype() == x_t.dtype() && out.dtype() == x_t.dtype(),
              "causal_conv1d_step: dtypes differ: x_t " << dtype_name(x_t.dtype()) << ", state "
                                                        << dtype_name(state.dtype()) << ", out "
                                                        << dtype_name(out.dtype()));
  const Device dev = op_device("causal_conv1d_step", {out, state, x_t, wd, bd});
  if (B * C == 0) return;
  SIMBA_DISPATCH_COMPUTE_KERNEL(dev, x_t.dtype(), "causal_conv1d_step", causal_conv1d_step,
                                out.device_data<scalar_t>(), out.stride(0), state.device_data<scalar_t>(),
                                x_t.device_data<scalar_t>(), x_t.stride(0), wd.device_data<scalar_t>(),
                                bd.defined() ? bd.device_data<scalar_t>() : nullptr, B, C, K, silu);
}

CausalConv1d::CausalConv1d(int64_t C, int64_t K, bool with_bias, Generator* g, DType dtype)
    : channels(C), kernel(K) {
  SIMBA_CHECK(C > 0 && K > 0, "CausalConv1d: channels and kernel must be positive, got " << C << ", " << K);
  Tensor w = Tensor::empty({C, 1, K}, dtype);
  if (g) kaiming_uniform_(w, *g);
  weight = register_parameter("weight", w);
  if (with_bias) {
    Tensor b = Tensor::empty({C}, dtype);
    if (g) default_bias_uniform_(b, w.shape(), *g);
    bias = register_parameter("bias", b);
  }
}

void CausalConv1d::check_input(const Variable& x) const {
  SIMBA_CHECK(x.dim() == 3 && x.size(2) == channels,
              "CausalConv1d(" << channels << ", K=" << kernel << "): input of shape " << shape_str(x.shape())
                              << ", expected (B, L, " << channels << ")");
}

Variable CausalConv1d::forward(const Variable& x) const {
  check_input(x);
  return causal_conv1d(x, weight, bias);
}

Variable CausalConv1d::forward_silu(const Variable& x) const {
  check_input(x);
  return causal_conv1d_silu(x, weight, bias);
}

}  // namespace simba
