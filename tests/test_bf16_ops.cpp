// tests/test_bf16_ops.cpp: every tensor-level compute op, and the autograd gradients through
// them, in bfloat16 on the CPU against the same op in float64 on the same values.
//
// Method (the rows, layouts and operands of tests/backend_ops.h, the row's bf16_tol as the
// bound): each row's operands are fresh uniform random values (never zero) rounded to
// bfloat16 once, in the layouts contiguous, permuted, sliced and broadcast, with odd sizes. The float64 reference runs on the same
// values (widening is exact), through the same views. Rows that call a kernel family
// directly hand it a NaN-filled output, so a cell the kernel fails to write fails the
// comparison (NaN must sit exactly where the float64 run has it).
//
// Tolerances, normwise ||bf16 − f64||₂ / ||f64||₂:
//   1e-2 for the computing ops (issue 7). A bfloat16 kernel computes in float32 and rounds
//     its result once, so one op is within one rounding, 2^-8 relative per element (about
//     2^-9 on average); a chain of ops (a gradient, a backward from a rounded forward value)
//     adds one rounding per op. Measured: at most 4.6e-3 for single ops, 7.6e-3 for the
//     gradients (sigmoid's σ(1 − σ) from the rounded σ, div and pow), 1.4e-3 on average.
//   0 (exact) for what only moves values: index_select, gather, embedding, cat, split,
//     contiguous, copies, max (values and indices).
//   mul: the bfloat16 result equals the float64 product rounded to bfloat16 (the float32
//     product of two bfloat16 values is exact), which shows the single rounding.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "tensor/dispatch.h"
#include "tensor/ops.h"
#include "tests/backend_ops.h"
#include "tests/test_util.h"

using namespace simba;
using namespace simba::backend_ops;

namespace {

// The same operand (values and view) in another dtype.
Operand as_dtype(const Operand& o, DType dt) { return {o.base.to(dt), o.layout, o.shape}; }

void check_output(const std::string& what, const Tensor& got, const Tensor& ref, double tol) {
  INFO(what);
  REQUIRE(got.defined() == ref.defined());
  if (!ref.defined()) return;
  REQUIRE(shape_str(got.shape()) == shape_str(ref.shape()));
  if (ref.dtype() == DType::I64) {
    REQUIRE(got.dtype() == DType::I64);
    CHECK(got.to_ints() == ref.to_ints());
    return;
  }
  CHECK(got.dtype() == DType::BF16);
  const double err = normwise_error(got.to_vector(), ref.to_vector());
  CHECK_MESSAGE(err <= tol, "normwise error " << err << " > tolerance " << tol);
}

// The row's outputs in bfloat16 against float64 within r.bf16_tol, over its layouts.
void run_row(const OpCase& r) {
  uint64_t seed = std::hash<std::string>{}(r.name);
  for (Layout l : r.layouts) {
    const std::string label = case_label(r.name, DType::BF16, l);
    INFO(label);
    const std::vector<Operand> ops = make_operands(r.shapes, l, DType::BF16, r.lo, r.hi, ++seed);
    Ins half, wide;
    for (const Operand& o : ops) {
      half.push_back(o.on(cpu()));
      wide.push_back(as_dtype(o, DType::F64).on(cpu()));
    }
    const Outs got = r.forward(half), ref = r.forward(wide);
    REQUIRE(got.size() == ref.size());
    for (size_t i = 0; i < ref.size(); ++i)
      check_output(label + " output " + std::to_string(i), got[i], ref[i], r.bf16_tol);
  }
}

// The row's output and gradients in bfloat16 against float64 within r.bf16_tol.
void run_row(const GradCase& r) {
  uint64_t seed = std::hash<std::string>{}(r.name);
  for (Layout l : r.layouts) {
    const std::string label = case_label(r.name, DType::BF16, l);
    INFO(label);
    const std::vector<Operand> ops = make_operands(r.shapes, l, DType::BF16, r.lo, r.hi, ++seed);
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
    Tensor upstream;  // bfloat16 values, the same in both runs
    auto run = [&](DType dt, Outs& grads) {
      VarIns vars;
      for (const Operand& o : ops) vars.emplace_back(as_dtype(o, dt).on(cpu()), /*requires_grad=*/true);
      const Variable y = r.forward(vars);
      if (!upstream.defined()) upstream = random_tensor(y.shape(), DType::BF16, -1.0, 1.0, rng);
      y.backward(upstream.to(dt));
      for (const Variable& v : vars) grads.push_back(v.grad());
      return y.data();
    };
    Outs got_grads, ref_grads;
    const Tensor got = run(DType::BF16, got_grads);
    const Tensor ref = run(DType::F64, ref_grads);
    check_output(label + " output", got, ref, r.bf16_tol);
    for (size_t i = 0; i < ref_grads.size(); ++i)
      check_output(label + " gradient of operand " + std::to_string(i), got_grads[i], ref_grads[i], r.bf16_tol);
  }
}

const std::vector<Shape> kShapes = {{1}, {7}, {33, 7}, {3, 5, 67}, {1025}};

// A forward row held to `tol` against float64 (0: the values must be equal).
OpCase bf16_row(const std::string& op, std::vector<Shape> shapes, std::function<Outs(const Ins&)> f,
                double tol = 1e-2, std::pair<double, double> range = {-2.0, 2.0}) {
  OpCase c = op_case(op, std::move(shapes), std::move(f), range.first, range.second);
  c.bf16_tol = tol;
  return c;
}

// y = op(x) as the bfloat16 forward gives it, in x's dtype: the y a backward kernel gets in
// both runs, so they compare the kernel on equal inputs. (From a float64 y instead, a
// derivative like σ(x)(1 − σ(x)) cancels the bfloat16 rounding of y near 1 and inherits
// its 2^-8 absolute error, relative errors of 10% at x = 5: the conditioning of the data,
// not the kernel's accuracy.)
Tensor bf16_output(UnaryOp op, const Tensor& x) { return unary(op, x.to(DType::BF16)).to(x.dtype()); }

Tensor ids(const Shape& shape, int64_t hi, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(static_cast<size_t>(shape_numel(shape)));
  for (int64_t& x : v) x = g.randint(0, hi);
  return Tensor::from_ints(shape, v);
}

}  // namespace

