// tests/test_optim.cpp: SGD, AdamW, parameter groups, gradient clipping and
// the learning-rate schedule against hand-computed values.
//
// Expected values come from plain scalar loops written here straight from
// the textbook formulas (grouped differently from the kernels, e.g. m̂ and v̂
// formed explicitly), and the small cases are also pinned to literals
// computed by hand / in Python floats, with the arithmetic in comments.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn/lr_schedule.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "tensor/random.h"
#include "test_util.h"

using namespace simba;

namespace {

Variable param(const std::vector<double>& values, DType dtype = DType::F64) {
  return Variable(Tensor::from_vector({static_cast<int64_t>(values.size())}, values, dtype), true);
}

void set_grad(Variable& p, const std::vector<double>& g) {
  p.set_grad(Tensor::from_vector({static_cast<int64_t>(g.size())}, g, p.dtype()));
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::fabs(got[i] - want[i]) <= tol * std::max(1.0, std::fabs(want[i])));
  }
}

// Scalar AdamW reference, the formulas of the task statement in their
// textbook grouping: p ← p − lr·wd·p; m, v; m̂ = m/(1−β1^t), v̂ = v/(1−β2^t);
// p ← p − lr·m̂/(sqrt(v̂) + eps).
struct AdamRef {
  double p, m = 0.0, v = 0.0;
  int t = 0;
  void step(double g, double lr, double wd, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8) {
    ++t;
    p = p - lr * wd * p;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double mhat = m / (1 - std::pow(b1, t)), vhat = v / (1 - std::pow(b2, t));
    p = p - lr * mhat / (std::sqrt(vhat) + eps);
  }
};

// Scalar SGD reference (torch.optim.SGD, dampening 0): the buffer is created
// as g' on the first step.
struct SgdRef {
  double p, b = 0.0;
  bool first = true;
  void step(double g, double lr, double mu, double wd) {
    const double gg = g + wd * p;
    b = first ? gg : mu * b + gg;
    first = false;
    p -= lr * b;
  }
};

class Norm : public Module {
 public:
  Norm() { register_parameter("weight", Tensor::ones({3}, DType::F64)); }
};

class Toy : public Module {
 public:
  Toy() {
    register_parameter("weight", Tensor::ones({3, 2}, DType::F64));
    register_parameter("bias", Tensor::zeros({3}, DType::F64));
    register_parameter("A_log", Tensor::zeros({3, 4}, DType::F64));
    register_parameter("D", Tensor::ones({3}, DType::F64));
    register_module("norm", std::make_shared<Norm>());
    register_parameter("out_weight", Tensor::ones({2, 3}, DType::F64));
  }
};

std::map<std::string, Tensor> as_map(const NamedTensors& state) {
  std::map<std::string, Tensor> out;
  for (const auto& e : state) out[e.first] = e.second;
  return out;
}

}  // namespace

TEST_CASE("split_decay_groups keeps order and puts matching names in the no-decay group") {
  Toy toy;
  auto groups = split_decay_groups(toy, 0.1, [](const std::string& n) {
    return n == "bias" || n == "A_log" || n == "D" || n.rfind("norm.", 0) == 0;
  });
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].weight_decay == 0.1);
  CHECK(groups[1].weight_decay == 0.0);
  std::vector<std::string> decay, no_decay;
  for (auto& e : groups[0].params) decay.push_back(e.first);
  for (auto& e : groups[1].params) no_decay.push_back(e.first);
  CHECK(decay == std::vector<std::string>{"weight", "out_weight"});
  CHECK(no_decay == std::vector<std::string>{"bias", "A_log", "D", "norm.weight"});
  // The groups hold the module's own parameters, not copies.
  CHECK(groups[1].params[3].second.impl() == toy.parameter("norm.weight").impl());
}

TEST_CASE("AdamW: 3 steps with weight decay and a no-decay group match the hand computation") {
  AdamWOptions defaults;
  CHECK(defaults.beta1 == 0.9);
  CHECK(defaults.beta2 == 0.999);
  CHECK(defaults.eps == 1e-8);
  CHECK(kAdamWDefaultWeightDecay == 0.01);

  Variable w = param({1.0, -2.0}), b = param({0.3, 0.7});
  AdamWOptions opt;
  opt.lr = 0.1;
  AdamW adam({ParamGroup{{{"w", w}}, 0.1}, ParamGroup{{{"b", b}}, 0.0}}, opt);
  const std::vector<std::vector<double>> gw = {{0.5, -0.25}, {0.1, 0.4}, {-0.3, 0.2}};
  const std::vector<std::vector<double>> gb = {{1.0, -1.0}, {-0.5, 2.0}, {0.25, 0.0}};
  const std::vector<double> lrs = {0.1, 0.1, 0.05};  // the last step also checks set_lr
  AdamRef rw[2] = {{1.0}, {-2.0}}, rb[2] = {{0.3}, {0.7}};
  for (int s = 0; s < 3; ++s) {
    adam.set_lr(lrs[s]);
    CHECK(adam.lr() == lrs[s]);
    set_grad(w, gw[s]);
    set_grad(b, gb[s]);
    adam.step();
    for (int i = 0; i < 2; ++i) {
      rw[i].step(gw[s][i], lrs[s], 0.1);
      rb[i].step(gb[s][i], lrs[s], 0.0);
    }
    check_close(w.data().to_vector(), {rw[0].p, rw[1].p}, 1e-12);
    check_close(b.data().to_vector(), {rb[0].p, rb[1].p}, 1e-12);
    if (s == 0) {
      // Step 1 by hand, w[0]: p = 1 − 0.1·0.1·1 = 0.99; m = 0.1·0.5 = 0.05,
      // v = 0.001·0.25 = 2.5e-4; m̂ = 0.5, v̂ = 0.25, sqrt(v̂) = 0.5;
      // p = 0.99 − 0.1·0.5/(0.5 + 1e-8) = 0.99 − 0.099999998 = 0.890000002.
      // w[1]: −2·0.99 = −1.98; m̂ = −0.25, sqrt(v̂) = 0.25;
      // p = −1.98 + 0.1·0.25/(0.25 + 1e-8) = −1.98 + 0.099999996 = −1.880000004.
      // b (no decay): 0.3 − 0.1·1/(1 + 1e-8) = 0.200000001; 0.7 + 0.099999999 = 0.799999999.
      check_close(w.data().to_vector(), {0.890000002, -1.880000004}, 1e-12);
      check_close(b.data().to_vector(), {0.200000001, 0.799999999}, 1e-12);
    }
  }
  // After step 3 (the same recurrence evaluated in Python floats).
  check_close(w.data().to_vector(), {0.7862562795222565, -1.901666553057666}, 1e-12);
  check_close(b.data().to_vector(), {0.15634484021787481, 0.7492396922634973}, 1e-12);
  CHECK(adam.step_count() == 3);
  // The state holds the moments of the reference.
  auto state = as_map(adam.state_tensors());
  check_close(state.at("exp_avg.w").to_vector(), {rw[0].m, rw[1].m}, 1e-12);
  check_close(state.at("exp_avg_sq.b").to_vector(), {rb[0].v, rb[1].v}, 1e-12);
  CHECK(state.at("step.w").to_ints() == std::vector<int64_t>{3});
}

