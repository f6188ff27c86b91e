// tests/test_nn_layers.cpp: the neural-network layers of nn/ (Linear, Embedding, RMSNorm,
// causal depthwise conv1d, cross-entropy) and the init rules.
//
// 1. Gradients: float64 central differences through autograd/gradcheck.h (random upstream
//    gradient, eps 1e-5, error |a−n| / max(|a|, |n|, 1e-3) <= 1e-6) for every layer and
//    every differentiable input, including strided (column-view) conv inputs and edge sizes.
// 2. Forward values equal plain loops written here from the defining equations.
// 3. The OpenMP kernels equal the plain loops on sizes above the parallel threshold, and
//    their weight reductions are bit-identical for 1 and 2 threads.
// 4. float32 agrees with float64 (normwise relative error, tolerances stated per check).
// 5. Recurrent conv steps reproduce the full convolution; module names; error messages; init.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "nn/causal_conv1d.h"
#include "nn/cross_entropy.h"
#include "nn/embedding.h"
#include "nn/init.h"
#include "nn/linear.h"
#include "nn/rmsnorm.h"
#include "tensor/index.h"
#include "test_util.h"

using namespace simba;

namespace {

Tensor randn64(const Shape& s, uint64_t seed, double scale = 1.0) {
  Generator g(seed);
  return affine(randn(s, g, DType::F64), scale, 0.0);
}

void expect_ok(const GradcheckResult& r) {
  INFO("max error " << r.max_error << " at " << r.where);
  CHECK(r.checked > 0);
  CHECK(r.ok);
}

// max|a − b| / max|b|: normwise relative error of a against the reference b.
double rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(a[i] - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return den > 0 ? num / den : num;
}
double rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return rel_diff(a.to_vector(), b.to_vector());
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

// ---- plain-loop references, written from each layer's defining equation ----

// out[b,t,c] = bias[c] + Σ_k w[c,0,k]·x[b, t−(K−1)+k, c], zero left padding.
std::vector<double> conv_ref(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const int64_t B = x.size(0), L = x.size(1), C = x.size(2), K = w.size(2);
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector();
  const std::vector<double> bv = bias.defined() ? bias.to_vector() : std::vector<double>(C, 0.0);
  std::vector<double> out(B * L * C);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < C; ++c) {
        double acc = bv[c];
        for (int64_t k = 0; k < K; ++k) {
          const int64_t s = t - (K - 1) + k;
          if (s >= 0) acc += wv[c * K + k] * xv[(b * L + s) * C + c];
        }
        out[(b * L + t) * C + c] = acc;
      }
  return out;
}

// Gradients of conv_ref for upstream g, by the chain rule term by term.
void conv_backward_ref(std::vector<double>& dx, std::vector<double>& dw, std::vector<double>& db, const Tensor& g,
                       const Tensor& x, const Tensor& w) {
  const int64_t B = x.size(0), L = x.size(1), C = x.size(2), K = w.size(2);
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector(), gv = g.to_vector();
  dx.assign(B * L * C, 0.0);
  dw.assign(C * K, 0.0);
  db.assign(C, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < C; ++c) {
        const double gi = gv[(b * L + t) * C + c];
        db[c] += gi;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t s = t - (K - 1) + k;
          if (s < 0) continue;
          dx[(b * L + s) * C + c] += wv[c * K + k] * gi;
          dw[c * K + k] += xv[(b * L + s) * C + c] * gi;
        }
      }
}

// y = x / sqrt(mean(x²) + eps) · w over the last dim.
std::vector<double> rmsnorm_ref(const Tensor& x, const Tensor& w, double eps) {
  const int64_t D = x.size(-1), rows = x.numel() / D;
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector();
  std::vector<double> y(xv.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t j = 0; j < D; ++j) ss += xv[r * D + j] * xv[r * D + j];
    const double s = 1.0 / std::sqrt(ss / D + eps);
    for (int64_t j = 0; j < D; ++j) y[r * D + j] = xv[r * D + j] * s * wv[j];
  }
  return y;
}

// −log softmax(z)[target] per row, ignored rows 0; the max shift keeps big logits finite.
std::vector<double> cross_entropy_ref(const Tensor& logits, const std::vector<int64_t>& targets, int64_t ignore) {
  const int64_t V = logits.size(-1), rows = logits.numel() / V;
  const std::vector<double> z = logits.to_vector();
  std::vector<double> loss(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == ignore) continue;
    double m = z[r * V];
    for (int64_t v = 0; v < V; ++v) m = std::max(m, z[r * V + v]);
    double s = 0.0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(z[r * V + v] - m);
    loss[r] = m + std::log(s) - z[r * V + targets[r]];
  }
  return loss;
}

// Runs f on float32 copies of float64 inputs and returns (forward error, worst gradient error)
// against the float64 run, both normwise relative; g is the float64 upstream gradient.
struct F32Agreement {
  double forward = 0.0, gradient = 0.0;
};
F32Agreement f32_vs_f64(const std::function<Variable(const std::vector<Variable>&)>& f,
                        const std::vector<Tensor>& inputs64, uint64_t seed) {
  std::vector<Variable> v64, v32;
  for (const Tensor& t : inputs64) {
    v64.emplace_back(t.clone(), true);
    v32.emplace_back(t.to(DType::F32), true);
  }
  Variable y64 = f(v64), y32 = f(v32);
  REQUIRE(y32.dtype() == DType::F32);
  Generator gen(seed);
  Tensor g = randn(y64.shape(), gen, DType::F64);
  y64.backward(g);
  y32.backward(g.to(DType::F32));
  F32Agreement r;
  r.forward = rel_diff(y32.data(), y64.data());
  for (size_t i = 0; i < v64.size(); ++i) r.gradient = std::max(r.gradient, rel_diff(v32[i].grad(), v64[i].grad()));
  return r;
}

void set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}
int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace

// ---------------------------------------------------------------- Linear

TEST_CASE("gradcheck: linear with and without bias on a 3-D input") {
  Tensor x = randn64({2, 3, 4}, 1), w = randn64({5, 4}, 2), b = randn64({5}, 3);
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return linear(v[0], v[1], v[2]); }, {x, w, b}));
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return linear(v[0], v[1], Variable()); }, {x, w}));
  // A non-contiguous input (its rows are copied once) and a frozen weight.
  Tensor xt = randn64({4, 3, 2}, 4);
  GradcheckOptions only_x;
  only_x.check = {true, false, true};
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return linear(permute(v[0], {2, 1, 0}), v[1], v[2]); },
                      {xt, w, b}, only_x));
}

