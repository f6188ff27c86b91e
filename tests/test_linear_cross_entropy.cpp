// tests/test_linear_cross_entropy.cpp: the fused classifier (nn/linear_cross_entropy.h) against
// its definition, cross_entropy of matmul(hidden, weightᵀ): the loss and both gradients, over
// chunk sizes that split the rows unevenly, with ignored rows, in float64 (gradcheck), float32
// and bfloat16; and its errors.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "nn/cross_entropy.h"
#include "nn/linear_cross_entropy.h"
#include "tensor/random.h"
#include "tests/test_util.h"

using namespace simba;

namespace {

Tensor randn_t(const Shape& s, uint64_t seed, DType dt, double scale = 1.0) {
  Generator g(seed);
  return affine(randn(s, g, DType::F64), scale, 0.0).to(dt);
}

// max |a − b| / max |b|
double rel_err(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  REQUIRE(x.size() == y.size());
  double d = 0.0, m = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    d = std::max(d, std::fabs(x[i] - y[i]));
    m = std::max(m, std::fabs(y[i]));
  }
  return d / m;
}

// Targets of 7 rows; rows 2 and 5 are ignored (-100).
Tensor seven_targets() { return Tensor::from_ints({7}, {3, 0, -100, 10, 4, -100, 9}); }

}  // namespace

TEST_CASE("gradcheck: linear_cross_entropy in hidden and weight, chunks of 1, 3 and all 7 rows, ignored rows") {
  const Tensor targets = seven_targets();
  for (int64_t chunk : {int64_t(1), int64_t(3), int64_t(0)}) {
    INFO("chunk_rows " << chunk);
    GradcheckOptions o;
    const GradcheckResult r = gradcheck(
        [&](const std::vector<Variable>& v) { return linear_cross_entropy(v[0], v[1], targets, -100, chunk); },
        {randn_t({7, 5}, 1, DType::F64), randn_t({11, 5}, 2, DType::F64)}, o);
    CHECK_MESSAGE(r.ok, r.where);
    CHECK(r.checked == 7 * 5 + 11 * 5);
  }
}

TEST_CASE("linear_cross_entropy's automatic chunks: few, even, whole tiles of rows, logits within the bound") {
  // Config B's training batch: 8192 rows of 50280 classes in 4 chunks of 2048 rows.
  CHECK(linear_cross_entropy_chunk_rows(8192, 50280) == 2048);
  CHECK(linear_cross_entropy_chunk_rows(7, 11) == 7);          // one chunk: all rows
  CHECK(linear_cross_entropy_chunk_rows(8192, 256) == 8192);   // config A: one chunk
  CHECK(linear_cross_entropy_chunk_rows(0, 50280) == 1);
  for (int64_t V : {int64_t(1000), int64_t(50280), int64_t(151936), int64_t(1) << 26}) {
    for (int64_t rows : {int64_t(1), int64_t(200), int64_t(3000), int64_t(8192), int64_t(100003)}) {
      INFO("rows " << rows << ", V " << V);
      const int64_t c = linear_cross_entropy_chunk_rows(rows, V);
      REQUIRE((c >= 1 && c <= rows));
      // Within the bound, in as few chunks as it allows, whole tiles where the bound leaves room.
      const int64_t most = std::max<int64_t>(1, kLinearCrossEntropyChunkLogits / V);
      const int64_t chunks = (rows + c - 1) / c, a = kLinearCrossEntropyChunkAlign;
      CHECK(c <= most);
      CHECK(chunks == (rows + most - 1) / most);
      CHECK((c == rows || c % a == 0 || (c + a - 1) / a * a > most));
    }
  }
}