TEST_CASE("AdamW single-group constructor uses the given weight decay (default 0.01)") {
  Variable w1 = param({2.0}), w2 = param({2.0});
  AdamWOptions opt;
  opt.lr = 0.5;
  AdamW a(NamedVariables{{"w", w1}}, opt);       // weight decay 0.01
  AdamW b(NamedVariables{{"w", w2}}, opt, 0.0);  // none
  set_grad(w1, {1.0});
  set_grad(w2, {1.0});
  a.step();
  b.step();
  // Step 1 moves by lr·g/(|g| + eps) = 0.5/(1 + 1e-8); decay adds lr·wd·p = 0.5·0.01·2 = 0.01.
  const double move = 0.5 / (1.0 + 1e-8);
  CHECK(std::fabs(w1.data().item() - (2.0 - 0.01 - move)) < 1e-14);
  CHECK(std::fabs(w2.data().item() - (2.0 - move)) < 1e-14);
}

TEST_CASE("SGD with momentum and weight decay: 3 steps match the hand computation") {
  Variable w = param({1.0, -2.0});
  SGDOptions opt;
  opt.lr = 0.1;
  opt.momentum = 0.9;
  SGD sgd({ParamGroup{{{"w", w}}, 0.01}}, opt);
  const std::vector<std::vector<double>> gw = {{0.5, -0.25}, {0.1, 0.4}, {-0.3, 0.2}};
  SgdRef ref[2] = {{1.0}, {-2.0}};
  for (int s = 0; s < 3; ++s) {
    set_grad(w, gw[s]);
    sgd.step();
    for (int i = 0; i < 2; ++i) ref[i].step(gw[s][i], 0.1, 0.9, 0.01);
    check_close(w.data().to_vector(), {ref[0].p, ref[1].p}, 1e-12);
  }
  // By hand, w[0]: step 1 g' = 0.5 + 0.01·1 = 0.51, b = 0.51, p = 1 − 0.051 = 0.949;
  // step 2 g' = 0.1 + 0.01·0.949 = 0.10949, b = 0.9·0.51 + 0.10949 = 0.56849,
  // p = 0.949 − 0.056849 = 0.892151; step 3 g' = −0.3 + 0.00892151 = −0.29107849,
  // b = 0.9·0.56849 − 0.29107849 = 0.22056251, p = 0.892151 − 0.022056251 = 0.870094749.
  // w[1] likewise: −1.973, −1.986727, −2.017094573.
  check_close(w.data().to_vector(), {0.870094749, -2.017094573}, 1e-12);
  check_close(as_map(sgd.state_tensors()).at("momentum_buffer.w").to_vector(), {0.22056251, 0.30367573}, 1e-12);

  // Without momentum: p ← p − lr·(g + wd·p), no state besides the step count.
  Variable v = param({1.0});
  SGDOptions plain;
  plain.lr = 0.1;
  SGD sgd0({ParamGroup{{{"v", v}}, 0.01}}, plain);
  set_grad(v, {0.5});
  sgd0.step();
  CHECK(std::fabs(v.data().item() - 0.949) < 1e-15);  // 1 − 0.1·(0.5 + 0.01)
  CHECK(sgd0.state_tensors().size() == 1);
}

TEST_CASE("parameters without a gradient are skipped and keep their state") {
  Variable a = param({1.0, 2.0}), b = param({-1.0, 0.5});
  AdamWOptions opt;
  opt.lr = 0.1;
  AdamW adam({ParamGroup{{{"a", a}, {"b", b}}, 0.1}}, opt);
  AdamRef ra{1.0}, rb{-1.0};

  set_grad(a, {0.3, 0.3});
  set_grad(b, {0.2, -0.4});
  adam.step();
  ra.step(0.3, 0.1, 0.1);
  rb.step(0.2, 0.1, 0.1);

  // Step 2: b has no gradient: neither b nor its moments nor its t move.
  auto before = as_map(adam.state_tensors());
  const std::vector<double> b_before = b.data().to_vector();
  b.zero_grad();
  adam.step();
  ra.step(0.3, 0.1, 0.1);
  CHECK(b.data().to_vector() == b_before);
  auto after = as_map(adam.state_tensors());
  CHECK(after.at("exp_avg.b").to_vector() == before.at("exp_avg.b").to_vector());
  CHECK(after.at("exp_avg_sq.b").to_vector() == before.at("exp_avg_sq.b").to_vector());
  CHECK(after.at("step.b").to_ints() == std::vector<int64_t>{1});
  CHECK(after.at("step.a").to_ints() == std::vector<int64_t>{2});
  CHECK(after.at("exp_avg.a").to_vector() != before.at("exp_avg.a").to_vector());

  // Step 3: b's bias correction uses its own t = 2, as PyTorch's per-parameter step.
  set_grad(b, {0.2, -0.4});
  adam.step();
  ra.step(0.3, 0.1, 0.1);
  rb.step(0.2, 0.1, 0.1);
  CHECK(std::fabs(a.data().to_vector()[0] - ra.p) < 1e-12);
  CHECK(std::fabs(b.data().to_vector()[0] - rb.p) < 1e-12);
  CHECK(adam.step_count() == 3);

  // SGD skips too.
  Variable c = param({4.0});
  SGDOptions so;
  so.momentum = 0.9;
  SGD sgd({ParamGroup{{{"c", c}}, 0.1}}, so);
  sgd.step();
  CHECK(c.data().item() == 4.0);
  CHECK(as_map(sgd.state_tensors()).at("momentum_buffer.c").item() == 0.0);

  // zero_grad drops every gradient.
  set_grad(a, {1.0, 1.0});
  adam.zero_grad();
  CHECK_FALSE(a.grad().defined());
}