TEST_CASE("Linear: forward equals x·Wᵀ + b in plain loops; float32 agrees with float64") {
  Generator g(7);
  Linear lin(4, 3, true, &g, DType::F64);
  Tensor x = randn64({2, 5, 4}, 8);
  Tensor y = lin.forward(Variable(x)).data();
  CHECK(y.shape() == Shape{2, 5, 3});
  const std::vector<double> xv = x.to_vector(), wv = lin.weight.data().to_vector(), bv = lin.bias.data().to_vector();
  std::vector<double> ref(2 * 5 * 3);
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t o = 0; o < 3; ++o) {
      double acc = bv[o];
      for (int64_t i = 0; i < 4; ++i) acc += xv[r * 4 + i] * wv[o * 4 + i];
      ref[r * 3 + o] = acc;
    }
  CHECK(rel_diff(y.to_vector(), ref) < 1e-14);

  // float32: a K = 64 dot product loses ~1e-7 relative per term; 1e-5 leaves room.
  F32Agreement a = f32_vs_f64([](const std::vector<Variable>& v) { return linear(v[0], v[1], v[2]); },
                              {randn64({3, 4, 64}, 9), randn64({16, 64}, 10), randn64({16}, 11)}, 12);
  INFO("forward " << a.forward << ", gradient " << a.gradient);
  CHECK(a.forward < 1e-5);
  CHECK(a.gradient < 1e-5);
}

TEST_CASE("Linear: a wrong input width names both shapes; no bias means no bias parameter") {
  Generator g(1);
  Linear lin(4, 6, false, &g);
  Variable x(Tensor::zeros({2, 3, 5}));
  const std::string msg = error_of([&] { lin.forward(x); });
  CHECK(msg.find("(2, 3, 5)") != std::string::npos);
  CHECK(msg.find("(6, 4)") != std::string::npos);
  CHECK(lin.named_parameters().size() == 1);
  CHECK(!lin.bias.defined());
  CHECK(error_of([&] { linear(Variable(Tensor::zeros({2, 4})), lin.weight, Variable(Tensor::zeros({5}))); })
            .find("bias of shape (5,)") != std::string::npos);
}

// ---------------------------------------------------------------- Embedding

TEST_CASE("gradcheck: embedding with repeated ids; Embedding forward copies the rows") {
  Tensor w = randn64({5, 3}, 21);
  Tensor ids = Tensor::from_ints({2, 3}, {1, 3, 1, 1, 0, 3});
  expect_ok(gradcheck([ids](const std::vector<Variable>& v) { return embedding(v[0], ids); }, {w}));

  // The gradient of a repeated row is the sum of its upstream rows (here 3 × row 1).
  Variable wv(w, true);
  embedding(wv, ids).backward(Tensor::ones({2, 3, 3}, DType::F64));
  CHECK(wv.grad().at({1, 0}) == 3.0);
  CHECK(wv.grad().at({2, 0}) == 0.0);

  Generator g(5);
  Embedding emb(5, 3, &g, DType::F64);
  Tensor y = emb.forward(ids).data();
  CHECK(y.shape() == Shape{2, 3, 3});
  for (int64_t j = 0; j < 3; ++j) CHECK(y.at({1, 2, j}) == emb.weight.data().at({3, j}));
  CHECK(error_of([&] { emb.forward(Tensor::zeros({2}, DType::F32)); }).find("int64") != std::string::npos);

  // float32 rows are the float64 rows rounded: exact agreement after the cast.
  F32Agreement a = f32_vs_f64([ids](const std::vector<Variable>& v) { return embedding(v[0], ids); }, {w}, 22);
  CHECK(a.forward < 1e-7);
  CHECK(a.gradient < 1e-7);
}

// ---------------------------------------------------------------- RMSNorm

TEST_CASE("gradcheck: rms_norm in x and weight") {
  Tensor x = randn64({2, 3, 8}, 31), w = randn64({8}, 32);
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return rms_norm(v[0], v[1], 1e-5); }, {x, w}));
  // Large eps makes the eps term matter in the derivative; a transposed input; weight frozen.
  GradcheckOptions only_x;
  only_x.check = {true, false};
  Tensor xt = randn64({8, 4}, 33, 0.1);
  expect_ok(gradcheck([](const std::vector<Variable>& v) { return rms_norm(transpose(v[0], 0, 1), v[1], 0.5); },
                      {xt, w}, only_x));
}

TEST_CASE("RMSNorm: forward equals plain loops; module default weight is ones; float32 agrees") {
  Tensor x = randn64({3, 4, 16}, 41), w = randn64({16}, 42);
  Tensor y = rms_norm(Variable(x), Variable(w), 1e-5).data();
  CHECK(rel_diff(y.to_vector(), rmsnorm_ref(x, w, 1e-5)) < 1e-14);

  RMSNorm norm(16);
  CHECK(norm.weight.data().to_vector() == std::vector<double>(16, 1.0));
  CHECK(norm.eps == 1e-5);
  CHECK(error_of([&] { norm.forward(Variable(Tensor::zeros({2, 15}))); }).find("(2, 15)") != std::string::npos);

  // float32: per-row sums of 128 squares (accumulated in double) then one rsqrt: ~1e-7.
  F32Agreement a = f32_vs_f64([](const std::vector<Variable>& v) { return rms_norm(v[0], v[1], 1e-5); },
                              {randn64({4, 5, 128}, 43), randn64({128}, 44)}, 45);
  INFO("forward " << a.forward << ", gradient " << a.gradient);
  CHECK(a.forward < 1e-6);
  CHECK(a.gradient < 1e-5);
}

