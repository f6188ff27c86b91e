// tests/test_matmul.cpp: matmul and gemm against a naive triple loop, and the
// matmul gradient against finite differences.
//
// Layouts: BLAS reads row-major (N) and transposed (T) views in place, so the
// layout tests run every combination NN, NT, TN, TT, with and without slicing
// (leading dimension larger than the row), with size-1 dims (where BLAS's
// ld >= max(1, cols) rule bites) and with layouts that must be copied
// (stride-0 expansion, no unit stride). float64 must match the double
// reference to 1e-12·(1+|ref|); float32 must match the float64 result to
// 1e-5·(1+|f64|) for K <= 64 (float32 rounding grows like sqrt(K)·6e-8·Σ|a·b|).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "tests/test_util.h"

using namespace simba;

namespace {

// a (..., M, K) @ b (..., K, N) in double by the definition, batch dims broadcast.
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const Shape batch = broadcast_shapes("naive_matmul", Shape(a.shape().begin(), a.shape().end() - 2),
                                       Shape(b.shape().begin(), b.shape().end() - 2));
  Shape sa = batch, sb = batch, so = batch;
  sa.insert(sa.end(), {M, K});
  sb.insert(sb.end(), {K, N});
  so.insert(so.end(), {M, N});
  const std::vector<double> va = a.expand(sa).to_vector(), vb = b.expand(sb).to_vector();
  std::vector<double> vo(shape_numel(so), 0.0);
  for (int64_t t = 0; t < shape_numel(batch); ++t)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k) acc += va[(t * M + i) * K + k] * vb[(t * K + k) * N + j];
        vo[(t * M + i) * N + j] = acc;
      }
  return Tensor::from_vector(so, vo, DType::F64);
}

// max over elements of |got − ref| / (1 + |ref|); shapes must match.
double scaled_error(const Tensor& got, const Tensor& ref) {
  REQUIRE(got.shape() == ref.shape());
  const std::vector<double> g = got.to_vector(), r = ref.to_vector();
  double worst = 0.0;
  for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::fabs(g[i] - r[i]) / (1.0 + std::fabs(r[i])));
  return worst;
}


// A (rows, cols) float64 matrix of normals in the requested layout: a plain
// tensor, the transpose of a (cols, rows) tensor, and/or a slice of a larger
// buffer (so the leading dimension exceeds the row length).
Tensor matrix(Generator& gen, int64_t rows, int64_t cols, bool transposed, bool sliced) {
  const int64_t r = transposed ? cols : rows, c = transposed ? rows : cols;
  Tensor t = sliced ? randn({r + 3, c + 5}, gen, DType::F64).narrow(0, 2, r).narrow(1, 1, c)
                    : randn({r, c}, gen, DType::F64);
  return transposed ? t.transpose(0, 1) : t;
}

// Runs matmul on x and y in float64 and float32 and checks both against the naive loop.
void check_against_naive(const Tensor& x, const Tensor& y) {
  const Tensor ref = naive_matmul(x, y);
  const Tensor got64 = matmul(x, y);
  const Tensor got32 = matmul(x.to(DType::F32), y.to(DType::F32));
  CHECK(got32.dtype() == DType::F32);
  const double e64 = scaled_error(got64, ref), e32 = scaled_error(got32, got64);
  INFO("shapes " << shape_str(x.shape()) << " @ " << shape_str(y.shape()) << ": f64 error " << e64
                 << ", f32 vs f64 error " << e32);
  CHECK(e64 <= 1e-12);
  CHECK(e32 <= 1e-5);
}

GradcheckResult check_grad(const GradcheckFn& f, const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradcheck(f, inputs);
  MESSAGE("gradcheck max_error " << r.max_error << " over " << r.checked << " elements; worst at " << r.where);
  return r;
}

}  // namespace

TEST_CASE("matmul: every 2-D layout combination matches the naive triple loop") {
  Generator gen(1);
  const std::vector<std::array<int64_t, 3>> sizes = {{5, 7, 3}, {6, 64, 9}, {1, 4, 3}, {4, 1, 3},
                                                     {4, 3, 1}, {1, 1, 1}, {1, 5, 1}, {33, 17, 40}};
  for (const auto& mkn : sizes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int sliced = 0; sliced < 2; ++sliced) {
          CAPTURE(ta);
          CAPTURE(tb);
          CAPTURE(sliced);
          const Tensor a = matrix(gen, mkn[0], mkn[1], ta, sliced);
          const Tensor b = matrix(gen, mkn[1], mkn[2], tb, sliced);
          check_against_naive(a, b);
        }
}