TEST_CASE("AdamW and SGD fast paths (OpenMP, vectorised) match the scalar reference") {
  const int64_t n = 100003;  // several kParallelGrain chunks and a ragged tail
  Generator gen(7);
  Tensor p0 = randn({n}, gen, DType::F64), g1 = randn({n}, gen, DType::F64), g2 = randn({n}, gen, DType::F64);
  const std::vector<double> p0v = p0.to_vector(), g1v = g1.to_vector(), g2v = g2.to_vector();

  SUBCASE("AdamW float64") {
    Variable p(p0.clone(), true);
    AdamWOptions opt;
    opt.lr = 0.01;
    AdamW adam({ParamGroup{{{"p", p}}, 0.05}}, opt);
    p.set_grad(g1);
    adam.step();
    p.set_grad(g2);
    adam.step();
    std::vector<double> got = p.data().to_vector();
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      AdamRef r{p0v[i]};
      r.step(g1v[i], 0.01, 0.05);
      r.step(g2v[i], 0.01, 0.05);
      worst = std::max(worst, std::fabs(got[i] - r.p) / std::max(1.0, std::fabs(r.p)));
    }
    CHECK(worst < 1e-12);
  }
  SUBCASE("AdamW float32") {
    Variable p(p0.to(DType::F32), true);
    AdamWOptions opt;
    opt.lr = 0.01;
    AdamW adam({ParamGroup{{{"p", p}}, 0.05}}, opt);
    p.set_grad(g1.to(DType::F32));
    adam.step();
    std::vector<double> got = p.data().to_vector();
    const std::vector<double> pf = p0.to(DType::F32).to_vector(), gf = g1.to(DType::F32).to_vector();
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      AdamRef r{pf[i]};
      r.step(gf[i], 0.01, 0.05);
      worst = std::max(worst, std::fabs(got[i] - r.p) / std::max(1.0, std::fabs(r.p)));
    }
    CHECK(worst < 1e-6);  // float32 rounding of p (~6e-8 relative) and of the update
  }
  SUBCASE("SGD float64") {
    Variable p(p0.clone(), true);
    SGDOptions opt;
    opt.lr = 0.01;
    opt.momentum = 0.9;
    SGD sgd({ParamGroup{{{"p", p}}, 0.05}}, opt);
    p.set_grad(g1);
    sgd.step();
    p.set_grad(g2);
    sgd.step();
    std::vector<double> got = p.data().to_vector();
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      SgdRef r{p0v[i]};
      r.step(g1v[i], 0.01, 0.9, 0.05);
      r.step(g2v[i], 0.01, 0.9, 0.05);
      worst = std::max(worst, std::fabs(got[i] - r.p) / std::max(1.0, std::fabs(r.p)));
    }
    CHECK(worst < 1e-12);
  }
}

TEST_CASE("clip_grad_norm: global norm, scaling above the threshold only") {
  Variable a = param({3.0, 4.0}), b = param({12.0}), none = param({100.0});
  auto reset = [&] {
    set_grad(a, {3.0, 4.0});
    set_grad(b, {12.0});
  };
  const std::vector<Variable> params = {a, b, none};  // `none` has no gradient: ignored

  SUBCASE("above: norm sqrt(9 + 16 + 144) = 13, grads scaled by 6.5/(13 + 1e-6)") {
    reset();
    const double norm = clip_grad_norm(params, 6.5);
    CHECK(norm == 13.0);
    const double coef = 6.5 / (13.0 + 1e-6);  // 0.49999996153846...
    check_close(a.grad().to_vector(), {3.0 * coef, 4.0 * coef}, 1e-15);
    check_close(b.grad().to_vector(), {12.0 * coef}, 1e-15);
    CHECK_FALSE(none.grad().defined());
    // The clipped norm is max_norm up to the 1e-6 guard.
    CHECK(std::fabs(clip_grad_norm(params, 100.0) - 6.5) < 1e-6);
  }
  SUBCASE("below or at the threshold: unchanged") {
    reset();
    CHECK(clip_grad_norm(params, 20.0) == 13.0);
    CHECK(a.grad().to_vector() == std::vector<double>{3.0, 4.0});
    CHECK(b.grad().to_vector() == std::vector<double>{12.0});
    CHECK(clip_grad_norm(params, 13.0) == 13.0);
    CHECK(b.grad().to_vector() == std::vector<double>{12.0});
  }
  SUBCASE("non-finite norm is returned and nothing is scaled") {
    reset();
    set_grad(b, {std::numeric_limits<double>::infinity()});
    CHECK(std::isinf(clip_grad_norm(params, 1.0)));
    CHECK(a.grad().to_vector() == std::vector<double>{3.0, 4.0});
    set_grad(b, {std::nan("")});
    CHECK(std::isnan(clip_grad_norm(params, 1.0)));
    CHECK(a.grad().to_vector() == std::vector<double>{3.0, 4.0});
  }
  SUBCASE("float32 gradients are accumulated in double") {
    // (1e20)² = 1e40 overflows float32; the double sum does not.
    Variable f = param({1e20, 0.0}, DType::F32);
    set_grad(f, {1e20, 0.0});
    const double norm = clip_grad_norm({f}, 1e30);
    const double want = static_cast<double>(static_cast<float>(1e20));
    CHECK(std::fabs(norm - want) <= 1e-12 * want);
  }
  SUBCASE("bad max_norm") {
    reset();
    CHECK(error_of([&] { clip_grad_norm(params, 0.0); }).find("max_norm 0") != std::string::npos);
  }
}

TEST_CASE("clip_grad_norm fast path matches a plain double loop and is thread-count independent") {
  const int64_t n = 100003;
  Generator gen(11);
  Variable p(Tensor::zeros({n}, DType::F32), true), q(Tensor::zeros({5}, DType::F64), true);
  const Tensor gp = randn({n}, gen, DType::F32), gq = randn({5}, gen, DType::F64);
  double plain = 0.0;
  for (double v : gp.to_vector()) plain += v * v;
  for (double v : gq.to_vector()) plain += v * v;
  plain = std::sqrt(plain);
  p.set_grad(gp);
  q.set_grad(gq);
  const double norm = clip_grad_norm({p, q}, 1e9);
  CHECK(std::fabs(norm - plain) <= 1e-12 * plain);
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = clip_grad_norm({p, q}, 1e9);
  omp_set_num_threads(3);
  const double three = clip_grad_norm({p, q}, 1e9);
  omp_set_num_threads(threads);
  CHECK(one == norm);
  CHECK(three == norm);
#endif
  // Scaling a big float32 gradient: each element times the float32 coefficient.
  const double clipped = clip_grad_norm({p, q}, 1.0);
  CHECK(clipped == norm);
  const float coef = static_cast<float>(1.0 / (norm + 1e-6));
  const std::vector<double> before = gp.to_vector(), after = p.grad().to_vector();
  bool same = true;
  for (int64_t i = 0; i < n; ++i) same = same && after[i] == static_cast<double>(static_cast<float>(before[i]) * coef);
  CHECK(same);
}