TEST_CASE("add_rmsnorm_forward (ref, cpu) and add_rms_norm_ equal the add then the norm, bit for bit") {
  const int64_t rows = 37, D = 130;
  for (const DType dt : {DType::F32, DType::F64, DType::BF16}) {
    INFO(dtype_name(dt));
    const Tensor x = randn64({rows, D}, 301).to(dt), a = randn64({rows, D}, 302).to(dt);
    const Tensor w = randn64({D}, 303).to(dt);
    const Tensor sum = add(x, a);
    const Tensor want = rms_norm(Variable(sum), Variable(w), 1e-5).data();
    Tensor xs = x.clone();
    const Tensor got = add_rms_norm_(xs, a, w, 1e-5);
    CHECK(xs.to_vector() == sum.to_vector());
    CHECK(got.to_vector() == want.to_vector());
    if (dt == DType::BF16) continue;  // the reference takes float32 and float64
    SIMBA_DISPATCH_FLOAT(dt, "test", [&] {
      using T = scalar_t;
      Tensor xr = x.clone(), y = Tensor::empty({rows, D}, dt), rstd = Tensor::empty({rows}, dt);
      add_rmsnorm_forward_ref<T>(y.data<T>(), rstd.data<T>(), xr.data<T>(), a.data<T>(), w.data<T>(), rows, D, 1e-5);
      std::vector<double> y_ref(rows * D), rstd_ref(rows);
      const std::vector<double> s64 = sum.to_vector(), w64 = w.to_vector();
      rmsnorm_forward_ref<double>(y_ref.data(), rstd_ref.data(), s64.data(), w64.data(), rows, D, 1e-5);
      CHECK(xr.to_vector() == s64);
      CHECK(rel_diff(y.to_vector(), y_ref) < (dt == DType::F32 ? 1e-6 : 1e-14));
    });
  }
  Tensor x = randn64({2, 4}, 1);
  CHECK(contains(error_of([&] { add_rms_norm_(x, randn64({2, 5}, 2), randn64({4}, 3), 1e-5); }), "(2, 5)"));
}

TEST_CASE("gather_rmsnorm_forward (ref, cpu) and gather_rms_norm equal index_select then the norm, bit for bit") {
  const int64_t S = 41, D = 130;
  const Tensor rows = Tensor::from_ints({6}, {40, 0, 7, 7, 19, 3});  // any order, repeats allowed
  for (const DType dt : {DType::F32, DType::F64, DType::BF16}) {
    INFO(dtype_name(dt));
    const Tensor x = randn64({S, D}, 311).to(dt), w = randn64({D}, 312).to(dt);
    const Tensor want = rms_norm(Variable(index_select(x, 0, rows)), Variable(w), 1e-5).data();
    CHECK(gather_rms_norm(x, rows, w, 1e-5).to_vector() == want.to_vector());
    if (dt == DType::BF16) continue;  // the reference takes float32 and float64
    SIMBA_DISPATCH_FLOAT(dt, "test", [&] {
      using T = scalar_t;
      const Tensor g = index_select(x, 0, rows);
      Tensor y = Tensor::full({6, D}, std::nan(""), dt), rstd = Tensor::full({6}, std::nan(""), dt);
      Tensor y_ref = Tensor::empty({6, D}, dt), rstd_ref = Tensor::empty({6}, dt);
      gather_rmsnorm_forward_ref<T>(y.data<T>(), rstd.data<T>(), x.data<T>(), rows.data<int64_t>(), w.data<T>(), 6, S,
                                    D, 1e-5);
      rmsnorm_forward_ref<T>(y_ref.data<T>(), rstd_ref.data<T>(), g.data<T>(), w.data<T>(), 6, D, 1e-5);
      CHECK(y.to_vector() == y_ref.to_vector());
      CHECK(rstd.to_vector() == rstd_ref.to_vector());
    });
  }
  // A row outside [0, S): an error naming it, before anything is written.
  const Tensor x = randn64({S, D}, 313), w = randn64({D}, 314);
  for (const int64_t bad : {int64_t(-1), S}) {
    std::vector<double> y(2 * D, 7.0), rstd(2, 7.0);
    const int64_t idx[2] = {3, bad};
    const std::string m = error_of([&] {
      gather_rmsnorm_forward_cpu<double>(y.data(), rstd.data(), x.data<double>(), idx, w.data<double>(), 2, S, D, 1e-5);
    });
    CHECK_MESSAGE(contains(m, "gather_rmsnorm_forward_cpu: rows[1] = " + std::to_string(bad) +
                                  " out of range (expected 0 <= row < 41)"),
                  m);
    CHECK(y == std::vector<double>(2 * D, 7.0));
  }
  CHECK(contains(error_of([&] { gather_rms_norm(x.transpose(0, 1), rows, w, 1e-5); }), "contiguous (S, D)"));
  // Bad calls name what was expected: rows of another dtype or rank, a weight of another size,
  // rows asked of an empty x, and a row out of range through the tensor API.
  CHECK(contains(error_of([&] { gather_rms_norm(x, randn64({6}, 315), w, 1e-5); }), "rows must be a 1-D int64"));
  CHECK(contains(error_of([&] { gather_rms_norm(x, rows.reshape({2, 3}), w, 1e-5); }), "rows must be a 1-D int64"));
  CHECK(contains(error_of([&] { gather_rms_norm(x, rows, randn64({D + 1}, 316), 1e-5); }), "for rows of 130"));
  CHECK(contains(error_of([&] { gather_rms_norm(randn64({0, D}, 317), rows, w, 1e-5); }), "6 rows asked of an x"));
  CHECK(contains(error_of([&] { gather_rms_norm(x, Tensor::from_ints({2}, {1, 41}), w, 1e-5); }),
                 "rows[1] = 41 out of range (expected 0 <= row < 41)"));
}

