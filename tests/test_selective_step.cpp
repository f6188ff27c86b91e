// tests/test_selective_step.cpp: the fused recurrent step (ssm/selective_step.h) on the CPU.
//
// 1. In float64 it equals the unfused computation it replaces: dt_proj (W_dt·x + b_dt),
//    softplus, A = -exp(A_log) and a length-1 selective_scan_forward_ref from h (ssm/selective_scan.h).
// 2. _cpu equals _ref bit for bit (float, bfloat16, float64), with and without bias and skip,
//    over strided x_dbl and z rows; every y is written (outputs poisoned with NaN first).
// 3. Bad sizes and strides throw simba::Error naming the function.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ssm/selective_scan.h"
#include "ssm/selective_step.h"
#include "tensor/error.h"
#include "tensor/half_types.h"
#include "tests/step_inputs.h"
#include "tests/test_util.h"

using namespace simba;

namespace {

// The composition of separate steps that selective_step fuses, in float64.
void unfused_step(const StepInputs& s, std::vector<double>& y, std::vector<double>& h) {
  const int64_t B = s.B, Di = s.Di, R = s.R, N = s.N;
  std::vector<double> delta(B * Di), A(Di * N), h_new(B * Di * N);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < Di; ++d) {
      double v = s.bias ? s.b_dt[d] : 0.0;
      for (int64_t r = 0; r < R; ++r) v += s.W_dt[d * R + r] * s.x_dbl[b * s.ld_dbl + r];
      delta[b * Di + d] = v > 20 ? v : std::log1p(std::exp(v));
    }
  for (int64_t i = 0; i < Di * N; ++i) A[i] = -std::exp(s.A_log[i]);
  selective_scan_forward_ref<double>({y.data(), Di}, h_new.data(), {s.u.data(), Di}, {delta.data(), Di}, A.data(),
                                     {s.x_dbl.data() + R, s.ld_dbl}, {s.x_dbl.data() + R + N, s.ld_dbl},
                                     s.skip ? s.Dskip.data() : nullptr, {s.z.data() + 0, s.ld_z}, h.data(), B, 1, Di,
                                     N);
  h = h_new;
}

template <class T, class F>
void run(F fn, const StepInputs& s, std::vector<T>& y, std::vector<T>& h) {
  const std::vector<T> x = StepInputs::as<T>(s.x_dbl), u = StepInputs::as<T>(s.u), z = StepInputs::as<T>(s.z);
  const std::vector<T> W = StepInputs::as<T>(s.W_dt), bdt = StepInputs::as<T>(s.b_dt);
  const std::vector<T> Al = StepInputs::as<T>(s.A_log), D = StepInputs::as<T>(s.Dskip);
  fn(y.data(), h.data(), x.data(), s.ld_dbl, u.data(), z.data(), s.ld_z, W.data(), s.bias ? bdt.data() : nullptr,
     Al.data(), s.skip ? D.data() : nullptr, s.B, s.Di, s.R, s.N);
}

template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

struct Size {
  int64_t B, Di, R, N;
  bool bias, skip;
};
const Size kSizes[] = {{1, 1, 1, 1, true, true},   {3, 37, 5, 16, true, true}, {2, 64, 48, 16, false, true},
                       {4, 33, 3, 5, true, false},  {1, 130, 0, 4, true, true},  {5, 8, 2, 64, false, false}};

}  // namespace

TEST_CASE("selective_step (float64) equals dt_proj, softplus, -exp(A_log) and a length-1 scan") {
  for (const Size& sz : kSizes) {
    INFO("B=" << sz.B << " Di=" << sz.Di << " R=" << sz.R << " N=" << sz.N);
    const StepInputs s(sz.B, sz.Di, sz.R, sz.N, sz.bias, sz.skip, 7 + sz.Di);
    std::vector<double> y_ref(s.B * s.Di), h_ref = s.h;
    unfused_step(s, y_ref, h_ref);
    std::vector<double> y(s.B * s.Di, std::numeric_limits<double>::quiet_NaN()), h = s.h;
    run<double>(selective_step_ref<double>, s, y, h);
    for (size_t i = 0; i < y.size(); ++i) CHECK(y[i] == doctest::Approx(y_ref[i]).epsilon(1e-12));
    for (size_t i = 0; i < h.size(); ++i) CHECK(h[i] == doctest::Approx(h_ref[i]).epsilon(1e-12));
  }
}

TEST_CASE("selective_step_cpu equals selective_step_ref bit for bit, and writes every output") {
  for (const Size& sz : kSizes) {
    INFO("B=" << sz.B << " Di=" << sz.Di << " R=" << sz.R << " N=" << sz.N);
    const StepInputs s(sz.B, sz.Di, sz.R, sz.N, sz.bias, sz.skip, 100 + sz.N);
    auto both = [&](auto tag) {
      using T = decltype(tag);
      const T nan = T(std::numeric_limits<float>::quiet_NaN());
      std::vector<T> y_ref(s.B * s.Di, nan), h_ref = StepInputs::as<T>(s.h);
      std::vector<T> y(s.B * s.Di, nan), h = StepInputs::as<T>(s.h);
      run<T>(selective_step_ref<T>, s, y_ref, h_ref);
      // Two steps: the second starts from the state the first left.
      run<T>(selective_step_cpu<T>, s, y, h);
      CHECK(widen(y) == widen(y_ref));
      CHECK(widen(h) == widen(h_ref));
      for (const T& v : y) CHECK(std::isfinite(double(v)));
      run<T>(selective_step_ref<T>, s, y_ref, h_ref);
      run<T>(selective_step_cpu<T>, s, y, h);
      CHECK(widen(y) == widen(y_ref));
      CHECK(widen(h) == widen(h_ref));
    };
    both(float{});
    both(double{});
    both(bfloat16{});
  }
}

TEST_CASE("selective_step rejects bad sizes, strides and missing operands") {
  const StepInputs s(2, 8, 3, 4, true, true, 1);
  std::vector<float> y(16), h(64), x(2 * s.ld_dbl), u(16), z(32), W(24), Al(32);
  auto call = [&](int64_t ld_dbl, int64_t ld_z, int64_t R, const float* W_dt) {
    return error_of([&] {
      selective_step_cpu<float>(y.data(), h.data(), x.data(), ld_dbl, u.data(), z.data(), ld_z, W_dt, nullptr,
                                Al.data(), nullptr, 2, 8, R, 4);
    });
  };
  CHECK(call(s.ld_dbl, 16, 3, W.data()).empty());
  CHECK(contains(call(10, 16, 3, W.data()), "selective_step_cpu: x_dbl row stride 10 < R + 2N = 11"));
  CHECK(contains(call(s.ld_dbl, 7, 3, W.data()), "z row stride 7 < Di = 8"));
  CHECK(contains(call(s.ld_dbl, 16, -1, W.data()), "negative size"));
  CHECK(contains(call(s.ld_dbl, 16, 3, nullptr), "a required operand is null"));
}
