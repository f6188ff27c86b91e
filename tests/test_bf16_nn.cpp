// tests/test_bf16_nn.cpp: bfloat16 compute on the CPU for the nn/ kernels (RMSNorm, causal
// conv1d and its recurrent step, cross-entropy) and the Simba score kernels, each against the
// same kernel in float64. Runs without a GPU; tests/test_cuda_nn.cpp and
// tests/test_cuda_model.cpp hold the CUDA bfloat16 kernels to these CPU ones.
//
// Method:
// - Inputs are fresh random values (never zeros) rounded to bfloat16 once; the float64 run gets
//   exactly those values (widening is exact), so the error measured is the bfloat16 path's own:
//   float arithmetic plus one rounding of each stored element.
// - Tolerance: normwise ||got − ref||₂ / ||ref||₂ <= 1e-2 for bfloat16 outputs (issue 7's bound;
//   one rounding to bfloat16's 8 significant bits costs at most 2^-9 ≈ 2e-3 per element).
//   Outputs the kernels keep in float32 (RMSNorm's rstd, the per-row losses and lse, the Simba
//   scores) are held to float32 accuracy instead, with the reason at each check: that they pass
//   shows they were never rounded to bfloat16 on the way.
// - Every output buffer is poisoned with NaN first: an element a kernel fails to write makes the
//   error NaN and fails the check.
// - Sizes include 1, odd sizes, sizes past the kernels' chunks (RMSNorm's 32-row dw chunks, the
//   conv's 64-channel blocks) and past the OpenMP grain.
// - The optimisers stay float32/float64 (nn/optim.h: updates and state in full precision, float32
//   master weights under mixed precision): a bfloat16 parameter or gradient is an error naming it
//   and the reason.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "nn/causal_conv1d.h"
#include "nn/cross_entropy.h"
#include "nn/optim.h"
#include "nn/rmsnorm.h"
#include "ssm/simba_score.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace simba;
using cuda_test::normwise_error;

namespace {

constexpr double kTol = 1e-2;

// The same values as bfloat16 (the inputs of the bfloat16 kernel) and as double (the float64
// kernel's): every bfloat16 widens exactly.
struct Bf16Values {
  std::vector<bfloat16> b;
  std::vector<double> d;
};

Bf16Values to_bf16(const std::vector<double>& raw) {
  Bf16Values v;
  for (double x : raw) {
    v.b.push_back(bfloat16(x));
    v.d.push_back(static_cast<double>(v.b.back()));
  }
  return v;
}

std::vector<double> uniform(size_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = dist(gen);
  return v;
}

Bf16Values uniform_bf16(size_t n, double lo, double hi, uint64_t seed) { return to_bf16(uniform(n, lo, hi, seed)); }

std::vector<bfloat16> poison_bf16(size_t n) { return std::vector<bfloat16>(n, bfloat16(NAN)); }
std::vector<float> poison_f32(size_t n) { return std::vector<float>(n, NAN); }

// A tensor of the values in `v` as dtype dt (exact for both BF16 and F64: the values are
// bfloat16 values).
Tensor tensor_of(const Shape& shape, const Bf16Values& v, DType dt) { return Tensor::from_vector(shape, v.d, dt); }

}  // namespace

// ---------------------------------------------------------------- RMSNorm