TEST_CASE("RMSNorm kernels: OpenMP path equals plain loops; dw is bit-identical for 1 and 2 threads") {
  // rows·D = 60000 > the parallel grain, and 600 rows span 19 dw chunks (the last one partial).
  const int64_t rows = 600, D = 100;
  Tensor x = randn64({rows, D}, 51), w = randn64({D}, 52), dy = randn64({rows, D}, 53);
  const double eps = 1e-5;
  std::vector<double> y(rows * D), rstd(rows);
  rmsnorm_forward_cpu<double>(y.data(), rstd.data(), x.data<double>(), w.data<double>(), rows, D, eps);
  CHECK(rel_diff(y, rmsnorm_ref(x, w, eps)) < 1e-14);

  // Plain-loop backward from the derivative dx_k = s·w_k·dy_k − s³·x_k/D·Σ_j dy_j·w_j·x_j.
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector(), gv = dy.to_vector();
  std::vector<double> dx_ref(rows * D), dw_ref(D, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0, dot = 0.0;
    for (int64_t j = 0; j < D; ++j) {
      ss += xv[r * D + j] * xv[r * D + j];
      dot += gv[r * D + j] * wv[j] * xv[r * D + j];
    }
    const double s = 1.0 / std::sqrt(ss / D + eps);
    for (int64_t j = 0; j < D; ++j) {
      dx_ref[r * D + j] = s * wv[j] * gv[r * D + j] - s * s * s * xv[r * D + j] / D * dot;
      dw_ref[j] += gv[r * D + j] * xv[r * D + j] * s;
    }
  }
  std::vector<double> dx(rows * D), dw(D);
  rmsnorm_backward_cpu<double>(dx.data(), dw.data(), dy.data<double>(), x.data<double>(), w.data<double>(), rstd.data(),
                           rows, D, false);
  CHECK(rel_diff(dx, dx_ref) < 1e-13);
  CHECK(rel_diff(dw, dw_ref) < 1e-13);

  // float32 kernels: same threads-independence, checked bit for bit.
  Tensor x32 = x.to(DType::F32), w32 = w.to(DType::F32), dy32 = dy.to(DType::F32);
  std::vector<float> y32(rows * D), r32(rows), dx1(rows * D), dw1(D), dx2(rows * D), dw2(D);
  rmsnorm_forward_cpu<float>(y32.data(), r32.data(), x32.data<float>(), w32.data<float>(), rows, D, eps);
  const int threads = max_threads();
  set_threads(1);
  rmsnorm_backward_cpu<float>(dx1.data(), dw1.data(), dy32.data<float>(), x32.data<float>(), w32.data<float>(), r32.data(),
                          rows, D, false);
  set_threads(2);
  rmsnorm_backward_cpu<float>(dx2.data(), dw2.data(), dy32.data<float>(), x32.data<float>(), w32.data<float>(), r32.data(),
                          rows, D, false);
  set_threads(threads);
  CHECK(dw1 == dw2);
  CHECK(dx1 == dx2);
  CHECK(rel_diff(std::vector<double>(dw1.begin(), dw1.end()), dw_ref) < 1e-5);

  // add_dx: dx holds a gradient already (random, not zeros) and gets the norm's added, in the
  // reference and the fast kernel alike; dw is unchanged by it.
  std::mt19937_64 gen(77);
  std::normal_distribution<double> normal;
  std::vector<double> prior(rows * D), expect(rows * D);
  for (int64_t i = 0; i < rows * D; ++i) prior[i] = normal(gen), expect[i] = prior[i] + dx_ref[i];
  for (bool fast : {false, true}) {
    INFO((fast ? "cpu" : "ref"));
    std::vector<double> dxa = prior, dwa(D);
    if (fast)
      rmsnorm_backward_cpu<double>(dxa.data(), dwa.data(), dy.data<double>(), x.data<double>(), w.data<double>(),
                                   rstd.data(), rows, D, true);
    else
      rmsnorm_backward_ref<double>(dxa.data(), dwa.data(), dy.data<double>(), x.data<double>(), w.data<double>(),
                                   rstd.data(), rows, D, true);
    CHECK(rel_diff(dxa, expect) < 1e-13);
    CHECK(rel_diff(dwa, dw_ref) < 1e-13);
  }
}

// ---------------------------------------------------------------- causal conv1d

// No rows (RMSNorm) or no steps (the conv): the weight gradients are sums over nothing, zeros,
// where the kernels that fill them whole have nothing to write.
TEST_CASE("rms_norm and causal_conv1d(_silu) over no rows or steps give zero weight gradients") {
  Variable w(randn64({4}, 41), true), x(Tensor::empty({0, 4}, DType::F64), true);
  rms_norm(x, w, 1e-5).backward(Tensor::empty({0, 4}, DType::F64));
  CHECK(w.grad().to_vector() == std::vector<double>(4, 0.0));
  for (bool silu : {false, true}) {
    INFO("silu " << silu);
    Variable cw(randn64({3, 1, 4}, 42), true), cb(randn64({3}, 43), true);
    Variable cx(Tensor::empty({2, 0, 3}, DType::F64), true);
    (silu ? causal_conv1d_silu(cx, cw, cb) : causal_conv1d(cx, cw, cb)).backward(Tensor::empty({2, 0, 3}, DType::F64));
    CHECK(cw.grad().to_vector() == std::vector<double>(12, 0.0));
    CHECK(cb.grad().to_vector() == std::vector<double>(3, 0.0));
  }
}

TEST_CASE("gradcheck: causal_conv1d in x, weight and bias over edge sizes") {
  struct Case {
    int64_t B, L, C, K;
  };
  // K = 4 (Mamba), K = 1 (no history), L < K, L = 1.
  for (Case c : {Case{2, 7, 5, 4}, Case{2, 5, 3, 1}, Case{2, 2, 3, 4}, Case{3, 1, 4, 4}}) {
    INFO("B " << c.B << " L " << c.L << " C " << c.C << " K " << c.K);
    Tensor x = randn64({c.B, c.L, c.C}, 61), w = randn64({c.C, 1, c.K}, 62), b = randn64({c.C}, 63);
    expect_ok(gradcheck([](const std::vector<Variable>& v) { return causal_conv1d(v[0], v[1], v[2]); }, {x, w, b}));
    expect_ok(gradcheck([](const std::vector<Variable>& v) { return causal_conv1d(v[0], v[1], Variable()); }, {x, w}));
  }
}

TEST_CASE("gradcheck: causal_conv1d_silu (the mixer's conv + SiLU, conv recomputed in backward) over edge sizes") {
  struct Case {
    int64_t B, L, C, K;
  };
  for (Case c : {Case{2, 7, 5, 4}, Case{2, 2, 3, 4}, Case{3, 1, 4, 1}}) {
    INFO("B " << c.B << " L " << c.L << " C " << c.C << " K " << c.K);
    Tensor x = randn64({c.B, c.L, c.C}, 64), w = randn64({c.C, 1, c.K}, 65), b = randn64({c.C}, 66);
    expect_ok(gradcheck([](const std::vector<Variable>& v) { return causal_conv1d_silu(v[0], v[1], v[2]); }, {x, w, b}));
    expect_ok(gradcheck([](const std::vector<Variable>& v) { return causal_conv1d_silu(v[0], v[1], Variable()); },
                        {x, w}));
  }
}