TEST_CASE("matmul: layouts BLAS cannot read are copied and still correct") {
  Generator gen(2);
  // Stride-0 expansion: every column of b is the same vector.
  const Tensor col = randn({6, 1}, gen, DType::F64);
  check_against_naive(randn({4, 6}, gen, DType::F64), col.expand({6, 5}));
  // No unit stride in either dim (every other element of a buffer).
  const Tensor strided = randn({5, 6, 2}, gen, DType::F64).select(2, 1);
  check_against_naive(strided, randn({6, 3}, gen, DType::F64));
  check_against_naive(randn({3, 5}, gen, DType::F64), strided);
}

TEST_CASE("matmul: batched and broadcast batches match the naive loop") {
  Generator gen(3);
  SUBCASE("3-D @ 3-D") { check_against_naive(randn({3, 4, 5}, gen, DType::F64), randn({3, 5, 6}, gen, DType::F64)); }
  SUBCASE("3-D @ 2-D, one GEMM over all rows") {
    check_against_naive(randn({3, 4, 5}, gen, DType::F64), randn({5, 6}, gen, DType::F64));
  }
  SUBCASE("3-D sliced in its last dim (rows still one sequence) @ transposed 2-D") {
    const Tensor a = randn({3, 4, 9}, gen, DType::F64).narrow(2, 2, 5);
    check_against_naive(a, randn({6, 5}, gen, DType::F64).transpose(0, 1));
  }
  SUBCASE("3-D with permuted batch (rows not one sequence) @ 2-D") {
    const Tensor a = randn({4, 3, 5}, gen, DType::F64).permute({1, 0, 2});
    check_against_naive(a, randn({5, 6}, gen, DType::F64));
  }
  SUBCASE("transposed 3-D @ 2-D") {
    check_against_naive(randn({3, 5, 4}, gen, DType::F64).transpose(1, 2), randn({5, 6}, gen, DType::F64));
  }
  SUBCASE("3-D @ (1, K, N)") {
    check_against_naive(randn({3, 4, 5}, gen, DType::F64), randn({1, 5, 6}, gen, DType::F64));
  }
  SUBCASE("2-D @ 3-D") { check_against_naive(randn({4, 5}, gen, DType::F64), randn({3, 5, 6}, gen, DType::F64)); }
  SUBCASE("4-D broadcast (2, 1, M, K) @ (3, K, N)") {
    check_against_naive(randn({2, 1, 4, 5}, gen, DType::F64), randn({3, 5, 6}, gen, DType::F64));
  }
  SUBCASE("expanded batch of a") {
    check_against_naive(randn({1, 4, 5}, gen, DType::F64).expand({3, 4, 5}), randn({3, 5, 6}, gen, DType::F64));
  }
  SUBCASE("batched transposed TT") {
    check_against_naive(randn({2, 5, 4}, gen, DType::F64).transpose(1, 2),
                        randn({2, 6, 5}, gen, DType::F64).transpose(1, 2));
  }
  SUBCASE("empty sizes") {
    CHECK(matmul(Tensor::zeros({0, 3}), Tensor::zeros({3, 4})).shape() == Shape{0, 4});
    const Tensor z = matmul(Tensor::ones({2, 0}), Tensor::ones({0, 3}));
    CHECK(z.shape() == Shape{2, 3});
    CHECK(z.to_vector() == std::vector<double>(6, 0.0));
  }
}

TEST_CASE("gemm: alpha, beta and an output slice with ldc > N") {
  Generator gen(4);
  for (DType dt : {DType::F64, DType::F32}) {
    CAPTURE(dtype_name(dt));
    const Tensor a = randn({7, 5}, gen, DType::F64).transpose(0, 1);  // (5, 7) read as T
    const Tensor b = randn({7, 4}, gen, DType::F64);
    Tensor buffer = randn({6, 9}, gen, DType::F64).to(dt);
    const Tensor buffer_before = buffer.clone();
    Tensor out = buffer.narrow(0, 1, 5).narrow(1, 3, 4);
    const Tensor out_before = out.to(DType::F64).clone();
    gemm(out, a.to(dt), b.to(dt), 0.5, 2.0);
    const Tensor ref = add(affine(naive_matmul(a, b), 0.5, 0.0), affine(out_before, 2.0, 0.0));
    CHECK(scaled_error(out, ref) <= (dt == DType::F64 ? 1e-12 : 1e-5));
    // Outside the slice the buffer is untouched.
    Tensor restored = buffer.clone();
    restored.narrow(0, 1, 5).narrow(1, 3, 4).copy_(buffer_before.narrow(0, 1, 5).narrow(1, 3, 4));
    CHECK(restored.to_vector() == buffer_before.to_vector());
  }
}