TEST_CASE("bfloat16 RMSNorm kernels equal the float64 ones: y, dx, dw within 1e-2, rstd in float32") {
  struct Size {
    int64_t rows, D;
  };
  // D = 1; odd D; rows across 1, 2 and 3 dw chunks of 32; 600 × 100 past the OpenMP grain.
  for (Size sz : {Size{3, 1}, Size{7, 33}, Size{37, 257}, Size{65, 768}, Size{600, 100}}) {
    const int64_t rows = sz.rows, D = sz.D;
    INFO("rows=" << rows << " D=" << D);
    const double eps = 1e-5;
    const Bf16Values x = uniform_bf16(rows * D, -2, 2, 11 + rows), w = uniform_bf16(D, 0.5, 1.5, 12 + D);
    const Bf16Values dy = uniform_bf16(rows * D, -1, 1, 13 + rows);

    std::vector<bfloat16> y = poison_bf16(rows * D);
    std::vector<float> rstd = poison_f32(rows);
    rmsnorm_forward_cpu<bfloat16>(y.data(), rstd.data(), x.b.data(), w.b.data(), rows, D, eps);
    std::vector<double> y64(rows * D), rstd64(rows);
    rmsnorm_forward_cpu<double>(y64.data(), rstd64.data(), x.d.data(), w.d.data(), rows, D, eps);
    CHECK(normwise_error(y, y64) <= kTol);
    // rstd is a float32 statistic (a double sum, one rsqrt, one rounding to float): 1e-6.
    CHECK(normwise_error(rstd, rstd64) <= 1e-6);

    std::vector<bfloat16> dx = poison_bf16(rows * D), dw = poison_bf16(D);
    rmsnorm_backward_cpu<bfloat16>(dx.data(), dw.data(), dy.b.data(), x.b.data(), w.b.data(), rstd.data(), rows, D,
                                   false);
    std::vector<double> dx64(rows * D), dw64(D);
    rmsnorm_backward_cpu<double>(dx64.data(), dw64.data(), dy.d.data(), x.d.data(), w.d.data(), rstd64.data(), rows,
                                 D, false);
    CHECK(normwise_error(dw, dw64) <= kTol);
    // At D = 1 dx = s·w·dy·eps/(x² + eps): the two float terms cancel to ~1e-5 of their size,
    // so only their float rounding is measured there, not the kernel (tests/test_cuda_nn.cpp).
    if (D > 1) CHECK(normwise_error(dx, dx64) <= kTol);
    else CHECK(std::isfinite(static_cast<float>(dx[0])));
  }
}

// ---------------------------------------------------------------- causal conv1d

TEST_CASE("bfloat16 causal conv1d kernels equal the float64 ones within 1e-2 (strided input)") {
  struct Size {
    int64_t B, L, C, K;
    bool bias;
  };
  // K = 1; L < K; C past one and two 64-channel blocks; L = 300 past the OpenMP grain.
  for (Size sz : {Size{1, 1, 1, 1, true}, Size{2, 3, 5, 4, true}, Size{3, 70, 129, 4, false},
                  Size{2, 300, 67, 3, true}, Size{4, 65, 65, 1, true}}) {
    const int64_t B = sz.B, L = sz.L, C = sz.C, K = sz.K;
    INFO("B=" << B << " L=" << L << " C=" << C << " K=" << K << " bias=" << sz.bias);
    // x is the first C columns of a (B, L, C + 3) buffer whose other cells are NaN: a kernel
    // reading outside the view poisons its result.
    const int64_t ld = C + 3, sb = L * ld, sl = ld;
    const std::vector<double> xv = uniform(B * L * C, -1, 1, 21 + C);
    std::vector<double> xraw(B * L * ld, NAN);
    for (int64_t r = 0; r < B * L; ++r)
      for (int64_t c = 0; c < C; ++c) xraw[r * ld + c] = xv[r * C + c];
    const Bf16Values x = to_bf16(xraw), w = uniform_bf16(C * K, -1, 1, 22 + K), bias = uniform_bf16(C, -1, 1, 23);
    const Bf16Values g = uniform_bf16(B * L * C, -1, 1, 24 + L);
    const bfloat16* bb = sz.bias ? bias.b.data() : nullptr;
    const double* bd = sz.bias ? bias.d.data() : nullptr;

    std::vector<bfloat16> out = poison_bf16(B * L * C);
    causal_conv1d_forward_cpu<bfloat16>(out.data(), x.b.data(), w.b.data(), bb, B, L, C, K, sb, sl);
    std::vector<double> out64(B * L * C);
    causal_conv1d_forward_cpu<double>(out64.data(), x.d.data(), w.d.data(), bd, B, L, C, K, sb, sl);
    CHECK(normwise_error(out, out64) <= kTol);

    std::vector<bfloat16> dx = poison_bf16(B * L * C), dw = poison_bf16(C * K), db = poison_bf16(C);
    causal_conv1d_backward_cpu<bfloat16>(dx.data(), dw.data(), db.data(), g.b.data(), x.b.data(), w.b.data(), B, L, C,
                                         K, sb, sl);
    std::vector<double> dx64(B * L * C), dw64(C * K), db64(C);
    causal_conv1d_backward_cpu<double>(dx64.data(), dw64.data(), db64.data(), g.d.data(), x.d.data(), w.d.data(), B,
                                       L, C, K, sb, sl);
    CHECK(normwise_error(dx, dx64) <= kTol);
    CHECK(normwise_error(dw, dw64) <= kTol);
    CHECK(normwise_error(db, db64) <= kTol);
  }
}

