// Tensor views, copies, broadcasting and the checked-error facility.
#include <doctest/doctest.h>

#include <cmath>

#include "tensor/checked_math.h"
#include "tensor/cuda_device.h"
#include "tensor/ops.h"
#include "tensor/readback.h"
#include "tests/test_util.h"

using namespace simba;

namespace {
Tensor iota(const Shape& s, DType dt = DType::F32) {
  std::vector<double> v(shape_numel(s));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return Tensor::from_vector(s, v, dt);
}
}  // namespace

TEST_CASE("views share storage and index correctly") {
  Tensor t = iota({2, 3, 4});
  CHECK(t.is_contiguous());
  CHECK(t.numel() == 24);

  Tensor p = t.permute({2, 0, 1});  // (4, 2, 3)
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(!p.is_contiguous());
  CHECK(p.shares_storage(t));
  CHECK(p.at({3, 1, 2}) == t.at({1, 2, 3}));

  Tensor n = t.narrow(2, 1, 2);  // (2, 3, 2)
  CHECK(n.at({1, 0, 1}) == t.at({1, 0, 2}));
  Tensor s = t.select(1, 2);  // (2, 4)
  CHECK(s.shape() == Shape{2, 4});
  CHECK(s.at({1, 3}) == t.at({1, 2, 3}));

  Tensor e = iota({3, 1}).expand({2, 3, 4});
  CHECK(e.stride(0) == 0);
  CHECK(e.stride(2) == 0);
  CHECK(e.at({1, 2, 3}) == 2.0);

  Tensor u = t.unsqueeze(1);
  CHECK(u.shape() == Shape{2, 1, 3, 4});
  CHECK(u.squeeze(1).shape() == t.shape());
  CHECK(t.view({6, -1}).shape() == Shape{6, 4});

  // A write through a view is seen by the base.
  n.fill_(-1.0);
  CHECK(t.at({0, 0, 1}) == -1.0);
  CHECK(t.at({0, 0, 0}) == 0.0);
}

TEST_CASE("contiguous and reshape copy non-contiguous views in logical order") {
  Tensor t = iota({2, 3});
  Tensor tt = t.transpose(0, 1);  // (3, 2): [[0,3],[1,4],[2,5]]
  Tensor c = tt.contiguous();
  CHECK(c.is_contiguous());
  CHECK(!c.shares_storage(t));
  CHECK(c.to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(tt.reshape({6}).to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(t.contiguous().shares_storage(t));  // already contiguous: no copy
  CHECK_THROWS_AS(tt.view({6}), Error);
}

TEST_CASE("copy_ converts dtypes and broadcasts") {
  Tensor dst = Tensor::zeros({2, 3}, DType::F64);
  dst.copy_(Tensor::from_vector({3}, {1.5, 2.5, 3.5}, DType::F32));
  CHECK(dst.to_vector() == std::vector<double>{1.5, 2.5, 3.5, 1.5, 2.5, 3.5});
  Tensor ints = Tensor::from_ints({2}, {7, -2});
  CHECK(ints.to(DType::F32).to_vector() == std::vector<double>{7, -2});
}

TEST_CASE("elementwise ops broadcast like numpy") {
  Tensor a = iota({2, 1, 3}, DType::F64);
  Tensor b = iota({4, 1}, DType::F64);
  Tensor c = a + b;
  CHECK(c.shape() == Shape{2, 4, 3});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 4; ++j)
      for (int64_t k = 0; k < 3; ++k) CHECK(c.at({i, j, k}) == a.at({i, 0, k}) + b.at({j, 0}));
  Tensor d = a.permute({2, 1, 0}) * 2.0;  // non-contiguous input
  CHECK(d.at({2, 0, 1}) == 2.0 * a.at({1, 0, 2}));
}

TEST_CASE("add_ adds into strided views: a slice of one column, a run of columns, a broadcast row") {
  Generator g(11);
  const Tensor x0 = randn({3, 5, 9}, g, DType::F64), one = randn({3, 5, 1}, g, DType::F64);
  const Tensor run = randn({3, 5, 4}, g, DType::F64), row = randn({4}, g, DType::F64);
  Tensor x = x0.clone();
  add_(x.narrow(2, 0, 1), one);  // innermost stride 9 once the size-1 dim is folded away
  add_(x.narrow(2, 1, 4), run);
  add_(x.narrow(2, 5, 4), row);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t k = 0; k < 9; ++k) {
        const double add = k == 0 ? one.at({i, j, 0}) : k < 5 ? run.at({i, j, k - 1}) : row.at({k - 5});
        CHECK(x.at({i, j, k}) == x0.at({i, j, k}) + add);
      }
  CHECK_THROWS_WITH(add_(x.narrow(2, 0, 1), run), doctest::Contains("does not broadcast to the updated tensor's"));
  CHECK_THROWS_WITH(add_(row.expand({3, 4}), randn({3, 4}, g, DType::F64)), doctest::Contains("repeats its elements"));
  CHECK_THROWS_WITH(add_(x, x0.to(DType::F32)), doctest::Contains("float64"));
}

