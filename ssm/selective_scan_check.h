// ssm/selective_scan_check.h: the argument checks every selective-scan variant (reference,
// CPU and CUDA, ssm/selective_scan.h) runs before touching memory, so all of them reject the
// same bad calls with the same messages. Host-side code only.
#pragma once

#include <cstdint>

#include "ssm/selective_scan.h"
#include "tensor/error.h"

namespace simba {
namespace scan_check {

template <class V>
void check_rows(const char* op, const char* name, V v, int64_t width, const char* width_name) {
  SIMBA_CHECK(v.p != nullptr, op << ": " << name << " is null");
  SIMBA_CHECK(v.ld >= width, op << ": " << name << " has row stride ld=" << v.ld
                                << ", expected >= its width " << width_name << "=" << width);
}

template <class T>
void check_inputs(const char* op, SeqView<const T> u, SeqView<const T> delta, const T* A,
                  SeqView<const T> Bm, SeqView<const T> Cm, SeqView<const T> z, int64_t B,
                  int64_t L, int64_t Di, int64_t N) {
  SIMBA_CHECK(B >= 1 && L >= 1 && Di >= 1 && N >= 1, op << ": sizes must be >= 1, got B=" << B
                                                        << " L=" << L << " Di=" << Di
                                                        << " N=" << N);
  check_rows(op, "u", u, Di, "Di");
  check_rows(op, "delta", delta, Di, "Di");
  SIMBA_CHECK(A != nullptr, op << ": A (Di, N) is null");
  check_rows(op, "B", Bm, N, "N");
  check_rows(op, "C", Cm, N, "N");
  if (z.p) check_rows(op, "z", z, Di, "Di");
}

template <class T>
void check_grads(const char* op, SeqView<T> du, SeqView<T> ddelta, T* dA, SeqView<T> dB,
                 SeqView<T> dC, T* dD, SeqView<T> dz, SeqView<const T> dout, const T* Dskip,
                 SeqView<const T> z, int64_t Di, int64_t N) {
  check_rows(op, "du", du, Di, "Di");
  check_rows(op, "ddelta", ddelta, Di, "Di");
  SIMBA_CHECK(dA != nullptr, op << ": dA (Di, N) is null");
  check_rows(op, "dB", dB, N, "N");
  check_rows(op, "dC", dC, N, "N");
  check_rows(op, "dout", dout, Di, "Di");
  SIMBA_CHECK(dD == nullptr || Dskip != nullptr,
              op << ": dD requested but the forward had no Dskip (pass dD = nullptr)");
  SIMBA_CHECK(dz.p == nullptr || z.p != nullptr,
              op << ": dz requested but the forward had no gate z (pass dz.p = nullptr)");
  if (dz.p) check_rows(op, "dz", dz, Di, "Di");
}

}  // namespace scan_check
}  // namespace simba