TEST_CASE("bfloat16 causal_conv1d_step equals the float64 step; the state is shifted exactly") {
  const int64_t B = 3, C = 37, K = 4;
  Bf16Values state = uniform_bf16(B * C * K, -1, 1, 31);
  const Bf16Values w = uniform_bf16(C * K, -1, 1, 32), bias = uniform_bf16(C, -1, 1, 33);
  std::vector<bfloat16> sb = state.b;
  std::vector<double> sd = state.d;
  for (int step = 0; step < 6; ++step) {
    INFO("step " << step);
    // x_t as a column view of a (B, 2C) projection (x_ld = 2C), as the mixer passes it.
    const Bf16Values xz = uniform_bf16(B * 2 * C, -1, 1, 40 + step);
    std::vector<bfloat16> out = poison_bf16(B * C);
    std::vector<double> out64(B * C);
    causal_conv1d_step_cpu<bfloat16>(out.data(), C, sb.data(), xz.b.data(), 2 * C, w.b.data(), bias.b.data(), B, C, K);
    causal_conv1d_step_cpu<double>(out64.data(), C, sd.data(), xz.d.data(), 2 * C, w.d.data(), bias.d.data(), B, C, K);
    CHECK(normwise_error(out, out64) <= kTol);
    CHECK(normwise_error(sb, sd) == 0.0);  // a shift and a copy of bfloat16 values: exact
  }
}

// ---------------------------------------------------------------- cross-entropy

TEST_CASE("bfloat16 cross-entropy kernels: float32 losses and lse, dlogits within 1e-2 of float64") {
  const int64_t ignore = -100;
  struct Size {
    int64_t rows, V;
  };
  // V = 1; V below and past 256; the GPT-NeoX vocabulary of the Mamba checkpoints.
  for (Size sz : {Size{1, 1}, Size{5, 7}, Size{33, 257}, Size{64, 1000}, Size{9, 50280}}) {
    const int64_t rows = sz.rows, V = sz.V;
    INFO("rows=" << rows << " V=" << V);
    std::vector<double> raw = uniform(rows * V, -4, 4, 51 + V);
    // Row 1 near +1000 and row 2 near −1000: without the max shift exp would overflow or
    // underflow to a wrong loss.
    for (int64_t r = 1; r < std::min<int64_t>(rows, 3); ++r)
      for (int64_t v = 0; v < V; ++v) raw[r * V + v] += r == 1 ? 1000.0 : -1000.0;
    const Bf16Values logits = to_bf16(raw);
    std::vector<int64_t> targets(rows);
    std::mt19937_64 gen(52 + rows);
    for (int64_t r = 0; r < rows; ++r)
      targets[r] = r % 3 == 2 ? ignore : std::uniform_int_distribution<int64_t>(0, V - 1)(gen);
    // dlosses are float32, as the op makes them (nn/cross_entropy.h).
    std::vector<float> dl(rows);
    for (int64_t r = 0; r < rows; ++r) dl[r] = float(0.1 + 1.9 * double(r + 1) / double(rows + 1));
    const std::vector<double> dl64(dl.begin(), dl.end());

    std::vector<float> losses = poison_f32(rows), lse = poison_f32(rows);
    cross_entropy_forward_cpu<bfloat16>(losses.data(), lse.data(), logits.b.data(), targets.data(), rows, V, ignore);
    std::vector<double> losses64(rows), lse64(rows);
    cross_entropy_forward_cpu<double>(losses64.data(), lse64.data(), logits.d.data(), targets.data(), rows, V, ignore);
    // Float32 results: lse to float32's 6e-8; a loss is lse − z, so lse's rounding (3e-5
    // absolute near 1000) is relative to the loss (a few units): 1e-4, still 20× below a
    // bfloat16 rounding.
    CHECK(normwise_error(lse, lse64) <= 1e-6);
    CHECK(normwise_error(losses, losses64) <= 1e-4);
    for (int64_t r = 0; r < rows; ++r)
      if (targets[r] == ignore) CHECK((losses[r] == 0.f && lse[r] == 0.f));

    std::vector<bfloat16> d = poison_bf16(rows * V);
    cross_entropy_backward_cpu<bfloat16>(d.data(), dl.data(), logits.b.data(), lse.data(), targets.data(), rows, V,
                                         ignore);
    std::vector<double> d64(rows * V);
    cross_entropy_backward_cpu<double>(d64.data(), dl64.data(), logits.d.data(), lse64.data(), targets.data(), rows,
                                       V, ignore);
    CHECK(normwise_error(d, d64) <= kTol);
    int64_t nonzero_ignored = 0;
    for (int64_t r = 0; r < rows; ++r)
      if (targets[r] == ignore)
        for (int64_t v = 0; v < V; ++v) nonzero_ignored += static_cast<float>(d[r * V + v]) != 0.f;
    CHECK(nonzero_ignored == 0);
    // In place (dlogits == logits, as the fused classifier calls it): the same bits.
    std::vector<bfloat16> in_place = logits.b;
    cross_entropy_backward_cpu<bfloat16>(in_place.data(), dl.data(), in_place.data(), lse.data(), targets.data(), rows,
                                         V, ignore);
    CHECK(std::memcmp(in_place.data(), d.data(), d.size() * sizeof(bfloat16)) == 0);
  }
}