// In bfloat16 the fused forward applies SiLU to the float accumulator and rounds once, where
// silu(causal_conv1d) rounds the convolution first: its output is instead the float32 pipeline
// on the same (widened) values, rounded once, bit for bit; its backward takes SiLU's derivative
// at the unrounded sum too (causal_conv1d_silu_grad), so its gradients are within bfloat16
// rounding of silu(causal_conv1d)'s. In float32 every output and gradient is the same bits.
TEST_CASE("causal_conv1d_silu: the bits of silu(causal_conv1d); in bfloat16 its float32 value rounded once") {
  for (DType dt : {DType::F32, DType::BF16}) {
    INFO(std::string(dtype_name(dt)));
    const int64_t B = 2, L = 11, C = 6, K = 4;
    const Tensor x = randn64({B, L, C}, 91).to(dt), w = randn64({C, 1, K}, 92, 0.5).to(dt);
    const Tensor b = randn64({C}, 93, 0.5).to(dt), g = randn64({B, L, C}, 94).to(dt);
    auto run = [&](bool fused) {
      Variable xv(x.clone(), true), wv(w.clone(), true), bv(b.clone(), true);
      Variable y = fused ? causal_conv1d_silu(xv, wv, bv) : silu(causal_conv1d(xv, wv, bv));
      y.backward(g);
      return std::vector<Tensor>{y.data(), xv.grad(), wv.grad(), bv.grad()};
    };
    const std::vector<Tensor> fused = run(true), plain = run(false);
    for (size_t i = 0; i < fused.size(); ++i) {
      INFO("output " << i << " (y, dx, dw, dbias)");
      if (dt == DType::BF16 && i == 0) {
        const Tensor once = silu(causal_conv1d(Variable(x.to(DType::F32)), Variable(w.to(DType::F32)),
                                               Variable(b.to(DType::F32))))
                                .data()
                                .to(DType::BF16);
        CHECK(fused[i].to_vector() == once.to_vector());
        CHECK(rel_diff(fused[i], plain[i]) < 1.0 / 128);  // and one bfloat16 rounding from plain's
      } else if (dt == DType::BF16) {
        CHECK(rel_diff(fused[i], plain[i]) < 1.0 / 64);  // SiLU' at the sum, or at its rounding
      } else {
        CHECK(fused[i].to_vector() == plain[i].to_vector());
      }
    }
  }
}

TEST_CASE("gradcheck: causal_conv1d on a strided column view (the first half of in_proj's output)") {
  const int64_t B = 2, L = 6, C = 3, K = 4;
  Tensor x2 = randn64({B, L, 2 * C}, 71), w = randn64({C, 1, K}, 72), b = randn64({C}, 73);
  // The narrow happens inside f, so the kernel reads a view with row stride 2C; the second
  // half of x2 must get a zero gradient.
  expect_ok(gradcheck(
      [C](const std::vector<Variable>& v) { return causal_conv1d(narrow(v[0], -1, 0, C), v[1], v[2]); }, {x2, w, b}));
  // Only weight and bias trainable: the kernel skips dx.
  GradcheckOptions params_only;
  params_only.check = {false, true, true};
  expect_ok(gradcheck(
      [C](const std::vector<Variable>& v) { return causal_conv1d(narrow(v[0], -1, C, C), v[1], v[2]); }, {x2, w, b},
      params_only));
}

TEST_CASE("causal_conv1d: forward equals plain loops, incl. strided input and no bias; float32 agrees") {
  const int64_t B = 2, L = 9, C = 5, K = 4;
  Tensor x2 = randn64({B, L, 2 * C}, 81), w = randn64({C, 1, K}, 82), b = randn64({C}, 83);
  Tensor x = x2.narrow(-1, C, C);
  CHECK(x.stride(1) == 2 * C);
  Tensor y = causal_conv1d(Variable(x), Variable(w), Variable(b)).data();
  CHECK(rel_diff(y.to_vector(), conv_ref(x, w, b)) < 1e-14);
  Tensor y0 = causal_conv1d(Variable(x), Variable(w), Variable()).data();
  CHECK(rel_diff(y0.to_vector(), conv_ref(x, w, Tensor())) < 1e-14);
  // Causality: changing x at time 5 leaves outputs before 5 untouched.
  Tensor xc = x.clone();
  xc.narrow(1, 5, 1).fill_(100.0);
  Tensor yc = causal_conv1d(Variable(xc), Variable(w), Variable(b)).data();
  CHECK(rel_diff(yc.narrow(1, 0, 5).contiguous(), y.narrow(1, 0, 5).contiguous()) == 0.0);
  CHECK(rel_diff(yc.narrow(1, 5, 1).contiguous(), y.narrow(1, 5, 1).contiguous()) > 1.0);

  // float32: K = 4 products per output; 1e-6 normwise.
  F32Agreement a = f32_vs_f64([](const std::vector<Variable>& v) { return causal_conv1d(v[0], v[1], v[2]); },
                              {randn64({3, 20, 70}, 84), randn64({70, 1, 4}, 85), randn64({70}, 86)}, 87);
  INFO("forward " << a.forward << ", gradient " << a.gradient);
  CHECK(a.forward < 1e-6);
  CHECK(a.gradient < 1e-5);

  Generator gen(1);
  CausalConv1d conv(5, 4, true, &gen);
  const std::string msg = error_of([&] { conv.forward(Variable(Tensor::zeros({2, 3, 6}))); });
  CHECK(msg.find("(2, 3, 6)") != std::string::npos);
  Tensor channels_strided = randn64({B, C, L}, 88).transpose(1, 2);  // (B, L, C), channel stride L
  CHECK(error_of([&] { causal_conv1d(Variable(channels_strided), Variable(w), Variable(b)); })
            .find("channel stride") != std::string::npos);
}

