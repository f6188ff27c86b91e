// Autograd semantics (autograd/variable.h): each documented rule has a test.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "autograd/ops.h"

using namespace simba;

namespace {
Variable leaf(std::vector<double> v) {
  Shape s{static_cast<int64_t>(v.size())};
  return Variable(Tensor::from_vector(s, v, DType::F64), true);
}
}  // namespace

TEST_CASE("a value used twice gets the sum of both paths") {
  Variable x = leaf({3.0});
  Variable y = mul(x, x);  // dy/dx = 2x
  sum(y).backward();
  CHECK(x.grad().item() == 6.0);
}

TEST_CASE("diamond graph: shared intermediate receives both contributions once") {
  Variable x = leaf({2.0});
  Variable a = exp(x);      // a = e^x
  Variable b = a * 3.0;     // path 1
  Variable c = mul(a, a);   // path 2
  Variable y = sum(b + c);  // y = 3e^x + e^2x, dy/dx = 3e^x + 2e^2x
  y.backward();
  double e = std::exp(2.0);
  CHECK(x.grad().item() == doctest::Approx(3 * e + 2 * e * e).epsilon(1e-14));
}

TEST_CASE("gradients accumulate across backward calls until zero_grad") {
  Variable x = leaf({1.0, 2.0});
  sum(x * 2.0).backward();
  sum(x * 2.0).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{4.0, 4.0});
  x.zero_grad();
  sum(x * 5.0).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{5.0, 5.0});
}

TEST_CASE("a graph keeps an intermediate only where a gradient reads it, not for every node it fed") {
  // The edges of a node hold its inputs' nodes, not their values (autograd/variable.h, Edge):
  // once the Variable is gone, only the backward functions that read a value hold it. softplus
  // and exp read their outputs, silu its input, add neither summand.
  const std::vector<double> xv = {0.5, -1.0, 2.0};
  Variable x = leaf(xv);
  struct Case {
    const char* op;
    std::function<Variable(const Variable&)> f;
    bool reads_input;
    std::function<double(double)> df;  // d f(m)/dm, for the gradient's check (m = 2x)
  };
  const auto sig = [](double m) { return 1.0 / (1.0 + std::exp(-m)); };
  const std::vector<Case> cases = {
      {"softplus", [](const Variable& v) { return softplus(v); }, false, sig},
      {"exp", [](const Variable& v) { return exp(v); }, false, [](double m) { return std::exp(m); }},
      {"add", [](const Variable& v) { return v + v; }, false, [](double) { return 2.0; }},
      {"silu", [](const Variable& v) { return silu(v); }, true,
       [sig](double m) { return sig(m) * (1.0 + m * (1.0 - sig(m))); }}};
  for (const Case& c : cases) {
    INFO(c.op);
    Tensor probe;  // the intermediate's value, held by the test alone unless the graph holds it
    Variable y;
    {
      Variable mid = x * 2.0;
      probe = mid.data();
      y = c.f(mid);
    }
    CHECK(probe.storage().use_count() == (c.reads_input ? 2 : 1));
    sum(y).backward();  // the graph still reaches x through the dropped intermediate's node
    REQUIRE(x.grad().defined());
    const std::vector<double> gx = x.grad().to_vector();
    for (size_t i = 0; i < xv.size(); ++i) CHECK(gx[i] == doctest::Approx(2.0 * c.df(2.0 * xv[i])).epsilon(1e-14));
    x.zero_grad();
  }
}

TEST_CASE("backward twice through a freed graph is an error; retain_graph allows it") {
  Variable x = leaf({1.0});
  Variable y = sum(exp(x));
  y.backward();
  try {
    y.backward();
    FAIL("second backward did not throw");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("already freed") != std::string::npos);
    CHECK(std::string(e.what()).find("retain_graph") != std::string::npos);
  }
  Variable z = sum(exp(x));
  x.zero_grad();
  z.backward(Tensor(), /*retain_graph=*/true);
  z.backward();
  CHECK(x.grad().item() == doctest::Approx(2 * std::exp(1.0)).epsilon(1e-14));
}