TEST_CASE("set_grad_scale: the update with the clipping factor equals the update of clipped gradients, bit for bit") {
  // What the trainer does (gradient_norm, then its scale inside the update) against
  // clip_grad_norm followed by a plain step, for AdamW and SGD with momentum, float32 and
  // float64 parameters, over three steps with a different factor each. SGD without weight
  // decay: with it, g·s + wd·p may compile to one fused multiply-add, which does not round g·s
  // as the clipped gradient stored first is rounded.
  Generator gen(12);
  for (const DType dt : {DType::F32, DType::F64}) {
    const Tensor wa = randn({37}, gen, dt), wb = randn({5, 3}, gen, dt);
    for (const bool adamw : {true, false}) {
      CAPTURE(adamw);
      const std::string dtype = dtype_name(dt);
      CAPTURE(dtype);
      Variable a(wa.clone(), true), b(wb.clone(), true), ca(wa.clone(), true), cb(wb.clone(), true);
      auto make = [&](Variable x, Variable y) -> std::unique_ptr<Optimizer> {
        const NamedVariables named = {{"x", x}, {"y", y}};
        if (adamw) return std::make_unique<AdamW>(named, AdamWOptions{1e-2, 0.9, 0.95, 1e-8}, 0.1);
        return std::make_unique<SGD>(std::vector<ParamGroup>{{named, 0.0}}, SGDOptions{1e-2, 0.9});
      };
      const std::unique_ptr<Optimizer> scaled = make(a, b), clipped = make(ca, cb);
      for (const double max_norm : {0.5, 1e9, 2.0}) {  // clipped, not clipped, clipped
        CAPTURE(max_norm);
        const Tensor ga = randn({37}, gen, dt), gb = randn({5, 3}, gen, dt);
        a.set_grad(ga.clone());
        b.set_grad(gb.clone());
        ca.set_grad(ga.clone());
        cb.set_grad(gb.clone());
        const GradientNorm g = gradient_norm({a, b}, max_norm);
        CHECK(a.grad().to_vector() == ga.to_vector());  // measured, not rescaled
        CHECK(g.scale.dtype() == dt);
        const double factor = clip_factor(g.norm.item(), max_norm);
        CHECK(g.scale.item() == (dt == DType::F32 ? static_cast<double>(static_cast<float>(factor)) : factor));
        scaled->set_grad_scale(g.scale);
        scaled->step();
        CHECK(clip_grad_norm({ca, cb}, max_norm) == g.norm.item());
        clipped->step();
        CHECK(a.data().to_vector() == ca.data().to_vector());
        CHECK(b.data().to_vector() == cb.data().to_vector());
      }
      // The scale was for one step: the next one takes the gradients as they are.
      const Tensor ga = randn({37}, gen, dt), gb = randn({5, 3}, gen, dt);
      a.set_grad(ga.clone());
      b.set_grad(gb.clone());
      ca.set_grad(ga.clone());
      cb.set_grad(gb.clone());
      scaled->step();
      clipped->step();
      CHECK(a.data().to_vector() == ca.data().to_vector());
      const std::string bad_scale = error_of([&] { scaled->set_grad_scale(Tensor::ones({2}, DType::F32)); });
      CHECK_MESSAGE(contains(bad_scale, "gradient scale of shape (2,) and dtype float32, expected one float32 or "
                                        "float64 element"), bad_scale);
    }
  }
  Variable h(Tensor::ones({1}, DType::BF16), true);
  h.set_grad(Tensor::ones({1}, DType::BF16));
  CHECK(contains(error_of([&] { gradient_norm({h}, 1.0); }), "gradient_norm: the gradient of parameter 0 is bfloat16"));
  Variable f(Tensor::ones({1}, DType::F32), true), d(Tensor::ones({1}, DType::F64), true);
  f.set_grad(Tensor::ones({1}, DType::F32));
  d.set_grad(Tensor::ones({1}, DType::F64));
  CHECK(contains(error_of([&] { gradient_norm({f, d}, 1.0); }),
                 "gradient_norm: the gradients are float32 and float64"));
  CHECK(contains(error_of([&] { gradient_norm({f}, 0.0); }), "gradient_norm: max_norm 0, expected a value > 0"));
  const GradientNorm none = gradient_norm({Variable(Tensor::ones({1}, DType::F32), true)}, 1.0);
  CHECK(none.norm.item() == 0.0);
  CHECK_FALSE(none.scale.defined());
}

TEST_CASE("a non-finite gradient norm: the step updates nothing, and retract_step takes its counts back") {
  for (const bool adamw : {true, false}) {
    CAPTURE(adamw);
    Variable a(Tensor::from_vector({3}, {1.0, -2.0, 0.5}, DType::F32), true);
    Variable b(Tensor::from_vector({2}, {0.25, 4.0}, DType::F32), true);
    const NamedVariables named = {{"a", a}, {"b", b}};
    std::unique_ptr<Optimizer> opt;
    if (adamw) opt = std::make_unique<AdamW>(named, AdamWOptions{1e-2, 0.9, 0.95, 1e-8}, 0.1);
    else opt = std::make_unique<SGD>(std::vector<ParamGroup>{{named, 0.1}}, SGDOptions{1e-2, 0.9});
    a.set_grad(Tensor::from_vector({3}, {0.5, 0.25, -1.0}, DType::F32));
    b.set_grad(Tensor::from_vector({2}, {1.0, 2.0}, DType::F32));
    opt->step();  // a good step first: state that a bad one must leave alone
    const NamedTensors state = opt->state_tensors();
    const std::vector<double> pa = a.data().to_vector(), pb = b.data().to_vector();
    a.set_grad(Tensor::from_vector({3}, {0.5, std::nan(""), -1.0}, DType::F32));
    b.set_grad(Tensor::from_vector({2}, {1.0, 2.0}, DType::F32));
    const GradientNorm g = gradient_norm({a, b}, 1.0);
    CHECK(std::isnan(g.norm.item()));
    CHECK(std::isnan(g.scale.item()));
    opt->set_grad_scale(g.scale);
    opt->step();
    CHECK(a.data().to_vector() == pa);
    CHECK(b.data().to_vector() == pb);
    CHECK(opt->step_count() == 2);
    opt->retract_step();
    CHECK(opt->step_count() == 1);
    const NamedTensors after = opt->state_tensors();
    REQUIRE(after.size() == state.size());
    for (size_t i = 0; i < state.size(); ++i) {
      CAPTURE(state[i].first);
      CHECK(after[i].second.to_vector() == state[i].second.to_vector());
    }
  }
  AdamW fresh({{"a", Variable(Tensor::ones({1}, DType::F32), true)}}, AdamWOptions{});
  CHECK(contains(error_of([&] { fresh.retract_step(); }), "AdamW: retract_step before any step"));
}