// ---------------------------------------------------------------- through the Variable API

TEST_CASE("bfloat16 rms_norm, causal_conv1d and cross_entropy ops: dtypes, values and gradients") {
  // Each op on bfloat16 leaves and on float64 leaves holding the same values; the same upstream
  // gradient (bfloat16 values) into both.
  auto check_op = [](const std::string& what, const std::function<Variable(const std::vector<Variable>&)>& f,
                     const std::vector<Shape>& shapes, uint64_t seed) {
    INFO(what);
    std::vector<Variable> vb, vd;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Bf16Values v = uniform_bf16(shape_numel(shapes[i]), 0.5, 1.5, seed + i);
      vb.emplace_back(tensor_of(shapes[i], v, DType::BF16), true);
      vd.emplace_back(tensor_of(shapes[i], v, DType::F64), true);
    }
    const Variable yb = f(vb), yd = f(vd);
    REQUIRE(yb.dtype() == DType::BF16);
    CHECK(normwise_error(yb.data().to_vector(), yd.data().to_vector()) <= kTol);
    const Bf16Values up = uniform_bf16(shape_numel(yd.shape()), -1, 1, seed + 100);
    yb.backward(tensor_of(yd.shape(), up, DType::BF16));
    yd.backward(tensor_of(yd.shape(), up, DType::F64));
    for (size_t i = 0; i < vb.size(); ++i) {
      INFO("gradient of input " << i);
      REQUIRE(vb[i].grad().dtype() == DType::BF16);
      CHECK(normwise_error(vb[i].grad().to_vector(), vd[i].grad().to_vector()) <= kTol);
    }
  };
  check_op("rms_norm", [](const std::vector<Variable>& v) { return rms_norm(v[0], v[1], 1e-5); },
           {{3, 5, 37}, {37}}, 61);
  check_op("causal_conv1d", [](const std::vector<Variable>& v) { return causal_conv1d(v[0], v[1], v[2]); },
           {{2, 9, 19}, {19, 1, 4}, {19}}, 62);

  // Cross-entropy: a float32 loss (nn/cross_entropy.h), a bfloat16 gradient for the logits.
  const Tensor targets = Tensor::from_ints({6}, {3, -100, 0, 12, -100, 7});
  const Bf16Values lv = uniform_bf16(6 * 13, -4, 4, 63);
  Variable lb(tensor_of({6, 13}, lv, DType::BF16), true), ld(tensor_of({6, 13}, lv, DType::F64), true);
  const Variable loss_b = cross_entropy(lb, targets), loss_d = cross_entropy(ld, targets);
  REQUIRE(loss_b.dtype() == DType::F32);
  // The float32 computation of exact inputs: float32 accuracy.
  CHECK(std::fabs(loss_b.item() - loss_d.item()) <= 1e-6 * std::fabs(loss_d.item()));
  loss_b.backward();
  loss_d.backward();
  REQUIRE(lb.grad().dtype() == DType::BF16);
  CHECK(normwise_error(lb.grad().to_vector(), ld.grad().to_vector()) <= kTol);
  const Tensor rows_b = cross_entropy_rows(lb.data(), targets);
  CHECK(rows_b.dtype() == DType::F32);
  CHECK(normwise_error(rows_b.to_vector(), cross_entropy_rows(ld.data(), targets).to_vector()) <= 1e-6);
}

// ---------------------------------------------------------------- Simba scores and selection