TEST_CASE("linear_cross_entropy equals cross_entropy(hidden · weightᵀ): loss and gradients, float64/32, bfloat16") {
  struct Case {
    DType dt;
    double tol_loss, tol_grad;
  };
  // The logits come from the same GEMM rows either way, so the loss agrees to the last bits;
  // the gradients are the same products summed and scaled in another order, and in bfloat16
  // rounded at other points (2^-8 relative each: measured 4.7e-3 here).
  const Tensor targets = seven_targets();
  for (const Case c : {Case{DType::F64, 1e-14, 1e-14}, Case{DType::F32, 1e-6, 1e-6}, Case{DType::BF16, 1e-6, 1e-2}}) {
    for (int64_t chunk : {int64_t(2), int64_t(0)}) {
      INFO(std::string(dtype_name(c.dt)) << ", chunk_rows " << chunk);
      const Tensor h = randn_t({7, 6}, 3, c.dt), W = randn_t({13, 6}, 4, c.dt, 0.7);
      const Tensor up = randn_t({}, 5, acc_dtype(c.dt)).to(acc_dtype(c.dt));
      auto run = [&](bool fused) {
        Variable hv(h.clone(), true), wv(W.clone(), true);
        Variable loss = fused ? linear_cross_entropy(hv, wv, targets, -100, chunk)
                              : cross_entropy(matmul(hv, transpose(wv, 0, 1)), targets);
        loss.backward(up);
        return std::vector<Tensor>{loss.data(), hv.grad(), wv.grad()};
      };
      const std::vector<Tensor> fused = run(true), plain = run(false);
      CHECK(fused[0].dtype() == plain[0].dtype());
      CHECK(rel_err(fused[0], plain[0]) <= c.tol_loss);
      CHECK(fused[1].dtype() == c.dt);
      CHECK(rel_err(fused[1], plain[1]) <= c.tol_grad);
      CHECK(rel_err(fused[2], plain[2]) <= c.tol_grad);
      // The ignored rows get no gradient at all.
      CHECK(max(abs(fused[1].select(0, 2))).item() == 0.0);
      CHECK(max(abs(fused[1].select(0, 5))).item() == 0.0);
    }
  }
}

TEST_CASE("linear_cross_entropy: batch dims, no gradient without grad mode, and the same bits for any chunking") {
  const Tensor h = randn_t({2, 4, 6}, 6, DType::F32), W = randn_t({9, 6}, 7, DType::F32);
  const Tensor t = Tensor::from_ints({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  const double whole = linear_cross_entropy(Variable(h), Variable(W), t).item();
  CHECK(whole == doctest::Approx(cross_entropy(Variable(matmul(h, W.transpose(0, 1))), t).item()).epsilon(1e-6));
  // The losses of the rows do not depend on the chunks; their sum runs in the same order.
  CHECK(linear_cross_entropy(Variable(h), Variable(W), t, -100, 3).item() == whole);
  NoGradGuard no_grad;
  Variable wv(W, true);
  CHECK_FALSE(linear_cross_entropy(Variable(h), wv, t).requires_grad());
}

TEST_CASE("linear_cross_entropy: bad shapes, dtypes, targets and chunk sizes are errors that say what was expected") {
  const Tensor h = randn_t({3, 4}, 8, DType::F32), W = randn_t({5, 4}, 9, DType::F32);
  const Tensor t = Tensor::from_ints({3}, {0, 1, 2});
  CHECK_THROWS_WITH(linear_cross_entropy(Variable(h), Variable(randn_t({5, 3}, 9, DType::F32)), t),
                    doctest::Contains("expected hidden (..., D) and weight (V, D)"));
  CHECK_THROWS_WITH(linear_cross_entropy(Variable(h), Variable(W.to(DType::F64)), t),
                    doctest::Contains("hidden is float32, weight is float64"));
  CHECK_THROWS_WITH(linear_cross_entropy(Variable(h), Variable(W), Tensor::from_ints({2}, {0, 1})),
                    doctest::Contains("targets of shape"));
  CHECK_THROWS_WITH(linear_cross_entropy(Variable(h), Variable(W), t, -100, -1),
                    doctest::Contains("chunk_rows must be >= 0"));
  CHECK_THROWS_WITH(linear_cross_entropy(Variable(h), Variable(W), Tensor::from_ints({3}, {0, 5, 1})),
                    doctest::Contains("5"));
}