TEST_CASE("warmup + cosine schedule values") {
  const double max_lr = 1e-3, min_lr = 1e-4;
  WarmupCosineSchedule s(max_lr, min_lr, 10, 110);
  auto cosine = [&](double progress) { return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(M_PI * progress)); };
  CHECK(s.lr(0) == doctest::Approx(1e-4).epsilon(1e-14));   // 1e-3·1/10
  CHECK(s.lr(4) == doctest::Approx(5e-4).epsilon(1e-14));   // 1e-3·5/10
  CHECK(s.lr(9) == doctest::Approx(1e-3).epsilon(1e-14));   // warmup − 1: 1e-3·10/10
  CHECK(s.lr(10) == doctest::Approx(1e-3).epsilon(1e-14));  // warmup: progress 0, cos 0 = 1
  CHECK(s.lr(60) == doctest::Approx(5.5e-4).epsilon(1e-14));  // progress 50/100: 1e-4 + 0.5·9e-4
  CHECK(s.lr(35) == doctest::Approx(cosine(0.25)).epsilon(1e-14));
  // total − 1: progress 99/100, 1e-4 + 4.5e-4·(1 + cos(0.99π)) = 1e-4 + 4.5e-4·4.9344e-4
  CHECK(s.lr(109) == doctest::Approx(cosine(0.99)).epsilon(1e-14));
  CHECK(s.lr(109) == doctest::Approx(1.0022204e-4).epsilon(1e-7));
  CHECK(s.lr(110) == min_lr);
  CHECK(s.lr(1000000) == min_lr);

  WarmupCosineSchedule no_warmup(2.0, 0.0, 0, 4);
  CHECK(no_warmup.lr(0) == 2.0);                                     // progress 0
  CHECK(no_warmup.lr(2) == doctest::Approx(1.0).epsilon(1e-15));     // progress 1/2
  CHECK(no_warmup.lr(3) == doctest::Approx(1.0 + std::cos(0.75 * M_PI)).epsilon(1e-15));
  CHECK(no_warmup.lr(4) == 0.0);

  WarmupCosineSchedule all_warmup(1.0, 0.5, 4, 4);
  CHECK(all_warmup.lr(0) == 0.25);
  CHECK(all_warmup.lr(3) == 1.0);
  CHECK(all_warmup.lr(4) == 0.5);
}

TEST_CASE("schedule argument errors") {
  CHECK(error_of([] { WarmupCosineSchedule(1e-3, 1e-4, 11, 10); }).find("warmup 11") != std::string::npos);
  CHECK(error_of([] { WarmupCosineSchedule(-1e-3, 0.0, 1, 10); }).find("max_lr -0.001") != std::string::npos);
  CHECK(error_of([] { WarmupCosineSchedule(1e-3, -1.0, 1, 10); }).find("min_lr -1") != std::string::npos);
  CHECK(error_of([] { WarmupCosineSchedule(1e-3, 1e-2, 1, 10); }).find("above max_lr") != std::string::npos);
  CHECK(error_of([] { WarmupCosineSchedule(1e-3, 0.0, 0, 0); }).find("total steps 0") != std::string::npos);
  WarmupCosineSchedule s(1.0, 0.0, 1, 10);
  CHECK(error_of([&] { s.lr(-1); }).find("step -1") != std::string::npos);
}

TEST_CASE("optimiser argument errors") {
  Variable w = param({1.0});
  AdamWOptions opt;
  opt.beta2 = 1.0;
  CHECK(error_of([&] { AdamW(NamedVariables{{"w", w}}, opt); }).find("beta2 1") != std::string::npos);
  CHECK(error_of([&] { AdamW(NamedVariables{{"w", w}, {"w", param({2.0})}}, AdamWOptions{}); })
            .find("two parameters are named 'w'") != std::string::npos);
  CHECK(error_of([&] { AdamW({ParamGroup{{{"a", w}}, 0.0}, ParamGroup{{{"b", w}}, 0.0}}, AdamWOptions{}); })
            .find("'b' is listed twice") != std::string::npos);
  CHECK(error_of([&] { AdamW(NamedVariables{{"w", w}}, AdamWOptions{}, -0.1); }).find("weight_decay -0.1") !=
        std::string::npos);
  Variable frozen(Tensor::ones({1}, DType::F64), false);
  CHECK(error_of([&] { AdamW(NamedVariables{{"f", frozen}}, AdamWOptions{}); }).find("'f' is not a leaf") !=
        std::string::npos);
  SGDOptions so;
  so.momentum = -0.5;
  CHECK(error_of([&] { SGD({ParamGroup{{{"w", w}}, 0.0}}, so); }).find("momentum -0.5") != std::string::npos);
  AdamW adam(NamedVariables{{"w", w}}, AdamWOptions{});
  CHECK(error_of([&] { adam.set_lr(-1.0); }).find("learning rate -1") != std::string::npos);
  w.set_grad(Tensor::ones({1}, DType::F32));
  CHECK(error_of([&] { adam.step(); }).find("gradient of 'w' is float32") != std::string::npos);
}