TEST_CASE("backward flows through views") {
  Variable x(Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}, DType::F64), true);
  Variable t = transpose(x, 0, 1);           // (3, 2)
  Variable n = narrow(t, 0, 1, 2);           // rows 1..2 of the transpose = columns 1..2 of x
  Variable r = reshape(n, {4});              // copies (non-contiguous)
  Variable w(Tensor::from_vector({4}, {10, 20, 30, 40}, DType::F64));
  sum(r * w).backward();
  // r = [x01, x11, x02, x12] -> grads 10, 20, 30, 40 at those positions, zero in column 0.
  CHECK(x.grad().to_vector() == std::vector<double>{0, 10, 30, 0, 20, 40});
}

TEST_CASE("no_grad records nothing; detach cuts the graph") {
  Variable x = leaf({1.0});
  {
    NoGradGuard g;
    Variable y = exp(x);
    CHECK(!y.requires_grad());
    CHECK(!y.grad_fn());
  }
  CHECK(grad_enabled());
  Variable d = exp(x).detach();
  CHECK(!d.requires_grad());
  Variable y = sum(d * x);  // d is a constant here
  y.backward();
  CHECK(x.grad().item() == doctest::Approx(std::exp(1.0)).epsilon(1e-15));
}

TEST_CASE("non-scalar backward needs a gradient of the output's shape") {
  Variable x = leaf({1.0, 2.0});
  Variable y = x * 3.0;
  CHECK_THROWS_AS(y.backward(), Error);
  CHECK_THROWS_AS(y.backward(Tensor::ones({3}, DType::F64)), Error);
  y.backward(Tensor::from_vector({2}, {1.0, -1.0}, DType::F64));
  CHECK(x.grad().to_vector() == std::vector<double>{3.0, -3.0});
}

TEST_CASE("inputs without requires_grad get no gradient and no graph is built") {
  Variable c(Tensor::from_vector({1}, {2.0}, DType::F64));
  Variable y = exp(c);
  CHECK(!y.requires_grad());
  CHECK_THROWS_AS(y.backward(), Error);
  CHECK_THROWS_AS(Variable(Tensor::from_ints({1}, {1}), true), Error);  // int tensors have no gradient
}

TEST_CASE("leaf_done reports each reached leaf once, when its gradient is final, last-used first") {
  // h1 = a·x, h2 = h1·b, loss = Σ h2 + Σ a·a: a is used twice (early and late), b once, late;
  // x and c need no gradient; unused is never reached.
  Variable a = leaf({1.5, -2.0}), b = leaf({0.5, 3.0}), unused = leaf({1.0, 1.0});
  Variable x(Tensor::from_vector({2}, {2.0, 4.0}, DType::F64), false);
  Variable h1 = mul(a, x), h2 = mul(h1, b);
  Variable loss = sum(h2) + sum(mul(a, a));
  std::vector<const VariableImpl*> order;
  std::vector<std::vector<double>> at_report;
  loss.backward(Tensor(), false, [&](const VariableImpl& leaf) {
    order.push_back(&leaf);
    at_report.push_back(leaf.grad.to_vector());
  });
  REQUIRE(order.size() == 2);
  CHECK(order[0] == b.impl().get());  // b's only use is the last op before the sum
  CHECK(order[1] == a.impl().get());
  CHECK(at_report[0] == b.grad().to_vector());  // final when reported
  CHECK(at_report[1] == a.grad().to_vector());
  CHECK(a.grad().to_vector() == std::vector<double>{2.0 * 0.5 + 3.0, 4.0 * 3.0 - 4.0});
  CHECK_FALSE(unused.grad().defined());

  // A leaf as the root is reported after its gradient is set.
  Variable r = leaf({7.0});
  int calls = 0;
  r.backward(Tensor(), false, [&](const VariableImpl& leaf) {
    ++calls;
    CHECK(&leaf == r.impl().get());
    CHECK(leaf.grad.item() == 1.0);
  });
  CHECK(calls == 1);
}