TEST_CASE("gemm: bfloat16 operands into a float32 out add the float32 product unrounded") {
  Generator gen(5);
  for (const double beta : {0.0, 1.0}) {
    CAPTURE(beta);
    // The operands are bfloat16 values, so the float64 product of their widened values is the
    // exact reference; only float32 summation separates the result from it (no 2^-8 rounding).
    const Tensor a = randn({65, 33}, gen, DType::F64).to(DType::BF16).transpose(0, 1);  // (33, 65) read as T
    const Tensor b = randn({65, 17}, gen, DType::F64).to(DType::BF16);
    Tensor buffer = Tensor::full({33, 20}, NAN, DType::F32);
    Tensor out = buffer.narrow(1, 2, 17);
    if (beta != 0.0) out.copy_(randn({33, 17}, gen, DType::F64));
    const Tensor out_before = out.to(DType::F64);
    gemm(out, a, b, -0.5, beta);
    const Tensor ref = add(affine(naive_matmul(a.to(DType::F64), b.to(DType::F64)), -0.5, 0.0),
                           affine(out_before, beta, 0.0));
    CHECK(scaled_error(out, ref) <= 1e-6);
    int64_t nan_cells = 0;  // the columns outside the slice stay NaN
    for (double v : buffer.to_vector()) nan_cells += std::isnan(v);
    CHECK(nan_cells == 33 * 3);
  }
  const std::string wrong = error_of([] {
    Tensor out = Tensor::zeros({2, 2}, DType::F64);
    gemm(out, Tensor::zeros({2, 3}), Tensor::zeros({3, 2}));
  });
  CHECK(contains(wrong, "gemm: out is float64 for float32 operands (expected float32)"));
  const std::string narrower = error_of([] {
    Tensor out = Tensor::zeros({2, 2}, DType::BF16);
    gemm(out, Tensor::zeros({2, 3}), Tensor::zeros({3, 2}));
  });
  CHECK(contains(narrower, "gemm: out is bfloat16 for float32 operands"));
}

TEST_CASE("gemm: K = 0 gives beta·out, and beta = 0 never reads out") {
  Tensor out = Tensor::full({2, 3}, NAN, DType::F64);
  gemm(out, Tensor::zeros({2, 0}, DType::F64), Tensor::zeros({0, 3}, DType::F64), 1.0, 0.0);
  CHECK(out.to_vector() == std::vector<double>(6, 0.0));
  Tensor twos = Tensor::full({2, 3}, 1.5, DType::F64);
  gemm(twos, Tensor::zeros({2, 0}, DType::F64), Tensor::zeros({0, 3}, DType::F64), 1.0, 2.0);
  CHECK(twos.to_vector() == std::vector<double>(6, 3.0));
  // BLAS path with beta = 0 on a NaN-filled out.
  Tensor out2 = Tensor::full({2, 2}, NAN, DType::F32);
  gemm(out2, Tensor::ones({2, 3}), Tensor::ones({3, 2}));
  CHECK(out2.to_vector() == std::vector<double>(4, 3.0));
}

TEST_CASE("matmul: error messages name both shapes and dtypes") {
  const std::string align = error_of([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); });
  CHECK(contains(align, "matmul: shapes (2, 3) and (4, 5) do not align: 3 != 4"));
  const std::string batch = error_of([] { matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 5})); });
  CHECK(contains(batch, "(2, 3, 4)"));
  CHECK(contains(batch, "(3, 4, 5)"));
  CHECK(contains(batch, "cannot be broadcast"));
  const std::string dtypes = error_of([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 4}, DType::F64)); });
  CHECK(contains(dtypes, "float32"));
  CHECK(contains(dtypes, "float64"));
  const std::string ints = error_of([] { matmul(Tensor::arange(6).view({2, 3}), Tensor::arange(6).view({3, 2})); });
  CHECK(contains(ints, "int64"));
  CHECK(contains(error_of([] { matmul(Tensor::zeros({3}), Tensor::zeros({3, 2})); }), "at least 2 dims"));
  Tensor wrong = Tensor::zeros({2, 5});
  const std::string out_shape = error_of([&] { gemm(wrong, Tensor::zeros({2, 3}), Tensor::zeros({3, 4})); });
  CHECK(contains(out_shape, "(2, 5)"));
  Tensor column_major = Tensor::zeros({4, 2}).transpose(0, 1);
  CHECK(contains(error_of([&] { gemm(column_major, Tensor::zeros({2, 3}), Tensor::zeros({3, 4})); }), "stride 1"));
  // The Variable op reports through the tensor op.
  const Variable va(Tensor::zeros({2, 3}), true), vb(Tensor::zeros({4, 5}), true);
  CHECK(contains(error_of([&] { matmul(va, vb); }), "do not align"));
}