TEST_CASE("unary ops match the scalar formulas, softplus uses the x > 20 rule") {
  Tensor x = Tensor::from_vector({6}, {-3.0, -0.5, 0.0, 0.7, 19.0, 25.0}, DType::F64);
  auto sp = softplus(x).to_vector();
  auto si = silu(x).to_vector();
  auto sg = sigmoid(x).to_vector();
  auto xv = x.to_vector();
  for (size_t i = 0; i < xv.size(); ++i) {
    double v = xv[i];
    double ref = v > 20 ? v : std::log1p(std::exp(v));
    CHECK(sp[i] == doctest::Approx(ref).epsilon(1e-15));
    CHECK(sg[i] == doctest::Approx(1 / (1 + std::exp(-v))).epsilon(1e-15));
    CHECK(si[i] == doctest::Approx(v / (1 + std::exp(-v))).epsilon(1e-15));
  }
  CHECK(sp[5] == 25.0);  // exactly x above the threshold
  // float32 softplus of a large input must not overflow to inf.
  CHECK(softplus(Tensor::from_vector({1}, {200.0}, DType::F32)).item() == 200.0);
}

TEST_CASE("reductions: sum, mean, max with lowest-index ties, sum_to") {
  Tensor t = Tensor::from_vector({2, 3}, {1, 5, 5, -2, 0, -2}, DType::F64);
  CHECK(sum(t, 1).to_vector() == std::vector<double>{11, -4});
  CHECK(sum(t, 0, true).shape() == Shape{1, 3});
  CHECK(sum(t).item() == 7.0);
  CHECK(mean(t, 0).to_vector() == std::vector<double>{-0.5, 2.5, 1.5});
  MaxResult m = max(t, 1);
  CHECK(m.values.to_vector() == std::vector<double>{5, 0});
  CHECK(m.indices.to_ints() == std::vector<int64_t>{1, 1});
  CHECK(argmax(Tensor::from_vector({3}, {-2, -1, -1}, DType::F64), 0).item() == 1.0);
  CHECK(max(t).item() == 5.0);
  Tensor g = Tensor::ones({4, 2, 3}, DType::F64);
  CHECK(sum_to(g, {2, 1}).to_vector() == std::vector<double>{12, 12});
  CHECK(sum_to(g, {3}).to_vector() == std::vector<double>{8, 8, 8});
}

TEST_CASE("parallel elementwise path equals a serial loop on large non-contiguous tensors") {
  Generator g(7);
  Tensor a = randn({300, 257}, g, DType::F32);
  Tensor b = randn({257}, g, DType::F32);
  Tensor at = a.transpose(0, 1);  // (257, 300), strided
  Tensor y = mul(at, b.unsqueeze(1));
  for (int64_t i = 0; i < 257; i += 13)
    for (int64_t j = 0; j < 300; j += 17) CHECK(y.at({i, j}) == static_cast<float>(at.at({i, j}) * b.at({i})));
  Tensor big = randn({200000}, g, DType::F64);
  auto e = exp(big).to_vector();
  auto v = big.to_vector();
  // exp is exp_fast (tensor/vector_math.h): within 1 ulp of libm's.
  for (size_t i = 0; i < v.size(); i += 997) CHECK(std::fabs(e[i] - std::exp(v[i])) <= 2.3e-16 * std::exp(v[i]));
}

TEST_CASE("errors carry file:line and name both shapes") {
  Tensor a = Tensor::zeros({2, 3});
  Tensor b = Tensor::zeros({4, 5});
  std::string msg = error_of([&] { add(a, b); });
  CHECK(msg.find("(2, 3)") != std::string::npos);
  CHECK(msg.find("(4, 5)") != std::string::npos);
  CHECK(msg.find("add") != std::string::npos);
  CHECK(msg.find("tensor/") != std::string::npos);  // file:line prefix
  std::string dt = error_of([&] { add(a, Tensor::zeros({2, 3}, DType::F64)); });
  CHECK(dt.find("float32") != std::string::npos);
  CHECK(dt.find("float64") != std::string::npos);
  std::string dim = error_of([&] { a.size(5); });
  CHECK(dim.find("out of range") != std::string::npos);
  std::string narrow = error_of([&] { a.narrow(1, 2, 2); });
  CHECK(narrow.find("(2, 3)") != std::string::npos);
  std::string ints = error_of([&] { exp(Tensor::from_ints({2}, {1, 2})); });
  CHECK(ints.find("int64") != std::string::npos);
  // A device that does not exist (any index on a machine without a GPU, or in a build without
  // the CUDA backend) is an error that says so.
  const Device missing{DeviceType::CUDA, cuda_device_count()};
  std::string cuda = error_of([&] { Tensor::empty({2}, DType::F32, missing); });
  CHECK(cuda.find("cuda") != std::string::npos);
}

