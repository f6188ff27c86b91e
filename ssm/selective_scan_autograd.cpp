#include "ssm/selective_scan_autograd.h"

#include "ssm/selective_scan.h"

namespace simba {

namespace {

// The kernels read (B, L, W) operands as rows `ld` apart; a tensor qualifies
// when its last dim is dense and its batch stride is L rows.
Tensor as_rows(const Tensor& t) {
  const bool rows = t.stride(2) == 1 && t.stride(0) == t.size(1) * t.stride(1);
  return rows ? t : t.contiguous();
}

template <class T>
SeqView<const T> cview(const Tensor& t) {
  if (!t.defined()) return {nullptr, 0};
  return {t.data<T>(), t.stride(1)};
}

template <class T>
SeqView<T> mview(const Tensor& t) {
  if (!t.defined()) return {nullptr, 0};
  return {t.data<T>(), t.size(2)};
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

  Tensor tu = as_rows(u.data()), tdelta = as_rows(delta.data()), tB = as_rows(Bm.data()), tC = as_rows(Cm.data());
  Tensor tA = A.data().contiguous();
  Tensor tD = D.defined() ? D.data().contiguous() : Tensor();
  Tensor tz = z.defined() ? as_rows(z.data()) : Tensor();
  Tensor out = Tensor::empty({B, L, Di}, u.dtype());
  SIMBA_DISPATCH_FLOAT(u.dtype(), "selective_scan", [&] {
    using T = scalar_t;
    selective_scan_forward_cpu<T>(mview<T>(out), nullptr, cview<T>(tu), cview<T>(tdelta), tA.data<T>(), cview<T>(tB),
                                  cview<T>(tC), tD.defined() ? tD.data<T>() : nullptr, cview<T>(tz), nullptr, B, L, Di, N);
  });

  return make_result(out, "selective_scan", {u, delta, A, Bm, Cm, D, z},
                     [=](const Tensor& g) -> std::vector<Tensor> {
                       const DType dt = tu.dtype();
                       Tensor dout = as_rows(g);
                       Tensor du = Tensor::empty({B, L, Di}, dt), ddelta = Tensor::empty({B, L, Di}, dt);
                       Tensor dA = Tensor::empty({Di, N}, dt);
                       Tensor dB = Tensor::empty({B, L, N}, dt), dC = Tensor::empty({B, L, N}, dt);
                       Tensor dD = tD.defined() ? Tensor::empty({Di}, dt) : Tensor();
                       Tensor dz = tz.defined() ? Tensor::empty({B, L, Di}, dt) : Tensor();
                       SIMBA_DISPATCH_FLOAT(dt, "selective_scan backward", [&] {
                         using T = scalar_t;
                         selective_scan_backward_cpu<T>(
                             mview<T>(du), mview<T>(ddelta), dA.data<T>(), mview<T>(dB), mview<T>(dC),
                             dD.defined() ? dD.data<T>() : nullptr, mview<T>(dz), nullptr, cview<T>(dout), nullptr,
                             cview<T>(tu), cview<T>(tdelta), tA.data<T>(), cview<T>(tB), cview<T>(tC),
                             tD.defined() ? tD.data<T>() : nullptr, cview<T>(tz), nullptr, B, L, Di, N);
                       });
                       return {du, ddelta, dA, dB, dC, dD, dz};
                     });
}

}  // namespace simba