TEST_CASE("bfloat16 unary ops and their backward match float64") {
  for (UnaryOp op : kAllUnaryOps) {
    const auto range = unary_operand_range(op);
    const std::string name = unary_name(op);
    for (const Shape& s : kShapes) {
      run_row(bf16_row(name, {s}, [op](const Ins& x) { return Outs{unary(op, x[0])}; }, 1e-2, range));
      run_row(bf16_row(name + " backward", {s, s},
                  [op](const Ins& x) { return Outs{unary_backward(op, x[0], x[1], bf16_output(op, x[1]))}; }, 1e-2,
                  range));
    }
    run_row(bf16_row(name + " poisoned", {{33, 7}},
                [op](const Ins& x) {
                  Tensor out = poisoned(x[0].shape(), x[0].dtype(), cpu());
                  SIMBA_ON_DEVICE(cpu(), "unary", unary, op, out, x[0]);
                  Tensor dx = poisoned(x[0].shape(), x[0].dtype(), cpu());
                  SIMBA_ON_DEVICE(cpu(), "unary_backward", unary_backward, op, dx, x[0], x[0], bf16_output(op, x[0]));
                  return Outs{out, dx};
                },
                1e-2, range));
  }
}

TEST_CASE("bfloat16 binary ops with broadcasting match float64; mul rounds once") {
  const std::vector<std::vector<Shape>> pairs = {{{1}, {1}},      {{7}, {7}},          {{33, 7}, {7}},
                                                 {{33, 1}, {1, 7}}, {{5, 1, 67}, {3, 67}}, {{1}, {1025}}};
  for (BinaryOp op : kAllBinaryOps) {
    const auto range = binary_operand_range(op);
    for (const auto& shapes : pairs)
      run_row(bf16_row(binary_name(op), shapes, [op](const Ins& x) { return Outs{binary(op, x[0], x[1])}; }, 1e-2,
                       range));
    run_row(bf16_row(std::string(binary_name(op)) + " poisoned", {{33, 1}, {1, 7}},
                [op](const Ins& x) {
                  Tensor out = poisoned({33, 7}, x[0].dtype(), cpu());
                  SIMBA_ON_DEVICE(cpu(), "binary", binary, op, out, x[0].expand({33, 7}), x[1].expand({33, 7}));
                  return Outs{out};
                },
                1e-2, range));
  }
  // The float32 product of two bfloat16 values is exact, so one rounding gives exactly the
  // float64 product rounded to bfloat16.
  Generator g(5);
  const Tensor a = randn({33, 67}, g, DType::BF16), b = randn({67}, g, DType::BF16);
  const Tensor prod = mul(a, b);
  CHECK(prod.dtype() == DType::BF16);
  CHECK(prod.to_vector() == mul(a.to(DType::F64), b.to(DType::F64)).to(DType::BF16).to_vector());
}