TEST_CASE("AdamW state save/load resumes bit-identically") {
  const std::vector<std::vector<double>> gw = {{0.5, -0.25}, {0.1, 0.4}, {-0.3, 0.2}};
  const std::vector<std::vector<double>> gb = {{1.0, -1.0}, {-0.5, 2.0}, {0.25, 0.0}};
  AdamWOptions opt;
  opt.lr = 0.1;
  auto make = [&](Variable& w, Variable& b) {
    return std::make_unique<AdamW>(std::vector<ParamGroup>{ParamGroup{{{"w", w}}, 0.1}, ParamGroup{{{"b", b}}, 0.0}},
                                   opt);
  };
  // The uninterrupted run.
  Variable w = param({1.0, -2.0}, DType::F32), b = param({0.3, 0.7}, DType::F32);
  auto adam = make(w, b);
  for (int s = 0; s < 2; ++s) {
    set_grad(w, gw[s]);
    set_grad(b, gb[s]);
    adam->step();
  }
  const NamedTensors saved = adam->state_tensors();
  const Tensor w_saved = w.data().clone(), b_saved = b.data().clone();
  set_grad(w, gw[2]);
  set_grad(b, gb[2]);
  adam->step();

  // The resumed run: fresh parameters from the "checkpoint", fresh optimiser.
  Variable w2(w_saved.clone(), true), b2(b_saved.clone(), true);
  auto resumed = make(w2, b2);
  resumed->load_state(saved);
  CHECK(resumed->step_count() == 2);
  set_grad(w2, gw[2]);
  set_grad(b2, gb[2]);
  resumed->step();
  CHECK(w2.data().to_vector() == w.data().to_vector());
  CHECK(b2.data().to_vector() == b.data().to_vector());
  const NamedTensors s1 = adam->state_tensors(), s2 = resumed->state_tensors();
  REQUIRE(s1.size() == s2.size());
  for (size_t i = 0; i < s1.size(); ++i) {
    CHECK(s1[i].first == s2[i].first);
    CHECK(s1[i].second.to_vector() == s2[i].second.to_vector());
  }
  // Without the state the third step differs: the comparison above can fail.
  Variable w3(w_saved.clone(), true), b3(b_saved.clone(), true);
  auto cold = make(w3, b3);
  set_grad(w3, gw[2]);
  set_grad(b3, gb[2]);
  cold->step();
  CHECK(w3.data().to_vector() != w.data().to_vector());

  // state_tensors() is a snapshot: later steps do not change it.
  const std::vector<double> snapshot = saved[1].second.to_vector();
  CHECK(saved[1].first == "exp_avg.w");
  CHECK(adam->state_tensors()[1].second.to_vector() != snapshot);
}

TEST_CASE("load_state rejects missing, misshaped, mistyped and unexpected entries, changing nothing") {
  Variable w = param({1.0, -2.0}), b = param({0.3, 0.7});
  AdamW adam({ParamGroup{{{"w", w}}, 0.1}, ParamGroup{{{"b", b}}, 0.0}}, AdamWOptions{});
  set_grad(w, {0.5, 0.5});
  set_grad(b, {0.5, 0.5});
  adam.step();
  const NamedTensors good = adam.state_tensors();

  NamedTensors missing;
  for (auto& e : good)
    if (e.first != "exp_avg_sq.b") missing.push_back(e);
  CHECK(error_of([&] { adam.load_state(missing); }).find("missing entry 'exp_avg_sq.b' (expected float64 (2,))") !=
        std::string::npos);

  NamedTensors misshaped = good;
  misshaped[1].second = Tensor::zeros({3}, DType::F64);  // exp_avg.w
  CHECK(error_of([&] { adam.load_state(misshaped); })
            .find("entry 'exp_avg.w' is float64 (3,), expected float64 (2,)") != std::string::npos);

  NamedTensors mistyped = good;
  mistyped[1].second = good[1].second.to(DType::F32);
  CHECK(error_of([&] { adam.load_state(mistyped); })
            .find("entry 'exp_avg.w' is float32 (2,), expected float64 (2,)") != std::string::npos);

  NamedTensors extra = good;
  extra.emplace_back("exp_avg.ghost", Tensor::zeros({2}, DType::F64));
  CHECK(error_of([&] { adam.load_state(extra); }).find("unexpected entry 'exp_avg.ghost'") != std::string::npos);

  // A state whose only bad entry is the last one checked is not half-applied:
  // its valid zero entries must not have been copied in.
  NamedTensors zeroed = good;
  for (auto& e : zeroed) e.second = Tensor::zeros(e.second.shape(), e.second.dtype());
  zeroed.back().second = Tensor::zeros({7}, DType::I64);  // step.b misshaped, checked last
  CHECK_FALSE(error_of([&] { adam.load_state(zeroed); }).empty());
  const NamedTensors now = adam.state_tensors();
  for (size_t i = 0; i < good.size(); ++i) CHECK(now[i].second.to_vector() == good[i].second.to_vector());
  CHECK(adam.step_count() == 1);

  // SGD's momentum state round-trips as well, and it names its own entries.
  Variable c = param({1.0});
  SGDOptions so;
  so.momentum = 0.9;
  SGD sgd({ParamGroup{{{"c", c}}, 0.0}}, so);
  CHECK(error_of([&] { sgd.load_state(good); }).find("SGD::load_state: missing entry 'momentum_buffer.c'") !=
        std::string::npos);
}