TEST_CASE("causal_conv1d kernels: OpenMP path equals plain loops; dw, dbias bit-identical for 1 and 2 threads") {
  // B·L·C·K = 360000 > the parallel grain; C = 150 is two full channel blocks and a partial one.
  const int64_t B = 3, L = 200, C = 150, K = 4, ld = 2 * C + 7;
  Tensor xbuf = randn64({B, L, ld}, 91), w = randn64({C, 1, K}, 92), b = randn64({C}, 93), g = randn64({B, L, C}, 94);
  Tensor x = xbuf.narrow(-1, 3, C);  // row stride ld, batch stride L·ld, offset 3
  std::vector<double> out(B * L * C);
  causal_conv1d_forward_cpu<double>(out.data(), x.data<double>(), w.data<double>(), b.data<double>(), B, L, C, K,
                                x.stride(0), x.stride(1));
  CHECK(rel_diff(out, conv_ref(x, w, b)) < 1e-14);

  std::vector<double> dx_ref, dw_ref, db_ref;
  conv_backward_ref(dx_ref, dw_ref, db_ref, g, x, w);
  std::vector<double> dx(B * L * C), dw(C * K), db(C);
  causal_conv1d_backward_cpu<double>(dx.data(), dw.data(), db.data(), g.data<double>(), x.data<double>(),
                                 w.data<double>(), B, L, C, K, x.stride(0), x.stride(1));
  CHECK(rel_diff(dx, dx_ref) < 1e-14);
  CHECK(rel_diff(dw, dw_ref) < 1e-13);
  CHECK(rel_diff(db, db_ref) < 1e-13);

  Tensor x32 = x.to(DType::F32), w32 = w.to(DType::F32), g32 = g.to(DType::F32);
  std::vector<float> dx1(B * L * C), dw1(C * K), db1(C), dx2(B * L * C), dw2(C * K), db2(C);
  const int threads = max_threads();
  set_threads(1);
  causal_conv1d_backward_cpu<float>(dx1.data(), dw1.data(), db1.data(), g32.data<float>(), x32.data<float>(),
                                w32.data<float>(), B, L, C, K, L * C, C);
  set_threads(2);
  causal_conv1d_backward_cpu<float>(dx2.data(), dw2.data(), db2.data(), g32.data<float>(), x32.data<float>(),
                                w32.data<float>(), B, L, C, K, L * C, C);
  set_threads(threads);
  CHECK(dw1 == dw2);
  CHECK(db1 == db2);
  CHECK(dx1 == dx2);
  CHECK(rel_diff(std::vector<double>(dw1.begin(), dw1.end()), dw_ref) < 1e-5);
}

TEST_CASE("causal_conv1d_step: feeding tokens one at a time reproduces the full convolution") {
  const int64_t B = 2, L = 7, C = 6;
  for (int64_t K : {4, 1}) {
    for (bool with_bias : {true, false}) {
      INFO("K " << K << " bias " << with_bias);
      // x is the first half of a (B, L, 2C) buffer, like the mixer's in_proj output.
      Tensor x2 = randn64({B, L, 2 * C}, 101), w = randn64({C, 1, K}, 102);
      Tensor b = with_bias ? randn64({C}, 103) : Tensor();
      Tensor x = x2.narrow(-1, 0, C);
      Tensor full = causal_conv1d(Variable(x), Variable(w), b.defined() ? Variable(b) : Variable()).data();
      Tensor state = Tensor::zeros({B, C, K}, DType::F64);
      Tensor out = Tensor::empty({B, C}, DType::F64);
      double worst = 0.0;
      for (int64_t t = 0; t < L; ++t) {
        causal_conv1d_step(out, state, x.select(1, t), w, b);
        worst = std::max(worst, rel_diff(out, full.select(1, t).contiguous()));
        // The newest input sits in the last column of the state.
        CHECK(state.select(2, K - 1).to_vector() == x.select(1, t).to_vector());
      }
      CHECK(worst < 1e-14);
    }
  }
  Tensor state = Tensor::zeros({2, 6, 3}, DType::F64), out = Tensor::empty({2, 6}, DType::F64);
  CHECK(error_of([&] {
          causal_conv1d_step(out, state, randn64({2, 6}, 1), randn64({6, 1, 4}, 2), Tensor());
        }).find("(2, 6, 3)") != std::string::npos);
}

TEST_CASE("causal_conv1d_silu_grad (ref, cpu): dout·SiLU'(conv) in one pass equals SiLU's backward at the convolution") {
  const int64_t B = 3, L = 40, C = 70, K = 4, ld = 2 * C;
  Tensor xbuf = randn64({B, L, ld}, 221), w = randn64({C, 1, K}, 222), b = randn64({C}, 223);
  const Tensor g = randn64({B, L, C}, 224);
  Tensor x = xbuf.narrow(-1, 0, C);
  for (bool with_bias : {true, false}) {
    INFO("bias " << with_bias);
    const Tensor conv = causal_conv1d(Variable(x), Variable(w), with_bias ? Variable(b) : Variable()).data();
    const std::vector<double> want = unary_backward(UnaryOp::Silu, g, conv, silu(conv)).to_vector();
    std::vector<double> ref(B * L * C, std::nan("")), fast(B * L * C, std::nan(""));
    const double* bp = with_bias ? b.data<double>() : nullptr;
    causal_conv1d_silu_grad_ref<double>(ref.data(), g.data<double>(), x.data<double>(), w.data<double>(), bp, B, L, C,
                                        K, x.stride(0), x.stride(1));
    causal_conv1d_silu_grad_cpu<double>(fast.data(), g.data<double>(), x.data<double>(), w.data<double>(), bp, B, L,
                                        C, K, x.stride(0), x.stride(1));
    CHECK(rel_diff(ref, want) < 1e-14);
    CHECK(rel_diff(fast, want) < 1e-14);
  }
  // float32: the fast path equals the reference to float32 rounding; the checks name dout.
  const Tensor x32 = x.to(DType::F32), w32 = w.to(DType::F32), g32 = g.to(DType::F32);
  std::vector<float> f(B * L * C);
  std::vector<double> ref(B * L * C);
  causal_conv1d_silu_grad_cpu<float>(f.data(), g32.data<float>(), x32.data<float>(), w32.data<float>(), nullptr, B, L,
                                     C, K, x32.stride(0), x32.stride(1));
  causal_conv1d_silu_grad_ref<double>(ref.data(), g.data<double>(), x.data<double>(), w.data<double>(), nullptr, B, L,
                                      C, K, x.stride(0), x.stride(1));
  CHECK(rel_diff(std::vector<double>(f.begin(), f.end()), ref) < 1e-5);
  const std::string m = error_of([&] {
    causal_conv1d_silu_grad_cpu<float>(f.data(), nullptr, x32.data<float>(), w32.data<float>(), nullptr, B, L, C, K,
                                       x32.stride(0), x32.stride(1));
  });
  CHECK_MESSAGE(m.find("causal_conv1d_silu_grad_cpu: dout is null") != std::string::npos, m);
}

