// tests/test_mixer_step.cpp: the mixer's recurrent step after in_proj (ssm/mixer_step.h) on the CPU.
//
// 1. _ref equals, in float64, the three ops it stands for run one after the other: the
//    convolution step with SiLU (causal_conv1d_step_cpu), x_proj as plain sums and
//    selective_step_ref; two steps in a row, the second from the states the first left.
// 2. _cpu agrees with _ref (float64 to 1e-13, float32 to 1e-5, bfloat16 to 1e-2 normwise), with
//    and without the optional operands, over padded in_proj rows; every y is written (poisoned).
// 3. _cpu gives bit for bit what the layers' own ops give, one after another (the decode step
//    on the CPU before the fused call): causal_conv1d_step, Linear's product for x_proj,
//    selective_step_cpu; float32 and bfloat16.
// 4. Bad sizes, strides and missing operands throw simba::Error naming the function.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/variable.h"
#include "nn/causal_conv1d.h"
#include "nn/linear.h"
#include "ssm/mixer_step.h"
#include "ssm/selective_step.h"
#include "tensor/dispatch.h"
#include "tensor/half_types.h"
#include "tensor/tensor.h"
#include "tests/step_inputs.h"
#include "tests/test_util.h"

using namespace simba;

namespace {

struct Size {
  int64_t B, Di, K, R, N, pad;
  bool conv_bias, dt_bias, skip;
};
const Size kSizes[] = {{1, 1, 4, 1, 1, 0, true, true, true},      {3, 37, 4, 5, 16, 3, true, true, true},
                       {2, 64, 2, 48, 16, 0, false, true, false},  {4, 33, 3, 3, 5, 1, true, false, true},
                       {1, 130, 1, 0, 4, 0, true, true, true},     {5, 8, 4, 2, 3, 0, false, false, false}};

// Host copies in T with a p() accessor, as the CUDA tests' device buffers.
template <class T>
struct HostArray {
  std::vector<T> v;
  explicit HostArray(const std::vector<double>& d) : v(d.begin(), d.end()) {}
  T* p() { return v.data(); }
  const T* p() const { return v.data(); }
};

// The variant `fn` on T copies of s, `steps` times from the inputs' states; returns y, conv_state
// and h of the last step widened.
template <class T, class Fn>
std::vector<std::vector<double>> steps_of(Fn fn, const MixerStepInputs& s, int steps) {
  HostArray<T> xz(s.xz), cs(s.conv_state), cw(s.conv_w), cb(s.conv_b), Wx(s.W_x), Wdt(s.W_dt), bdt(s.b_dt),
      Al(s.A_log), D(s.Dskip), h(s.h);
  std::vector<T> y;
  for (int i = 0; i < steps; ++i) {
    y.assign(s.B * s.Di, T(std::numeric_limits<float>::quiet_NaN()));
    fn(y.data(), cs.p(), h.p(), xz.p(), s.ld_xz, xz.p() + s.Di, s.ld_xz, cw.p(), s.conv_bias ? cb.p() : nullptr,
       Wx.p(), Wdt.p(), s.dt_bias ? bdt.p() : nullptr, Al.p(), s.skip ? D.p() : nullptr, s.B, s.Di, s.K, s.R, s.N);
  }
  auto widen = [](const std::vector<T>& v) { return std::vector<double>(v.begin(), v.end()); };
  return {widen(y), widen(cs.v), widen(h.v)};
}

double normwise(const std::vector<double>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return got.size() == ref.size() ? (den > 0 ? std::sqrt(num / den) : std::sqrt(num))
                                  : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

TEST_CASE("mixer_step_ref (float64) equals the conv step, x_proj and selective_step run one after another") {
  for (const Size& sz : kSizes) {
    INFO("B=" << sz.B << " Di=" << sz.Di << " K=" << sz.K << " R=" << sz.R << " N=" << sz.N);
    const MixerStepInputs s(sz.B, sz.Di, sz.K, sz.R, sz.N, sz.pad, sz.conv_bias, sz.dt_bias, sz.skip, 3 + sz.Di);
    const int64_t E = s.R + 2 * s.N;
    std::vector<double> cs = s.conv_state, h = s.h, y(s.B * s.Di), u(s.B * s.Di), x_dbl(s.B * E);
    for (int step = 0; step < 2; ++step) {
      causal_conv1d_step_cpu<double>(u.data(), s.Di, cs.data(), s.xz.data(), s.ld_xz, s.conv_w.data(),
                                     s.conv_bias ? s.conv_b.data() : nullptr, s.B, s.Di, s.K, /*silu=*/true);
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t e = 0; e < E; ++e) {
          double acc = 0;
          for (int64_t c = 0; c < s.Di; ++c) acc += s.W_x[e * s.Di + c] * u[b * s.Di + c];
          x_dbl[b * E + e] = acc;
        }
      selective_step_ref<double>(y.data(), h.data(), x_dbl.data(), E, u.data(), s.xz.data() + s.Di, s.ld_xz,
                                 s.W_dt.data(), s.dt_bias ? s.b_dt.data() : nullptr, s.A_log.data(),
                                 s.skip ? s.Dskip.data() : nullptr, s.B, s.Di, s.R, s.N);
    }
    const auto got = steps_of<double>(mixer_step_ref<double>, s, 2);
    CHECK(got[0] == y);
    CHECK(got[1] == cs);
    CHECK(got[2] == h);
  }
}

TEST_CASE("mixer_step_cpu agrees with mixer_step_ref in every type, and writes every output") {
  for (const Size& sz : kSizes) {
    INFO("B=" << sz.B << " Di=" << sz.Di << " K=" << sz.K << " R=" << sz.R << " N=" << sz.N);
    const MixerStepInputs s(sz.B, sz.Di, sz.K, sz.R, sz.N, sz.pad, sz.conv_bias, sz.dt_bias, sz.skip, 50 + sz.N);
    const auto ref = steps_of<double>(mixer_step_ref<double>, s, 2);
    auto check = [&](auto tag, double tol) {
      using T = decltype(tag);
      const auto got = steps_of<T>(mixer_step_cpu<T>, s, 2);
      for (int i = 0; i < 3; ++i) {
        INFO("output " << i << " (y, conv_state, h)");
        CHECK(normwise(got[i], ref[i]) <= tol);
      }
    };
    check(double{}, 1e-13);
    check(float{}, 1e-5);
    check(bfloat16{}, 1e-2);
  }
}

TEST_CASE("mixer_step_cpu equals the layers' ops run one after another, bit for bit") {
  for (const Size& sz : kSizes) {
    INFO("B=" << sz.B << " Di=" << sz.Di << " K=" << sz.K << " R=" << sz.R << " N=" << sz.N);
    const MixerStepInputs s(sz.B, sz.Di, sz.K, sz.R, sz.N, sz.pad, sz.conv_bias, sz.dt_bias, sz.skip, 90 + sz.R);
    const int64_t B = s.B, Di = s.Di, E = s.R + 2 * s.N;
    for (const DType dt : {DType::F32, DType::BF16}) {
      INFO(dtype_name(dt));
      const Tensor xz = Tensor::from_vector({B, s.ld_xz}, s.xz, dt);
      const Tensor w = Tensor::from_vector({Di, 1, s.K}, s.conv_w, dt);
      const Tensor bias = s.conv_bias ? Tensor::from_vector({Di}, s.conv_b, dt) : Tensor();
      const Tensor Wx = Tensor::from_vector({E, Di}, s.W_x, dt), Wdt = Tensor::from_vector({Di, s.R}, s.W_dt, dt);
      const Tensor bdt = Tensor::from_vector({Di}, s.b_dt, dt), Al = Tensor::from_vector({Di, s.N}, s.A_log, dt);
      const Tensor D = Tensor::from_vector({Di}, s.Dskip, dt);
      Tensor state = Tensor::from_vector({B, Di, s.K}, s.conv_state, dt), h = Tensor::from_vector({B, Di, s.N}, s.h, dt);
      Tensor u = Tensor::empty({B, Di}, dt), y = Tensor::empty({B, Di}, dt);
      causal_conv1d_step(u, state, xz.narrow(1, 0, Di), w, bias, /*silu=*/true);
      const Tensor x_dbl = linear(Variable(u), Variable(Wx), Variable()).data().contiguous();
      SIMBA_DISPATCH_COMPUTE(dt, "test", [&] {
        selective_step_cpu<scalar_t>(y.data<scalar_t>(), h.data<scalar_t>(), x_dbl.data<scalar_t>(), E,
                                     u.data<scalar_t>(), xz.data<scalar_t>() + Di, s.ld_xz, Wdt.data<scalar_t>(),
                                     s.dt_bias ? bdt.data<scalar_t>() : nullptr, Al.data<scalar_t>(),
                                     s.skip ? D.data<scalar_t>() : nullptr, B, Di, s.R, s.N);
        const auto got = steps_of<scalar_t>(mixer_step_cpu<scalar_t>, s, 1);
        CHECK(got[0] == y.to_vector());
        CHECK(got[1] == state.to_vector());
        CHECK(got[2] == h.to_vector());
      });
    }
  }
}

TEST_CASE("mixer_step rejects bad sizes, strides and missing operands") {
  std::vector<float> y(16), cs(64), h(64), xz(32), cw(32), Wx(88), Wdt(24), Al(32);
  auto call = [&](int64_t ld, int64_t Di, int64_t K, const float* W_x) {
    return error_of([&] {
      mixer_step_cpu<float>(y.data(), cs.data(), h.data(), xz.data(), ld, xz.data() + 8, ld, cw.data(), nullptr, W_x,
                            Wdt.data(), nullptr, Al.data(), nullptr, 2, Di, K, 3, 4);
    });
  };
  CHECK(call(16, 8, 4, Wx.data()).empty());
  CHECK(contains(call(7, 8, 4, Wx.data()), "mixer_step_cpu: row strides x 7, z 7 < Di = 8"));
  CHECK(contains(call(16, 0, 4, Wx.data()), "Di >= 1"));
  CHECK(contains(call(16, 8, 0, Wx.data()), "K >= 1"));
  CHECK(contains(call(16, 8, 4, nullptr), "a required operand is null"));
}