TEST_CASE("matmul gradient: 2-D") {
  Generator gen(10);
  auto r = check_grad([](const std::vector<Variable>& v) { return matmul(v[0], v[1]); },
                      {randn({3, 4}, gen, DType::F64), randn({4, 5}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("matmul gradient: transposed operands (TT, views passed to matmul)") {
  Generator gen(11);
  auto r = check_grad(
      [](const std::vector<Variable>& v) { return matmul(transpose(v[0], 0, 1), transpose(v[1], 0, 1)); },
      {randn({4, 3}, gen, DType::F64), randn({5, 4}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("matmul gradient: batched 3-D @ 3-D") {
  Generator gen(12);
  auto r = check_grad([](const std::vector<Variable>& v) { return matmul(v[0], v[1]); },
                      {randn({2, 3, 4}, gen, DType::F64), randn({2, 4, 5}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("matmul gradient: 3-D @ 2-D (the Linear case, db as one GEMM)") {
  Generator gen(13);
  auto r = check_grad([](const std::vector<Variable>& v) { return matmul(v[0], v[1]); },
                      {randn({2, 3, 4}, gen, DType::F64), randn({4, 5}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("matmul gradient: 3-D @ (1, K, N)") {
  Generator gen(14);
  auto r = check_grad([](const std::vector<Variable>& v) { return matmul(v[0], v[1]); },
                      {randn({2, 3, 4}, gen, DType::F64), randn({1, 4, 5}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("matmul gradient: 2-D @ 3-D (a summed over the batch)") {
  Generator gen(15);
  auto r = check_grad([](const std::vector<Variable>& v) { return matmul(v[0], v[1]); },
                      {randn({3, 4}, gen, DType::F64), randn({2, 4, 5}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("matmul gradient: 4-D broadcast (2, 1, M, K) @ (3, K, N)") {
  Generator gen(16);
  auto r = check_grad([](const std::vector<Variable>& v) { return matmul(v[0], v[1]); },
                      {randn({2, 1, 3, 4}, gen, DType::F64), randn({3, 4, 5}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("matmul gradient: permuted and sliced batch @ transposed batch") {
  Generator gen(17);
  // a: (3, 2, 6) permuted to (2, 3, 6) and narrowed to (2, 3, 4): no contiguous
  // batch; b: (2, 5, 4) transposed to (2, 4, 5): read as T.
  auto r = check_grad(
      [](const std::vector<Variable>& v) {
        return matmul(narrow(permute(v[0], {1, 0, 2}), 2, 1, 4), transpose(v[1], 1, 2));
      },
      {randn({3, 2, 6}, gen, DType::F64), randn({2, 5, 4}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("matmul gradient: sliced 3-D @ transposed 2-D (one GEMM, non-contiguous a)") {
  Generator gen(18);
  auto r = check_grad(
      [](const std::vector<Variable>& v) { return matmul(narrow(v[0], 2, 2, 4), transpose(v[1], 0, 1)); },
      {randn({2, 3, 7}, gen, DType::F64), randn({5, 4}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("matmul gradient: float32 backward agrees with float64") {
  Generator gen(19);
  const Tensor a64 = randn({2, 3, 8}, gen, DType::F64), b64 = randn({8, 5}, gen, DType::F64);
  const Tensor g64 = randn({2, 3, 5}, gen, DType::F64);
  std::vector<Tensor> grads[2];
  for (int k = 0; k < 2; ++k) {
    const DType dt = k == 0 ? DType::F64 : DType::F32;
    Variable a(a64.to(dt), true), b(b64.to(dt), true);
    matmul(a, b).backward(g64.to(dt));
    grads[k] = {a.grad(), b.grad()};
  }
  CHECK(scaled_error(grads[1][0], grads[0][0]) <= 1e-5);
  CHECK(scaled_error(grads[1][1], grads[0][1]) <= 1e-5);
}

TEST_CASE("matmul gradient: an input without requires_grad gets no gradient") {
  Generator gen(20);
  Variable a(randn({3, 4}, gen, DType::F64), false), b(randn({4, 2}, gen, DType::F64), true);
  matmul(a, b).backward(Tensor::ones({3, 2}, DType::F64));
  CHECK_FALSE(a.grad().defined());
  REQUIRE(b.grad().defined());
  CHECK(scaled_error(b.grad(), naive_matmul(a.data().transpose(0, 1), Tensor::ones({3, 2}, DType::F64))) <= 1e-12);
}