TEST_CASE("causal_conv1d_silu_backward (ref, cpu): SiLU's gradient through the convolution, then its backward") {
  const int64_t B = 2, L = 37, C = 9, K = 4, ld = 2 * C;
  const Tensor xbuf = randn64({B, L, ld}, 231), w = randn64({C, 1, K}, 232), b = randn64({C}, 233);
  const Tensor g = randn64({B, L, C}, 234), x = xbuf.narrow(-1, 0, C);
  const int64_t sb = x.stride(0), sl = x.stride(1);
  const double* xp = x.data<double>();
  std::vector<double> dv(B * L * C), want_dx(B * L * C), want_dw(C * K), want_db(C);
  causal_conv1d_silu_grad_ref<double>(dv.data(), g.data<double>(), xp, w.data<double>(), b.data<double>(), B, L, C, K,
                                      sb, sl);
  causal_conv1d_backward_ref<double>(want_dx.data(), want_dw.data(), want_db.data(), dv.data(), xp, w.data<double>(),
                                     B, L, C, K, sb, sl);
  for (auto fn : {causal_conv1d_silu_backward_ref<double>, causal_conv1d_silu_backward_cpu<double>}) {
    std::vector<double> dx(B * L * C, std::nan("")), dw(C * K, std::nan("")), db(C, std::nan(""));
    fn(dx.data(), dw.data(), db.data(), g.data<double>(), xp, w.data<double>(), b.data<double>(), B, L, C, K, sb, sl);
    CHECK(rel_diff(dx, want_dx) < 1e-14);
    CHECK(rel_diff(dw, want_dw) < 1e-14);
    CHECK(rel_diff(db, want_db) < 1e-14);
  }
  std::vector<double> dx(B * L * C);
  const std::string m = error_of([&] {
    causal_conv1d_silu_backward_cpu<double>(dx.data(), nullptr, nullptr, nullptr, xp, w.data<double>(), nullptr, B, L,
                                            C, K, sb, sl);
  });
  CHECK_MESSAGE(m.find("causal_conv1d_silu_backward_cpu: dout is null") != std::string::npos, m);
}

TEST_CASE("causal_conv1d with SiLU fused (silu = true): forward (ref, cpu) and step equal SiLU of the convolution") {
  const int64_t B = 3, L = 40, C = 70, K = 4, ld = 2 * C;
  Tensor xbuf = randn64({B, L, ld}, 121), w = randn64({C, 1, K}, 122), b = randn64({C}, 123);
  Tensor x = xbuf.narrow(-1, 0, C);
  const Tensor plain = causal_conv1d(Variable(x), Variable(w), Variable(b)).data();
  const std::vector<double> want = silu(plain).to_vector();
  std::vector<double> ref(B * L * C, std::nan("")), fast(B * L * C, std::nan(""));
  causal_conv1d_forward_ref<double>(ref.data(), x.data<double>(), w.data<double>(), b.data<double>(), B, L, C, K,
                                    x.stride(0), x.stride(1), /*silu=*/true);
  causal_conv1d_forward_cpu<double>(fast.data(), x.data<double>(), w.data<double>(), b.data<double>(), B, L, C, K,
                                    x.stride(0), x.stride(1), /*silu=*/true);
  CHECK(rel_diff(ref, want) < 1e-14);
  CHECK(rel_diff(fast, want) < 1e-14);
  // The autograd op's forward takes the fused path: the same values.
  CHECK(rel_diff(causal_conv1d_silu(Variable(x), Variable(w), Variable(b)).data().to_vector(), want) < 1e-14);

  Tensor state = Tensor::zeros({B, C, K}, DType::F64), out = Tensor::empty({B, C}, DType::F64);
  double worst = 0.0;
  for (int64_t t = 0; t < L; ++t) {
    causal_conv1d_step(out, state, x.select(1, t), w, b, /*silu=*/true);
    worst = std::max(worst, rel_diff(out, silu(plain.select(1, t).contiguous())));
  }
  CHECK(worst < 1e-14);
}

// ---------------------------------------------------------------- cross-entropy

TEST_CASE("gradcheck: cross_entropy with ignored rows") {
  Tensor logits = randn64({2, 3, 5}, 111, 2.0);
  Tensor targets = Tensor::from_ints({2, 3}, {4, -100, 0, 2, 2, -100});
  expect_ok(gradcheck([targets](const std::vector<Variable>& v) { return cross_entropy(v[0], targets); }, {logits}));
  // A custom ignore_index (0 here is a class id that is skipped), through a transposed view.
  Tensor t2 = Tensor::from_ints({2, 3}, {1, 0, 0, 3, 4, 2});
  expect_ok(gradcheck(
      [t2](const std::vector<Variable>& v) { return cross_entropy(transpose(v[0], 0, 1), t2, /*ignore_index=*/0); },
      {randn64({3, 2, 5}, 112, 2.0)}));
}

TEST_CASE("cross_entropy: values equal plain loops, stay finite for logits of ±1000, per-row version") {
  Tensor logits = randn64({4, 7}, 121, 3.0);
  const std::vector<int64_t> t = {6, -100, 0, 3};
  Tensor targets = Tensor::from_ints({4}, t);
  const std::vector<double> ref = cross_entropy_ref(logits, t, -100);
  Variable loss = cross_entropy(Variable(logits), targets);
  CHECK(loss.dim() == 0);
  CHECK(loss.item() == doctest::Approx((ref[0] + ref[2] + ref[3]) / 3).epsilon(1e-14));
  Tensor rows = cross_entropy_rows(logits, targets);
  CHECK(rows.shape() == Shape{4});
  CHECK(rel_diff(rows.to_vector(), ref) < 1e-14);
  CHECK(rows.at({1}) == 0.0);

  // Large logits: exp(1000) overflows, the max-shifted form does not. Both rows are
  // (1000, 999, −1000, −1000), so lse = 1000 + log(1 + e^-1 + 2·e^-2000) = 1000 + log1p(e^-1):
  //   row 0, target 0: loss = lse − 1000    = log1p(e^-1)
  //   row 1, target 2: loss = lse − (−1000) = 2000 + log1p(e^-1)
  for (DType dt : {DType::F64, DType::F32}) {
    INFO(std::string(dtype_name(dt)));
    // float32 rounds lse ≈ 1000.3 to a 6e-5 grid, which shifts each softmax by up to ~6e-5.
    const double tol = dt == DType::F64 ? 1e-12 : 1e-4;
    Tensor big = Tensor::from_vector({2, 4}, {1000, 999, -1000, -1000, 1000, 999, -1000, -1000}, dt);
    Tensor bt = Tensor::from_ints({2}, {0, 2});
    Variable bv(big, true);
    Variable l = cross_entropy(bv, bt);
    l.backward();
    const double r0 = std::log1p(std::exp(-1.0)), r1 = 2000 + std::log1p(std::exp(-1.0));
    CHECK(std::isfinite(l.item()));
    CHECK(l.item() == doctest::Approx((r0 + r1) / 2).epsilon(tol));
    CHECK(all_finite(bv.grad()));
    // Σ_v dlogits = (1 − 1)·g/count = 0 per row; the target column of row 1 is −1/2.
    CHECK(bv.grad().at({1, 2}) == doctest::Approx(-0.5).epsilon(tol));
    CHECK(std::fabs(sum(bv.grad().select(0, 0)).item()) < tol);
  }

  // float32 agreement: logits of size ~3, V = 50: 1e-6 normwise.
  Tensor t3 = Tensor::from_ints({3, 4}, {1, 49, -100, 0, 7, 7, 7, 12, 30, -100, 2, 3});
  F32Agreement a = f32_vs_f64([t3](const std::vector<Variable>& v) { return cross_entropy(v[0], t3); },
                              {randn64({3, 4, 50}, 122, 3.0)}, 123);
  INFO("forward " << a.forward << ", gradient " << a.gradient);
  CHECK(a.forward < 1e-6);
  CHECK(a.gradient < 1e-5);
}