TEST_CASE("bfloat16 affine, pow, clamp and clamp's backward match float64") {
  for (const Shape& s : kShapes) {
    run_row(bf16_row("affine", {s},
                     [](const Ins& x) { return Outs{affine(x[0], 1.7, -0.3), x[0] * 2.0, x[0] - 1.5}; }));
    run_row(bf16_row("pow 2.5, -1.5", {s}, [](const Ins& x) { return Outs{pow(x[0], 2.5), pow(x[0], -1.5)}; }, 1e-2,
                {0.5, 2.0}));
    run_row(bf16_row("clamp", {s}, [](const Ins& x) { return Outs{clamp(x[0], -0.5, 0.7)}; }));
    run_row(bf16_row("clamp_backward", {s, s},
                     [](const Ins& x) { return Outs{clamp_backward(x[0], x[1], -0.5, 0.7)}; }));
  }
  run_row(bf16_row("scalar_op, clamp_backward poisoned", {{3, 5, 67}},
              [](const Ins& x) {
                Outs outs;
                for (ScalarOp op : {ScalarOp::Affine, ScalarOp::Pow, ScalarOp::Clamp}) {
                  Tensor out = poisoned(x[0].shape(), x[0].dtype(), cpu());
                  SIMBA_ON_DEVICE(cpu(), "scalar_op", scalar_op, op, out, x[0], 1.25, 1.5);
                  outs.push_back(out);
                }
                Tensor dx = poisoned(x[0].shape(), x[0].dtype(), cpu());
                SIMBA_ON_DEVICE(cpu(), "clamp", clamp_backward, dx, x[0], x[0], 0.75, 1.5);
                outs.push_back(dx);
                return outs;
              },
              1e-2, {0.5, 2.0}));
}

TEST_CASE("bfloat16 reductions match float64; max is exact") {
  // Sums take positive inputs: a sum that cancels has no relative accuracy in any dtype.
  for (const Shape& s : {Shape{7}, Shape{33, 7}, Shape{3, 5, 67}, Shape{1025}, Shape{300, 301}}) {
    for (int d = 0; d < static_cast<int>(s.size()); ++d) {
      const std::string dim = " dim " + std::to_string(d);
      run_row(bf16_row("sum, mean" + dim, {s},
                  [d](const Ins& x) { return Outs{sum(x[0], d), sum(x[0], d, true), mean(x[0], d)}; }, 1e-2,
                  {0.0, 2.0}));
      run_row(bf16_row("max" + dim, {s},
                  [d](const Ins& x) {
                    const MaxResult r = max(x[0], d);
                    const MaxResult ties = max(clamp(x[0], -0.5, 0.5), d);
                    return Outs{r.values, r.indices, argmax(x[0], d, true), ties.values, ties.indices};
                  },
                  0.0));
    }
    run_row(bf16_row("sum, mean of all", {s}, [](const Ins& x) { return Outs{sum(x[0]), mean(x[0])}; }, 1e-2,
                     {0.0, 2.0}));
    run_row(bf16_row("max of all", {s}, [](const Ins& x) { return Outs{max(x[0])}; }, 0.0));
  }
  run_row(bf16_row("poisoned sum_dim, max_dim, sum_all", {{3, 5, 67}},
              [](const Ins& x) {
                const Tensor c = x[0].contiguous();
                Tensor out = poisoned({3, 67}, c.dtype(), cpu()), values = poisoned({3, 67}, c.dtype(), cpu());
                Tensor indices = Tensor::full({3, 67}, -1.0, DType::I64);
                Tensor all = poisoned({}, c.dtype(), cpu());
                SIMBA_ON_DEVICE(cpu(), "sum", sum_dim, out, c, 3, 5, 67);
                SIMBA_ON_DEVICE(cpu(), "max", max_dim, values, indices, c, 3, 5, 67);
                SIMBA_ON_DEVICE(cpu(), "sum", sum_all, all, c);
                return Outs{out, values, indices, all};
              },
              1e-2, {0.0, 2.0}));
  run_row(bf16_row("sum_to", {{5, 3, 67}}, [](const Ins& x) { return Outs{sum_to(x[0], {3, 1}), sum_to(x[0], {67})}; },
              1e-2, {0.0, 2.0}));
}