TEST_CASE("generator is seeded, reproducible and its state round-trips exactly") {
  Generator g1(42), g2(42);
  for (int i = 0; i < 5; ++i) CHECK(g1.normal() == g2.normal());
  g1.normal();  // leaves a spare normal pending
  std::string st = g1.state();
  std::vector<double> expect{g1.normal(), g1.normal(), g1.uniform()};
  Generator g3(0);
  g3.set_state(st);
  CHECK(std::vector<double>{g3.normal(), g3.normal(), g3.uniform()} == expect);
  CHECK_THROWS_AS(g3.set_state("garbage"), Error);
  Tensor n = randn({20000}, g1, DType::F64);
  CHECK(std::fabs(mean(n).item()) < 0.03);
  CHECK(mean(square(n)).item() == doctest::Approx(1.0).epsilon(0.03));
  Tensor u = rand({20000}, g1, DType::F64);
  CHECK(max(u).item() < 1.0);
  CHECK(mean(u).item() == doctest::Approx(0.5).epsilon(0.02));
}

TEST_CASE("checked size arithmetic: overflow is an error naming what was computed, never a wrapped number") {
  CHECK(checked_mul(int64_t(3) << 40, 1 << 20, "x") == int64_t(3) << 60);
  CHECK(checked_add(9223372036854775806LL, 1, "x") == 9223372036854775807LL);
  std::string e = error_of([] { checked_mul(4611686018427387904LL, 4, "the bytes of something"); });
  CHECK(contains(e, "the bytes of something: 4611686018427387904 x 4 is larger than the largest size simba supports"));
  e = error_of([] { checked_add(9223372036854775807LL, 1, "a sum"); });
  CHECK(contains(e, "a sum: 9223372036854775807 + 1 is larger than"));
  e = error_of([] { checked_mul(-2, 3, "a product"); });
  CHECK(contains(e, "a product: -2 x 3: a size cannot be negative"));
  // The description may be computed lazily; it is only built on failure.
  bool built = false;
  checked_mul(2, 3, [&] { built = true; return std::string("lazy"); });
  CHECK_FALSE(built);
}

TEST_CASE("tensor shapes whose element, stride or byte counts overflow int64 are refused") {
  // 2^31 x 2^31 x 4 elements = 2^64: wraps to 0 without checks.
  std::string e = error_of([] { Tensor::empty({int64_t(1) << 31, int64_t(1) << 31, 4}); });
  INFO(e);
  CHECK(contains(e, "shape (2147483648, 2147483648, 4)"));
  CHECK(contains(e, "is larger than the largest size simba supports"));
  // Fits as elements, not as float32 bytes.
  e = error_of([] { Tensor::empty({int64_t(1) << 62}); });
  CHECK(contains(e, "the byte count of a float32 tensor of shape (4611686018427387904,)"));
  // A broadcast view of a huge shape.
  Tensor one = Tensor::ones({1, 1});
  e = error_of([&] { one.expand({int64_t(1) << 40, int64_t(1) << 40}); });
  CHECK(contains(e, "the element count of shape (1099511627776, 1099511627776)"));
  e = error_of([&] { one.view({-1, int64_t(1) << 40, int64_t(1) << 40}); });
  CHECK(contains(e, "view (-1, 1099511627776, 1099511627776)"));
}

TEST_CASE("Readback on the CPU: the values of the last queued tensor; bad calls name what was expected") {
  Readback r(cpu(), 3);
  CHECK(contains(error_of([&] { r.wait(); }), "Readback::wait: nothing was queued"));
  Tensor t = Tensor::from_vector({3}, {1.5, -2.0, 0.25}, DType::F64);
  r.queue(t);
  t.fill_(7.0);  // taken at queue(): later writes do not show
  CHECK(r.wait() == std::vector<double>{1.5, -2.0, 0.25});
  r.queue(Tensor::full({}, 4.0, DType::F64));
  CHECK(r.wait() == std::vector<double>{4.0});
  CHECK(contains(error_of([&] { r.queue(Tensor::ones({4}, DType::F64)); }),
                 "Readback::queue: expected a contiguous float64 tensor of at most 3 elements on cpu, got "
                 "float64 (4,)"));
  CHECK(contains(error_of([&] { r.queue(Tensor::ones({2}, DType::F32)); }), "got float32 (2,)"));
  CHECK(contains(error_of([&] { Readback(cpu(), 0); }), "Readback: capacity 0, expected >= 1"));
}