TEST_CASE("cross_entropy: all rows ignored gives 0 and a zero gradient; bad targets are clear errors") {
  Variable logits(randn64({3, 5}, 131), true);
  Tensor none = Tensor::from_ints({3}, {-100, -100, -100});
  Variable l = cross_entropy(logits, none);
  l.backward();
  CHECK(l.item() == 0.0);
  CHECK(logits.grad().to_vector() == std::vector<double>(15, 0.0));

  const std::string msg = error_of([&] { cross_entropy(logits, Tensor::from_ints({3}, {1, 7, 0})); });
  CHECK(msg.find("target 7") != std::string::npos);
  CHECK(msg.find("V = 5") != std::string::npos);
  CHECK(error_of([&] { cross_entropy_rows(logits.data(), Tensor::from_ints({3}, {1, -1, 0})); })
            .find("target -1") != std::string::npos);
  CHECK(error_of([&] { cross_entropy(logits, Tensor::from_ints({2}, {1, 1})); }).find("(3, 5)") !=
        std::string::npos);
}

// ---------------------------------------------------------------- modules and init

namespace {
struct TinyBlock : Module {
  std::shared_ptr<RMSNorm> norm;
  std::shared_ptr<Linear> in_proj;
  std::shared_ptr<CausalConv1d> conv1d;
  TinyBlock(Generator& g) {
    norm = register_module("norm", std::make_shared<RMSNorm>(4));
    in_proj = register_module("in_proj", std::make_shared<Linear>(4, 8, false, &g));
    conv1d = register_module("conv1d", std::make_shared<CausalConv1d>(4, 3, true, &g));
  }
};
struct TinyModel : Module {
  TinyModel(Generator& g) {
    register_module("embeddings", std::make_shared<Embedding>(10, 4, &g));
    register_module("layers.0", std::make_shared<TinyBlock>(g));
    register_module("layers.1", std::make_shared<TinyBlock>(g));
    register_module("norm_f", std::make_shared<RMSNorm>(4));
  }
};
}  // namespace

TEST_CASE("named_parameters of a small module tree gives dotted Hugging Face style names") {
  Generator g(3);
  TinyModel m(g);
  std::vector<std::string> names;
  for (auto& p : m.named_parameters()) names.push_back(p.first);
  const std::vector<std::string> expected = {
      "embeddings.weight",         "layers.0.norm.weight",        "layers.0.in_proj.weight",
      "layers.0.conv1d.weight",    "layers.0.conv1d.bias",        "layers.1.norm.weight",
      "layers.1.in_proj.weight",   "layers.1.conv1d.weight",      "layers.1.conv1d.bias",
      "norm_f.weight"};
  CHECK(names == expected);
  CHECK(m.parameter("layers.1.conv1d.weight").shape() == Shape{4, 1, 3});
  CHECK(m.num_parameters() == 10 * 4 + 2 * (4 + 8 * 4 + 4 * 3 + 4) + 4);
}

TEST_CASE("init: PyTorch default bounds, seeded reproducibility, inverse softplus") {
  Generator g1(42), g2(42);
  Linear a(16, 8, true, &g1), b(16, 8, true, &g2);
  CHECK(a.weight.data().to_vector() == b.weight.data().to_vector());
  CHECK(a.bias.data().to_vector() == b.bias.data().to_vector());
  // bound 1/sqrt(16) = 0.25; 128 uniform draws all below 0.2 in size has probability 0.8^128.
  auto max_abs = [](const Tensor& t) {
    double m = 0.0;
    for (double v : t.to_vector()) m = std::max(m, std::fabs(v));
    return m;
  };
  CHECK(max_abs(a.weight.data()) <= 0.25);
  CHECK(max_abs(a.weight.data()) > 0.2);
  CHECK(max_abs(a.bias.data()) <= 0.25);
  CHECK(fan_in({8, 16}) == 16);
  CHECK(fan_in({6, 1, 4}) == 4);

  // Conv1d: fan_in = K = 4, bound 0.5, for weight and bias alike.
  CausalConv1d conv(64, 4, true, &g1);
  CHECK(max_abs(conv.weight.data()) <= 0.5);
  CHECK(max_abs(conv.weight.data()) > 0.4);
  CHECK(max_abs(conv.bias.data()) <= 0.5);
  CHECK(max_abs(conv.bias.data()) > 0.3);

  // Embedding: N(0, 1); 4000 draws give a sample std within 5% of 1.
  Embedding emb(1000, 4, &g1);
  double ss = 0.0;
  for (double v : emb.weight.data().to_vector()) ss += v * v;
  CHECK(std::sqrt(ss / 4000) == doctest::Approx(1.0).epsilon(0.05));

  // softplus(inverse_softplus(y)) = y, including Mamba's dt range and the dt floor 1e-4.
  Tensor y = Tensor::from_vector({6}, {1e-4, 1e-3, 0.01, 0.1, 1.0, 15.0}, DType::F64);
  Tensor x = inverse_softplus(y);
  CHECK(x.dtype() == DType::F64);
  CHECK(rel_diff(softplus(x), y) < 1e-12);
  for (double v : {1e-4, 0.05, 3.0}) CHECK(std::log1p(std::exp(inverse_softplus(v))) == doctest::Approx(v).epsilon(1e-12));
  CHECK(error_of([] { inverse_softplus(0.0); }).find("positive") != std::string::npos);
}