TEST_CASE("bfloat16 matmul and gemm match float64: transposed, sliced, batched, broadcast operands") {
  const std::vector<std::vector<Shape>> products = {{{1, 1}, {1, 1}},         {{7, 33}, {33, 129}},
                                                    {{33, 1}, {1, 7}},        {{5, 7, 33}, {5, 33, 9}},
                                                    {{4, 9, 33}, {33, 17}},   {{3, 1, 7, 33}, {5, 33, 9}}};
  for (const auto& shapes : products)
    run_row(bf16_row("matmul", shapes, [](const Ins& x) { return Outs{matmul(x[0], x[1])}; }));
  // out is columns [2, 2 + N) of a NaN-filled (M, N + 5) buffer: the border must stay NaN.
  for (double beta : {0.0, 0.5}) {
    run_row(bf16_row("gemm beta " + std::to_string(beta), {{33, 7}, {7, 65}, {33, 65}},
                [beta](const Ins& x) {
                  Tensor buf = poisoned({33, 70}, x[0].dtype(), cpu());
                  Tensor out = buf.narrow(1, 2, 65);
                  if (beta != 0.0) out.copy_(x[2]);
                  gemm(out, x[0], x[1], -2.0, beta);
                  return Outs{buf};
                }));
  }
}

TEST_CASE("bfloat16 index ops: moves are exact, sums accumulate in float32 and round once") {
  const Tensor rows9 = ids({9}, 5, 1), rows3 = ids({3}, 6, 2);
  const Tensor elems = ids({6, 11, 4}, 5, 3), tokens = ids({3, 8}, 33, 4);
  run_row(bf16_row("index_select, gather, embedding", {{4, 5, 6}, {6, 5, 4}, {33, 17}},
              [&](const Ins& x) {
                return Outs{index_select(x[0], 1, rows9), index_select(x[0], -1, rows3),
                            gather(x[1], 1, elems.narrow(1, 0, 3).clone()), embedding(x[2], tokens)};
              },
              0.0));
  run_row(bf16_row("index_add, scatter_add", {{4, 5, 6}, {4, 9, 6}, {6, 5, 4}, {6, 11, 4}},
              [&](const Ins& x) {
                return Outs{index_add(x[0], 1, rows9, x[1]), scatter_add(x[2], 1, elems, x[3])};
              }));
  run_row(bf16_row("embedding_backward", {{3, 8, 17}},
              [&](const Ins& x) { return Outs{embedding_backward(x[0], tokens, 33)}; }));
  // Many repeats of one row: float32 accumulation, one rounding (bfloat16 steps would drift).
  run_row(bf16_row("embedding_backward, 500 repeats", {{500, 9}},
              [](const Ins& x) { return Outs{embedding_backward(x[0], Tensor::zeros({500}, DType::I64), 2)}; }, 1e-2,
              {0.0, 2.0}));
  run_row(bf16_row("cat, split, contiguous, clone, copy_", {{3, 5, 7}, {3, 2, 7}},
              [](const Ins& x) {
                Outs outs = split(cat({x[0], x[1]}, 1), {2, 4, 1}, 1);
                outs.push_back(x[0].contiguous());
                outs.push_back(x[1].clone());
                Tensor dst = poisoned({5, 7, 9}, x[0].dtype(), cpu());
                dst.narrow(0, 1, 3).narrow(1, 1, 5).narrow(2, 1, 7).copy_(x[0]);
                outs.push_back(dst);
                return outs;
              },
              0.0));
}

