#include "ssm/selective_scan_autograd.h"

#include "ssm/selective_scan.h"
#include "tensor/dispatch.h"

namespace simba {

Tensor as_scan_rows(const Tensor& t) {
  const bool rows = t.stride(2) == 1 && t.stride(0) == t.size(1) * t.stride(1);
  return rows ? t : t.contiguous();
}

namespace {

template <class T>
SeqView<const T> cview(const Tensor& t) {
  if (!t.defined()) return {nullptr, 0};
  return {t.device_data<T>(), t.stride(1)};
}

template <class T>
SeqView<T> mview(const Tensor& t) {
  if (!t.defined()) return {nullptr, 0};
  return {t.device_data<T>(), t.size(2)};
}

// The checkpoints' data as the kernels' acc_t<T>, or nullptr when none are kept.
template <class T>
acc_t<T>* checkpoints_of(const Tensor& t) {
  return t.defined() ? t.device_data<acc_t<T>>() : nullptr;
}

void check_seq(const char* name, const Tensor& t, int64_t B, int64_t L, int64_t W) {
  SIMBA_CHECK(t.dim() == 3 && t.size(0) == B && t.size(1) == L && t.size(2) == W,
              "selective_scan: " << name << " must be " << shape_str({B, L, W}) << ", got " << shape_str(t.shape()));
}

}  // namespace

Variable selective_scan(const Variable& u, const Variable& delta, const Variable& A, const Variable& Bm,
                        const Variable& Cm, const Variable& D, const Variable& z) {
  SIMBA_CHECK(u.dim() == 3, "selective_scan: u must be (B, L, Di), got " << shape_str(u.shape()));
  SIMBA_CHECK(A.dim() == 2 && A.size(0) == u.size(2),
              "selective_scan: A must be (Di, N) with Di = " << u.size(2) << ", got " << shape_str(A.shape()));
  const int64_t B = u.size(0), L = u.size(1), Di = u.size(2), N = A.size(1);
  check_seq("delta", delta.data(), B, L, Di);
  check_seq("B", Bm.data(), B, L, N);
  check_seq("C", Cm.data(), B, L, N);
  if (z.defined()) check_seq("z", z.data(), B, L, Di);
  if (D.defined())
    SIMBA_CHECK(D.shape() == Shape{Di}, "selective_scan: D must be (" << Di << ",), got " << shape_str(D.shape()));
  for (const Variable* v : {&delta, &A, &Bm, &Cm, &D, &z})
    if (v->defined()) check_same_dtype("selective_scan", u.data(), v->data());

  Tensor tu = as_scan_rows(u.data()), tdelta = as_scan_rows(delta.data());
  Tensor tB = as_scan_rows(Bm.data()), tC = as_scan_rows(Cm.data());
  Tensor tA = A.data().contiguous();
  Tensor tD = D.defined() ? D.data().contiguous() : Tensor();
  Tensor tz = z.defined() ? as_scan_rows(z.data()) : Tensor();
  const Device dev = op_device("selective_scan", {tu, tdelta, tA, tB, tC, tD, tz});
  Tensor out = Tensor::empty({B, L, Di}, u.dtype(), dev);
  // A forward that will be differentiated keeps the checkpoints its backward starts from
  // (ssm/selective_scan.h), in acc_t of the dtype: float64 for float64, else float32.
  bool records = false;
  for (const Variable* v : {&u, &delta, &A, &Bm, &Cm, &D, &z}) records = records || v->requires_grad();
  records = records && grad_enabled();
  const Tensor checkpoints =
      records ? Tensor::empty({B, scan_checkpoint_count(L), Di, N}, u.dtype() == DType::F64 ? DType::F64 : DType::F32, dev)
              : Tensor();
  SIMBA_DISPATCH_COMPUTE_KERNEL(dev, u.dtype(), "selective_scan", selective_scan_forward, mview<scalar_t>(out), nullptr,
                        cview<scalar_t>(tu), cview<scalar_t>(tdelta), tA.device_data<scalar_t>(), cview<scalar_t>(tB),
                        cview<scalar_t>(tC), tD.defined() ? tD.device_data<scalar_t>() : nullptr, cview<scalar_t>(tz),
                        nullptr, B, L, Di, N, checkpoints_of<scalar_t>(checkpoints));

  return make_result(out, "selective_scan", {u, delta, A, Bm, Cm, D, z},
                     [=](const Tensor& g) -> std::vector<Tensor> {
                       const DType dt = tu.dtype();
                       Tensor dout = as_scan_rows(g);
                       Tensor du = Tensor::empty({B, L, Di}, dt, dev), ddelta = Tensor::empty({B, L, Di}, dt, dev);
                       Tensor dA = Tensor::empty({Di, N}, dt, dev);
                       Tensor dB = Tensor::empty({B, L, N}, dt, dev), dC = Tensor::empty({B, L, N}, dt, dev);
                       Tensor dD = tD.defined() ? Tensor::empty({Di}, dt, dev) : Tensor();
                       Tensor dz = tz.defined() ? Tensor::empty({B, L, Di}, dt, dev) : Tensor();
                       SIMBA_DISPATCH_COMPUTE_KERNEL(
                           dev, dt, "selective_scan backward", selective_scan_backward, mview<scalar_t>(du),
                           mview<scalar_t>(ddelta), dA.device_data<scalar_t>(), mview<scalar_t>(dB),
                           mview<scalar_t>(dC), dD.defined() ? dD.device_data<scalar_t>() : nullptr,
                           mview<scalar_t>(dz), nullptr, cview<scalar_t>(dout), nullptr, cview<scalar_t>(tu),
                           cview<scalar_t>(tdelta), tA.device_data<scalar_t>(), cview<scalar_t>(tB),
                           cview<scalar_t>(tC), tD.defined() ? tD.device_data<scalar_t>() : nullptr,
                           cview<scalar_t>(tz), nullptr, B, L, Di, N,
                           static_cast<const acc_t<scalar_t>*>(checkpoints_of<scalar_t>(checkpoints)));
                       return {du, ddelta, dA, dB, dC, dD, dz};
                     });
}

}  // namespace simba