TEST_CASE("bfloat16 Simba scores: float32 scores within float32 accuracy of float64, every criterion") {
  const int64_t B = 2, L = 40, n = 33, Di = 70, N = 5, W = 2 * N + 3;
  const Bf16Values u = uniform_bf16(B * L * Di, -1, 1, 71), delta = uniform_bf16(B * L * Di, 0.01, 0.2, 72);
  const Bf16Values A = uniform_bf16(Di * N, -2, -0.1, 73), xdbl = uniform_bf16(B * L * W, -1, 1, 74);
  for (SimbaCriterion c : {SimbaCriterion::Simba, SimbaCriterion::SimbaAbs, SimbaCriterion::SimbaL2}) {
    INFO(criterion_name(c));
    // B and C are column views of the x_proj output (row stride W), as the mixer passes them.
    std::vector<float> s = poison_f32(B * n);
    simba_scores_batch_cpu<bfloat16>(s.data(), {u.b.data(), Di}, {delta.b.data(), Di}, A.b.data(),
                                     {xdbl.b.data() + 3, W}, {xdbl.b.data() + 3 + N, W}, B, L, n, Di, N, c);
    std::vector<double> s64(B * n);
    simba_scores_batch_cpu<double>(s64.data(), {u.d.data(), Di}, {delta.d.data(), Di}, A.d.data(),
                                   {xdbl.d.data() + 3, W}, {xdbl.d.data() + 3 + N, W}, B, L, n, Di, N, c);
    // Float32 throughout: S (Q2) rounded to float, exp(A·S) with |A·S| <= 2·0.2·32 ≈ 13
    // amplifying that rounding 13-fold, the float exp_fast: ~1e-6 (bfloat16 would be 2e-3).
    CHECK(normwise_error(s, s64) <= 1e-5);
  }

  // The op: float32 scores for a bfloat16 trace.
  auto trace = [&](DType dt) {
    const Tensor x = tensor_of({B, L, W}, xdbl, dt);
    return MixerTrace{tensor_of({B, L, Di}, u, dt), tensor_of({B, L, Di}, delta, dt), tensor_of({Di, N}, A, dt),
                      x.narrow(2, 3, N), x.narrow(2, 3 + N, N)};
  };
  const Tensor sb = simba_scores(trace(DType::BF16), n, SimbaCriterion::Simba);
  REQUIRE(sb.dtype() == DType::F32);
  CHECK(normwise_error(sb.to_vector(), simba_scores(trace(DType::F64), n, SimbaCriterion::Simba).to_vector()) <= 1e-5);
}

TEST_CASE("Simba selection from bfloat16 scores is the selection of their exact values, ties and NaN included") {
  // A bfloat16 model's norm, clip and random scores are bfloat16: integer scores give many
  // ties (to the earlier position), NaN ranks as −∞.
  const int64_t B = 3, n = 70;
  std::vector<bfloat16> s(B * n);
  std::vector<double> s64(B * n);
  std::mt19937_64 gen(81);
  for (int64_t i = 0; i < B * n; ++i) {
    s[i] = bfloat16(std::uniform_int_distribution<int>(0, 6)(gen));
    s64[i] = static_cast<double>(s[i]);
  }
  s[5] = s[n + 9] = bfloat16(NAN);
  s64[5] = s64[n + 9] = NAN;
  std::vector<int64_t> kept(B * n);
  for (int64_t i = 0; i < B * n; ++i) kept[i] = 3 * (i % n) + i / n;  // any ascending rows
  for (int64_t k : {int64_t(1), int64_t(2), int64_t(17), n - 1, n}) {
    INFO("k = " << k);
    std::vector<int64_t> next(B * k, -1), next64(B * k, -2);
    simba_select_cpu<bfloat16>(next.data(), s.data(), kept.data(), B, n, k);
    simba_select_cpu<double>(next64.data(), s64.data(), kept.data(), B, n, k);
    CHECK(next == next64);
  }
}

// ---------------------------------------------------------------- optimisers stay full precision

TEST_CASE("optimisers and clip_grad_norm reject bfloat16, naming the parameter and the reason") {
  Variable p(Tensor::ones({3}, DType::BF16), true);
  const NamedVariables params{{"w", p}};
  const std::string a = error_of([&] { AdamW opt(params, AdamWOptions{}); });
  CHECK_MESSAGE(contains(a, "AdamW: parameter 'w' is bfloat16, expected float32 or float64"), a);
  CHECK_MESSAGE(contains(a, "optimiser state are kept in full precision"), a);
  CHECK_MESSAGE(contains(a, "float32 master weights"), a);
  const std::string s = error_of([&] { SGD opt({ParamGroup{params, 0.0}}, SGDOptions{}); });
  CHECK_MESSAGE(contains(s, "SGD: parameter 'w' is bfloat16, expected float32 or float64"), s);
  p.set_grad(Tensor::ones({3}, DType::BF16));
  const std::string c = error_of([&] { clip_grad_norm({p}, 1.0); });
  CHECK_MESSAGE(contains(c, "clip_grad_norm: the gradient of parameter 0 is bfloat16, expected float32 or float64"), c);
}