TEST_CASE("multi-tensor kernels: _cpu equals _ref over several tensors, with decay flags and a gradient scale") {
  // Sizes past the OpenMP grain (32768) and odd ones; decay on even tensors only.
  const std::vector<int64_t> sizes{1, 7, 40001, 3};
  std::mt19937_64 gen(5);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  auto fill = [&](int64_t n, double lo) {
    std::vector<double> v(static_cast<size_t>(n));
    for (double& x : v) x = lo >= 0 ? lo + std::abs(uni(gen)) : uni(gen);
    return v;
  };
  std::vector<std::vector<double>> p, g, m, v;
  for (int64_t n : sizes) {
    p.push_back(fill(n, -1));
    g.push_back(fill(n, -1));
    m.push_back(fill(n, -1));
    v.push_back(fill(n, 0.01));
  }
  auto descriptors = [&](std::vector<std::vector<double>>& pp, std::vector<std::vector<double>>& mm,
                         std::vector<std::vector<double>>& vv) {
    std::vector<OptimTensor<double>> d;
    for (size_t k = 0; k < sizes.size(); ++k)
      d.push_back({pp[k].data(), g[k].data(), mm[k].data(), vv[k].data(), sizes[k], int32_t(k % 2 == 0)});
    return d;
  };
  const int64_t count = static_cast<int64_t>(sizes.size());
  const double scale = 0.625;

  auto p1 = p, m1 = m, v1 = v, p2 = p, m2 = m, v2 = v;
  const AdamWStep adamw{1e-2, 0.9, 0.999, 1e-8, 0.1, 4};
  adamw_step_cpu<double>(descriptors(p1, m1, v1).data(), count, adamw, &scale);
  adamw_step_ref<double>(descriptors(p2, m2, v2).data(), count, adamw, &scale);
  CHECK(p1 == p2);  // the same per-element formula, elementwise: bit-identical
  CHECK(m1 == m2);
  CHECK(v1 == v2);
  CHECK(p1 != p);

  auto q1 = p, b1 = m, q2 = p, b2 = m;
  const SGDStep sgd{0.05, 0.9, 0.01};
  sgd_step_cpu<double>(descriptors(q1, b1, v1).data(), count, sgd, &scale);
  sgd_step_ref<double>(descriptors(q2, b2, v2).data(), count, sgd, &scale);
  CHECK(q1 == q2);
  CHECK(b1 == b2);
  CHECK(q1 != p);

  double n_cpu = 0, n_ref = 0, s_cpu = 0, s_ref = 0;
  const std::vector<OptimTensor<double>> d = descriptors(p, m, v);
  grad_norm_cpu<double>(&n_cpu, &s_cpu, d.data(), count, 1.0);
  grad_norm_ref<double>(&n_ref, &s_ref, d.data(), count, 1.0);
  CHECK(std::abs(n_cpu - n_ref) <= 1e-12 * n_ref);
  CHECK(s_cpu == doctest::Approx(1.0 / (n_ref + 1e-6)).epsilon(1e-12));
  CHECK(s_ref == doctest::Approx(1.0 / (n_ref + 1e-6)).epsilon(1e-12));
  grad_norm_cpu<double>(&n_cpu, &s_cpu, d.data(), count, 2 * n_ref);
  CHECK(s_cpu == 1.0);

  // A non-finite gradient: the norm is not finite, the factor NaN, and a step given that factor
  // writes nothing (every variant).
  for (const double bad_value : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    CAPTURE(bad_value);
    auto gb = g;
    gb[2][123] = bad_value;
    std::vector<OptimTensor<double>> db = descriptors(p, m, v);
    for (size_t k = 0; k < db.size(); ++k) db[k].grad = gb[k].data();
    grad_norm_cpu<double>(&n_cpu, &s_cpu, db.data(), count, 1.0);
    grad_norm_ref<double>(&n_ref, &s_ref, db.data(), count, 1.0);
    CHECK_FALSE(std::isfinite(n_cpu));
    CHECK_FALSE(std::isfinite(n_ref));
    CHECK(std::isnan(s_cpu));
    CHECK(std::isnan(s_ref));
    for (const double skip : {s_cpu, std::numeric_limits<double>::infinity()}) {
      auto ps = p, ms = m, vs = v;
      std::vector<OptimTensor<double>> ds = descriptors(ps, ms, vs);
      for (size_t k = 0; k < ds.size(); ++k) ds[k].grad = gb[k].data();
      adamw_step_cpu<double>(ds.data(), count, adamw, &skip);
      adamw_step_ref<double>(ds.data(), count, adamw, &skip);
      sgd_step_cpu<double>(ds.data(), count, sgd, &skip);
      sgd_step_ref<double>(ds.data(), count, sgd, &skip);
      CHECK(ps == p);
      CHECK(ms == m);
      CHECK(vs == v);
    }
  }

  // A null moment is an error naming the tensor.
  std::vector<OptimTensor<double>> bad = descriptors(p1, m1, v1);
  bad[2].v = nullptr;
  const std::string msg = error_of([&] { adamw_step_cpu<double>(bad.data(), count, adamw, nullptr); });
  CHECK_MESSAGE(contains(msg, "adamw_step_cpu: tensor 2 has a null v"), msg);
}

TEST_CASE("set_bfloat16_copies: a step writes the updated parameters rounded to bfloat16, skipped ones keep theirs") {
  // float32 masters as in mixed-precision training; sizes past the OpenMP grain (32768).
  Generator gen(17);
  Variable a(randn({40001}, gen, DType::F32), true), b(randn({3, 5}, gen, DType::F32), true),
      c(randn({7}, gen, DType::F32), true);
  const NamedVariables params{{"a", a}, {"b", b}, {"c", c}};
  const auto nan_copy = [](const Variable& p) {
    return Tensor::full(p.shape(), std::numeric_limits<double>::quiet_NaN(), DType::BF16);
  };
  // The copy of p's current values rounded once, the bits the optimiser must write.
  const auto rounded = [](const Variable& p) { return p.data().to(DType::BF16).to_vector(); };
  for (const bool use_sgd : {false, true}) {
    INFO((use_sgd ? "SGD" : "AdamW"));
    for (Variable p : {a, b, c}) p.set_grad(randn(p.shape(), gen, DType::F32));
    std::unique_ptr<Optimizer> opt;
    if (use_sgd) {
      SGDOptions so;
      so.momentum = 0.9;
      opt = std::make_unique<SGD>(std::vector<ParamGroup>{ParamGroup{params, 0.1}}, so);
    } else {
      opt = std::make_unique<AdamW>(std::vector<ParamGroup>{{{params[0], params[1]}, 0.1}, {{params[2]}, 0.0}},
                                    AdamWOptions{});
    }
    const Tensor ca = nan_copy(a), cb = nan_copy(b), cc = nan_copy(c);
    opt->set_bfloat16_copies({{"a", ca}, {"b", cb}, {"c", cc}});
    c.zero_grad();  // c is skipped: its copy is not written (stays NaN)
    opt->step();
    CHECK(ca.to_vector() == rounded(a));
    CHECK(cb.to_vector() == rounded(b));
    for (double v : cc.to_vector()) CHECK(std::isnan(v));
    // Only some parameters given a copy: the others are updated as before.
    const Tensor cb2 = nan_copy(b);
    opt->set_bfloat16_copies({{"b", cb2}});
    const std::vector<double> a_before = a.data().to_vector();
    opt->step();
    CHECK(cb2.to_vector() == rounded(b));
    CHECK(a.data().to_vector() != a_before);
    CHECK(ca.to_vector() != rounded(a));  // no longer a's copy
  }
  // Errors name the parameter and what was expected.
  AdamW adam(params, AdamWOptions{});
  const std::string wrong_dtype =
      error_of([&] { adam.set_bfloat16_copies({{"a", Tensor::zeros({40001}, DType::F32)}}); });
  CHECK_MESSAGE(contains(wrong_dtype, "AdamW::set_bfloat16_copies: the copy of 'a' is float32 (40001,) on cpu, "
                                      "expected a contiguous bfloat16 (40001,) on cpu"),
                wrong_dtype);
  CHECK(contains(error_of([&] { adam.set_bfloat16_copies({{"b", Tensor::zeros({5, 3}, DType::BF16)}}); }),
                 "the copy of 'b' is bfloat16 (5, 3)"));
  const Tensor transposed = Tensor::zeros({5, 3}, DType::BF16).transpose(0, 1);
  CHECK(contains(error_of([&] { adam.set_bfloat16_copies({{"b", transposed}}); }), ", not contiguous"));
  CHECK(contains(error_of([&] { adam.set_bfloat16_copies({{"z", Tensor::zeros({1}, DType::BF16)}}); }),
                 "'z' is not a parameter of this optimiser"));
  const Tensor c7 = Tensor::zeros({7}, DType::BF16);
  CHECK(contains(error_of([&] { adam.set_bfloat16_copies({{"c", c7}, {"c", c7}}); }), "two copies are named 'c'"));
}