namespace {
// y = x (a copy) with an accumulating backward that notes what the engine handed it.
struct Handed {
  bool defined = false;
  const void* data = nullptr;
};
Variable copy_into(const Variable& x, Handed* handed) {
  return make_result_into(x.data().clone(), "copy_into", {x}, [handed](const Tensor& g, std::vector<Tensor>& grads) {
    *handed = {grads[0].defined(), grads[0].defined() ? grads[0].raw_data() : nullptr};
    if (grads[0].defined())
      add_(grads[0], g);
    else
      grads[0] = g.clone();
  });
}
}  // namespace

TEST_CASE("an accumulating backward gets the gradient so far where the engine alone holds it, never a shared one") {
  Variable x = leaf({1.0, 2.0});
  Handed h;
  sum(copy_into(x, &h)).backward();
  CHECK_FALSE(h.defined);  // nothing had arrived
  const void* first = x.grad().raw_data();
  sum(copy_into(x, &h)).backward();
  CHECK(h.defined);  // the leaf's gradient, written in place
  CHECK(h.data == first);
  CHECK(x.grad().raw_data() == first);
  CHECK(x.grad().to_vector() == std::vector<double>{2.0, 2.0});
  // A gradient someone else holds too is not handed over: the engine adds, the copy keeps its values.
  const Tensor held = x.grad();
  sum(copy_into(x, &h) * 3.0).backward();
  CHECK_FALSE(h.defined);
  CHECK(held.to_vector() == std::vector<double>{2.0, 2.0});
  CHECK(x.grad().to_vector() == std::vector<double>{5.0, 5.0});
}

TEST_CASE("accumulating backwards: overlapping narrows of a leaf and of an intermediate get every slice's sum") {
  Variable x = leaf({0.1, 0.2, 0.3, 0.4, 0.5, 0.6});
  Variable e = exp(x);
  // Three reads of e (two overlapping narrows and e itself) and two of x.
  Variable y = sum(narrow(e, 0, 0, 4)) + sum(narrow(e, 0, 2, 4) * 3.0) + sum(e * 0.5) + sum(narrow(x, 0, 1, 2)) +
               sum(narrow(x, 0, 1, 5) * 2.0);
  y.backward();
  const std::vector<double> from_e = {1.5, 1.5, 4.5, 4.5, 3.5, 3.5}, from_x = {0, 3, 3, 2, 2, 2};
  const std::vector<double> g = x.grad().to_vector(), xv = x.data().to_vector();
  for (size_t i = 0; i < 6; ++i) CHECK(g[i] == doctest::Approx(from_e[i] * std::exp(xv[i]) + from_x[i]).epsilon(1e-15));
}

TEST_CASE("an accumulating backward that reads one input twice: the gradient so far goes to the first, both add") {
  Variable x = leaf({1.0, -1.0});
  std::vector<bool> handed;
  auto twice = [&](const Variable& v) {  // y = v + v
    return make_result_into(add(v.data(), v.data()), "twice", {v, v},
                            [&handed](const Tensor& g, std::vector<Tensor>& grads) {
                              handed = {grads[0].defined(), grads[1].defined()};
                              for (Tensor& slot : grads) {
                                if (slot.defined())
                                  add_(slot, g);
                                else
                                  slot = g.clone();
                              }
                            });
  };
  sum(twice(x)).backward();
  CHECK(handed == std::vector<bool>{false, false});
  CHECK(x.grad().to_vector() == std::vector<double>{2.0, 2.0});
  sum(twice(x)).backward();
  CHECK(handed == std::vector<bool>{true, false});
  CHECK(x.grad().to_vector() == std::vector<double>{4.0, 4.0});
}
