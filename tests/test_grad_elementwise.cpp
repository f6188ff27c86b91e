// Finite-difference gradient checks (float64, random upstream gradient, autograd/gradcheck.h
// defaults: eps 1e-5, error |a−n|/max(|a|,|n|,1e-3) <= 1e-6) for pointwise ops, views and
// reductions, including broadcasting and non-contiguous inputs; plus float32 vs float64
// agreement of every forward.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"

using namespace simba;

namespace {

Tensor randn64(const Shape& s, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  Generator g(seed);
  return affine(randn(s, g, DType::F64), scale, shift);
}

void expect_ok(const GradcheckResult& r) {
  INFO("max error " << r.max_error << " at " << r.where);
  CHECK(r.checked > 0);
  CHECK(r.ok);
}

// Inputs kept where every op is smooth: log/sqrt/rsqrt/pow need x > 0, abs needs x away from 0.
Tensor positive(const Shape& s, uint64_t seed) { return affine(abs(randn64(s, seed)), 1.0, 0.5); }

}  // namespace

TEST_CASE("gradcheck: every unary op, on a permuted (non-contiguous) input") {
  const UnaryOp ops[] = {UnaryOp::Neg,  UnaryOp::Exp,     UnaryOp::Log,      UnaryOp::Log1p,
                         UnaryOp::Sqrt, UnaryOp::Rsqrt,   UnaryOp::Sigmoid,  UnaryOp::Silu,
                         UnaryOp::Softplus, UnaryOp::Abs, UnaryOp::Square};
  for (UnaryOp op : ops) {
    INFO("op " << unary_name(op));
    Tensor x = positive({3, 4}, 11);
    expect_ok(gradcheck([op](const std::vector<Variable>& v) { return unary(op, transpose(v[0], 0, 1)); }, {x}));
  }
  // softplus on both sides of its x > 20 switch, and silu/sigmoid on negative inputs.
  Tensor wide = Tensor::from_vector({6}, {-4.0, -1.0, 0.3, 19.5, 20.5, 30.0}, DType::F64);
  for (UnaryOp op : {UnaryOp::Softplus, UnaryOp::Silu, UnaryOp::Sigmoid}) {
    INFO("op " << unary_name(op));
    expect_ok(gradcheck([op](const std::vector<Variable>& v) { return unary(op, v[0]); }, {wide}));
  }
}

TEST_CASE("gradcheck: binary ops with broadcasting in both operands") {
  const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow};
  for (BinaryOp op : ops) {
    INFO("op " << static_cast<int>(op));
    Tensor a = positive({2, 1, 4}, 3);
    Tensor b = positive({3, 1}, 4);
    expect_ok(gradcheck([op](const std::vector<Variable>& v) { return binary(op, v[0], v[1]); }, {a, b}));
    // A sliced (strided) left operand against a 1-D right operand.
    Tensor c = positive({3, 6}, 5);
    Tensor d = positive({3}, 6);
    expect_ok(gradcheck([op](const std::vector<Variable>& v) { return binary(op, narrow(v[0], 1, 2, 3), v[1]); },
                        {c, d}));
  }
}

TEST_CASE("gradcheck: affine, scalar pow, clamp") {
  Tensor x = positive({5}, 8);
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return affine(v[0], -1.5, 0.25); }, {x}));
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return pow(v[0], 2.5); }, {x}));
  // Points away from the clamp corners (lo = 0.8, hi = 1.6), where it is differentiable.
  Tensor y = Tensor::from_vector({5}, {0.1, 0.9, 1.2, 1.5, 2.0}, DType::F64);
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return clamp(v[0], 0.8, 1.6); }, {y}));
}

TEST_CASE("gradcheck: views (reshape, permute, narrow, select, expand, unsqueeze, squeeze)") {
  Tensor x = randn64({2, 3, 4}, 21);
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return reshape(permute(v[0], {2, 0, 1}), {4, 6}); }, {x}));
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return narrow(v[0], 2, 1, 2); }, {x}));
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return select(v[0], 1, -1); }, {x}));
  Tensor s = randn64({3, 1}, 22);
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return expand(v[0], {2, 3, 5}); }, {s}));
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return squeeze(unsqueeze(v[0], 0), 2); }, {s}));
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return contiguous(transpose(v[0], 0, 2)); }, {x}));
}

TEST_CASE("gradcheck: reductions over a dim and over all, on non-contiguous inputs") {
  Tensor x = randn64({3, 4, 5}, 31);
  for (int d = -3; d < 3; ++d) {
    INFO("dim " << d);
    for (bool keep : {false, true}) {
      expect_ok(gradcheck([d, keep](const std::vector<Variable>& v) { return sum(permute(v[0], {1, 2, 0}), d, keep); }, {x}));
      expect_ok(gradcheck([d, keep](const std::vector<Variable>& v) { return mean(v[0], d, keep); }, {x}));
      expect_ok(gradcheck([d, keep](const std::vector<Variable>& v) { return max(transpose(v[0], 0, 1), d, keep); }, {x}));
    }
  }
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return sum(narrow(v[0], 1, 1, 2)); }, {x}));
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return mean(v[0]); }, {x}));
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return max(v[0]); }, {x}));
}

TEST_CASE("gradcheck catches a wrong gradient") {
  // A deliberately wrong op: forward exp, backward claims 2·exp.
  auto wrong = [](const std::vector<Variable>& v) {
    Tensor xs = v[0].data();
    Tensor y = exp(xs);
    return make_result(y, "wrong", {v[0]}, [y](const Tensor& g) -> std::vector<Tensor> { return {mul(g, y) * 2.0}; });
  };
  GradcheckResult r = gradcheck(wrong, {randn64({4}, 41)});
  CHECK(!r.ok);
  CHECK(r.max_error > 0.1);
  CHECK(r.where.find("input 0") != std::string::npos);
}