TEST_CASE("multi-tensor kernels with bfloat16 copies: _cpu and _ref write the rounded parameters (float32, float64)") {
  const auto run = [](auto tag) {
    using T = decltype(tag);
    const std::vector<int64_t> sizes{1, 40001, 3};
    std::mt19937_64 gen(9);
    std::uniform_real_distribution<double> uni(-1.0, 1.0);
    std::vector<std::vector<T>> p(3), g(3), m(3), v(3);
    std::vector<std::vector<bfloat16>> copy(3);
    for (size_t k = 0; k < sizes.size(); ++k)
      for (int64_t i = 0; i < sizes[k]; ++i) {
        p[k].push_back(T(uni(gen)));
        g[k].push_back(T(uni(gen)));
        m[k].push_back(T(uni(gen)));
        v[k].push_back(T(0.01 + std::abs(uni(gen))));
        copy[k].push_back(bfloat16(std::numeric_limits<float>::quiet_NaN()));
      }
    for (int variant = 0; variant < 4; ++variant) {  // adamw cpu, adamw ref, sgd cpu, sgd ref
      INFO("variant " << variant << " sizeof(T) " << sizeof(T));
      auto pp = p, mm = m, vv = v;
      auto cc = copy;
      std::vector<OptimTensor<T>> d;
      for (size_t k = 0; k < sizes.size(); ++k)
        d.push_back({pp[k].data(), g[k].data(), mm[k].data(), vv[k].data(), sizes[k], int32_t(k % 2), cc[k].data()});
      const AdamWStep adamw{1e-2, 0.9, 0.999, 1e-8, 0.1, 2};
      const SGDStep sgd{0.05, 0.9, 0.01};
      if (variant == 0) adamw_step_cpu<T>(d.data(), 3, adamw, nullptr);
      if (variant == 1) adamw_step_ref<T>(d.data(), 3, adamw, nullptr);
      if (variant == 2) sgd_step_cpu<T>(d.data(), 3, sgd, nullptr);
      if (variant == 3) sgd_step_ref<T>(d.data(), 3, sgd, nullptr);
      for (size_t k = 0; k < sizes.size(); ++k) {
        CHECK(pp[k] != p[k]);
        int64_t wrong = 0;
        for (int64_t i = 0; i < sizes[k]; ++i) wrong += cc[k][i].bits != bfloat16(pp[k][i]).bits;
        CHECK(wrong == 0);
      }
    }
  };
  run(float{});
  run(double{});
}

TEST_CASE("widen_gradients: the kernels widen exactly; the Variable call moves every copy's gradient to its master") {
  // The kernels: _cpu equals _ref bit for bit and equals Tensor::to, over sizes past the OpenMP
  // grain (32768), an odd one and an empty one.
  Generator gen(23);
  const std::vector<int64_t> sizes{40001, 7, 0};
  std::vector<Tensor> src;
  std::vector<std::vector<float>> a, b;
  std::vector<WidenTensor> da, db;
  for (int64_t n : sizes) {
    src.push_back(randn({n}, gen, DType::F32).to(DType::BF16));
    a.emplace_back(size_t(n), std::numeric_limits<float>::quiet_NaN());
    b.emplace_back(size_t(n), std::numeric_limits<float>::quiet_NaN());
  }
  for (size_t k = 0; k < sizes.size(); ++k) {
    da.push_back({a[k].data(), src[k].data<bfloat16>(), sizes[k]});
    db.push_back({b[k].data(), src[k].data<bfloat16>(), sizes[k]});
  }
  widen_gradients_cpu(da.data(), int64_t(da.size()));
  widen_gradients_ref(db.data(), int64_t(db.size()));
  for (size_t k = 0; k < sizes.size(); ++k) {
    const std::vector<double> want = src[k].to(DType::F32).to_vector();
    CHECK(a[k] == b[k]);
    CHECK(std::vector<double>(a[k].begin(), a[k].end()) == want);
  }
  da[1].src = nullptr;
  const std::string msg = error_of([&] { widen_gradients_cpu(da.data(), 2); });
  CHECK_MESSAGE(contains(msg, "widen_gradients_cpu: tensor 1 has a null dst or src"), msg);

  // The Variable call: masters get the widened gradients, copies lose theirs; a copy without a
  // gradient leaves its master alone.
  Variable m1(randn({3, 5}, gen, DType::F32), true), m2(randn({4}, gen, DType::F32), true);
  Variable c1(m1.data().to(DType::BF16), true), c2(m2.data().to(DType::BF16), true);
  const Tensor g1 = randn({3, 5}, gen, DType::F32).to(DType::BF16);
  c1.set_grad(g1);
  const Tensor old2 = randn({4}, gen, DType::F32);
  m2.set_grad(old2);
  widen_gradients({{c1, m1}, {c2, m2}});
  REQUIRE(m1.grad().defined());
  CHECK(m1.grad().dtype() == DType::F32);
  CHECK(m1.grad().to_vector() == g1.to(DType::F32).to_vector());
  CHECK(!c1.grad().defined());
  CHECK(m2.grad().to_vector() == old2.to_vector());
  c1.set_grad(g1);
  const std::string wrong = error_of([&] { widen_gradients({{c1, m2}}); });
  CHECK_MESSAGE(contains(wrong, "widen_gradients: expected a bfloat16 gradient and a float32 master of one shape"), wrong);
}