TEST_CASE("bfloat16 gradients through autograd, Linear and Embedding match float64") {
  for (UnaryOp op : kAllUnaryOps)
    run_row(grad_case(unary_name(op), {{33, 7}}, [op](const VarIns& x) { return unary(op, x[0]); },
                     unary_operand_range(op).first, unary_operand_range(op).second));
  for (BinaryOp op : kAllBinaryOps)
    for (const std::vector<Shape>& shapes : {std::vector<Shape>{{33, 7}, {7}}, std::vector<Shape>{{5, 1, 67}, {3, 67}}})
      run_row(grad_case(binary_name(op), shapes, [op](const VarIns& x) { return binary(op, x[0], x[1]); },
                       binary_operand_range(op).first, binary_operand_range(op).second));
  const Shape t = {3, 5, 67};
  run_row(grad_case("affine, pow, clamp", {{33, 7}},
                   [](const VarIns& x) { return affine(x[0], 1.7, -0.3) + pow(x[0], 3.0) + clamp(x[0], -0.5, 0.7); }));
  for (int d = 0; d < 3; ++d)
    run_row(grad_case("sum, mean, max dim " + std::to_string(d), {t},
                     [d](const VarIns& x) { return sum(x[0], d) + mean(x[0], d) + max(x[0], d); }));
  run_row(grad_case("sum, mean, max of all", {t}, [](const VarIns& x) { return sum(x[0]) + mean(x[0]) + max(x[0]); },
                   0.0, 2.0));
  run_row(grad_case("matmul", {{4, 9, 33}, {33, 17}}, [](const VarIns& x) { return matmul(x[0], x[1]); }));
  run_row(grad_case("batched matmul", {{3, 7, 33}, {3, 33, 5}}, [](const VarIns& x) { return matmul(x[0], x[1]); }));
  const Tensor rows9 = ids({9}, 5, 11), elems = ids({6, 11, 4}, 5, 12);
  run_row(grad_case("index_add, scatter_add", {{4, 5, 6}, {4, 9, 6}, {6, 5, 4}, {6, 11, 4}},
                   [&](const VarIns& x) {
                     return cat({reshape(index_add(x[0], 1, rows9, x[1]), {120}),
                                 reshape(scatter_add(x[2], 1, elems, x[3]), {120})},
                                0);
                   }));
  run_row(grad_case("index_select, gather", {{4, 5, 6}, {6, 5, 4}},
                   [&](const VarIns& x) {
                     return cat({reshape(index_select(x[0], 1, rows9), {216}), reshape(gather(x[1], 1, elems), {264})},
                                0);
                   }));
  run_row(grad_case("cat, split", {{3, 5, 7}, {3, 2, 7}},
                   [](const VarIns& x) {
                     const std::vector<Variable> p = split(cat({x[0], x[1]}, 1), {3, 4}, 1);
                     return cat({square(p[1]), p[0]}, 1);
                   }));
  // nn/: Linear (bias + GEMM, backward two GEMMs and a row sum) and Embedding (index_select,
  // backward the row scatter).
  run_row(grad_case("linear", {{4, 9, 33}, {17, 33}, {17}},
                   [](const VarIns& x) { return linear(x[0], x[1], x[2]); }));
  const Tensor tokens = ids({3, 8}, 33, 13);
  run_row(grad_case("embedding", {{33, 17}}, [&](const VarIns& x) { return embedding(x[0], tokens); }));
  Generator g(21);
  Linear lin(33, 17, true, &g, DType::BF16);
  Embedding emb(33, 33, &g, DType::BF16);
  CHECK(lin.weight.dtype() == DType::BF16);
  const Variable y = lin.forward(emb.forward(tokens));
  CHECK(y.dtype() == DType::BF16);
  sum(y).backward();
  CHECK(lin.weight.grad().dtype() == DType::BF16);
  CHECK(emb.weight.grad().dtype() == DType::BF16);
  const Tensor y64 =
      linear(Variable(embedding(emb.weight.data().to(DType::F64), tokens)), Variable(lin.weight.data().to(DType::F64)),
             Variable(lin.bias.data().to(DType::F64)))
          .data();
  CHECK(normwise_error(y.data().to_vector(), y64.to_vector()) <= 1e-2);
}

TEST_CASE("bfloat16 rand and randn draw as float64 does and round once") {
  Generator a(7), b(7);
  CHECK(randn({33, 7}, a, DType::BF16).to_vector() == randn({33, 7}, b, DType::F64).to(DType::BF16).to_vector());
  CHECK(rand({1025}, a, DType::BF16).to_vector() == rand({1025}, b, DType::F64).to(DType::BF16).to_vector());
}

TEST_CASE("float16 is storage only: compute ops name the op and say to convert it") {
  const Tensor h = Tensor::full({3, 3}, 0.5, DType::F16);
  const Tensor i = Tensor::from_ints({2}, {0, 2});
  const std::vector<std::pair<const char*, std::function<void()>>> cases = {
      {"exp", [&] { exp(h); }},
      {"add", [&] { add(h, h); }},
      {"affine", [&] { affine(h, 2.0, 1.0); }},
      {"sum", [&] { sum(h, 0); }},
      {"sum", [&] { sum(h); }},
      {"max", [&] { max(h, 1); }},
      {"matmul", [&] { matmul(h, h); }},
      {"index_add", [&] { index_add(h, 0, i, h.narrow(0, 0, 2)); }},
      {"embedding_backward", [&] { embedding_backward(h, Tensor::from_ints({3}, {0, 2, 2}), 3); }},
  };
  for (const auto& [op, f] : cases) {
    const std::string m = error_of(f);
    INFO(m);
    CHECK(contains(m, std::string(op) + ": expected float32, float64 or bfloat16 (convert float16 with Tensor::to), "
                                        "got float16"));
  }
  // Moving float16 values needs no compute: index_select and cat take it.
  CHECK(index_select(h, 0, i).to_vector() == std::vector<double>(6, 0.5));
}