TEST_CASE("unary_backward reads only what unary_reads names: NaN in the other argument changes nothing") {
  // An autograd node keeps only the tensor unary_reads names and passes it in both places
  // (autograd/elementwise_ops.cpp); a derivative that read the other one would go wrong there.
  const UnaryOp ops[] = {UnaryOp::Neg,  UnaryOp::Exp,      UnaryOp::Log, UnaryOp::Log1p,
                         UnaryOp::Sqrt, UnaryOp::Rsqrt,    UnaryOp::Sigmoid, UnaryOp::Silu,
                         UnaryOp::Softplus, UnaryOp::Abs, UnaryOp::Square};
  for (DType dt : {DType::F64, DType::F32}) {
    const Tensor x = positive({3, 5}, 61).to(dt), g = randn64({3, 5}, 62).to(dt);
    const Tensor nan = Tensor::full({3, 5}, std::nan(""), dt);
    for (UnaryOp op : ops) {
      INFO(unary_name(op) << " " << dtype_name(dt));
      const Tensor y = unary(op, x);
      const std::vector<double> full = unary_backward(op, g, x, y).to_vector();
      const UnaryReads reads = unary_reads(op);
      const Tensor& xs = reads == UnaryReads::Input ? x : nan;
      const Tensor& ys = reads == UnaryReads::Output ? y : nan;
      const std::vector<double> got = unary_backward(op, g, xs, ys).to_vector();
      for (double v : full) REQUIRE(std::isfinite(v));
      CHECK(got == full);
    }
  }
}

TEST_CASE("softplus' gradient from its output is sigmoid(x) to float32 rounding, over its whole range") {
  // The node keeps y = softplus(x), not x (unary_reads), and forms σ(x) = 1 − e^(−y): in float32
  // on the host by a series below y = 1/4 (x ≈ −1.25) and exp above, so both sides of that
  // switch, the x > 20 rule, and tails where σ is tiny (x = −40: y ≈ 4e-18) or rounds to 1.
  std::vector<double> xs;
  for (double x = -40.0; x <= 40.0; x += 0.0625) xs.push_back(x);
  for (double x : {-1.2532, -1.2531, 19.999, 20.0, 20.001}) xs.push_back(x);
  const int64_t n = int64_t(xs.size());
  const Tensor x32 = Tensor::from_vector({n}, xs, DType::F32);
  const Tensor y32 = softplus(x32), ones = Tensor::full({n}, 1.0, DType::F32);
  REQUIRE(unary_reads(UnaryOp::Softplus) == UnaryReads::Output);
  const std::vector<double> got = unary_backward(UnaryOp::Softplus, ones, y32, y32).to_vector();
  const std::vector<double> x_rounded = x32.to_vector();
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double sigma = 1.0 / (1.0 + std::exp(-x_rounded[i]));
    worst = std::max(worst, std::fabs(got[i] - sigma) / sigma);
  }
  CHECK(worst <= 1e-6);
  // Through autograd: the gradient of sum(softplus(x)) is σ(x), float64 to 1e-15.
  const Tensor x64 = Tensor::from_vector({n}, xs, DType::F64);
  Variable v(x64, true);
  sum(softplus(v)).backward();
  const std::vector<double> g64 = v.grad().to_vector();
  double worst64 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double sigma = 1.0 / (1.0 + std::exp(-xs[i]));
    worst64 = std::max(worst64, std::fabs(g64[i] - sigma) / sigma);
  }
  CHECK(worst64 <= 1e-14);
}

TEST_CASE("float32 forwards agree with the float64 reference") {
  // Tolerance: |f32 − f64| <= 1e-6·(1 + |f64|): a few float32 ulps of the result.
  Tensor a64 = positive({4, 5}, 51), b64 = positive({5}, 52);
  Tensor a32 = a64.to(DType::F32), b32 = b64.to(DType::F32);
  auto close = [](const Tensor& t32, const Tensor& t64) {
    auto v32 = t32.to_vector(), v64 = t64.to_vector();
    REQUIRE(v32.size() == v64.size());
    double worst = 0;
    for (size_t i = 0; i < v32.size(); ++i) worst = std::max(worst, std::fabs(v32[i] - v64[i]) / (1 + std::fabs(v64[i])));
    CHECK(worst <= 1e-6);
  };
  const UnaryOp unaries[] = {UnaryOp::Neg,  UnaryOp::Exp,     UnaryOp::Log,      UnaryOp::Log1p,
                             UnaryOp::Sqrt, UnaryOp::Rsqrt,   UnaryOp::Sigmoid,  UnaryOp::Silu,
                             UnaryOp::Softplus, UnaryOp::Abs, UnaryOp::Square};
  // Inputs rounded to float32 first, so both dtypes see the same values.
  Tensor a = a32.to(DType::F64), b = b32.to(DType::F64);
  for (UnaryOp op : unaries) {
    INFO(unary_name(op));
    close(unary(op, a32), unary(op, a));
  }
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow})
    close(binary(op, a32, b32), binary(op, a, b));
  close(sum(a32, 1), sum(a, 1));
  close(mean(a32, 0), mean(a, 0));
  close(max(a32, 1).values, max(a, 1).values);
  close(sum(a32), sum(a));
  close(clamp(a32, 0.7, 1.5), clamp(a, 0.7, 1.5));
  close(pow(a32, 1.7), pow(a, 1.7));
}
