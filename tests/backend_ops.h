// tests/backend_ops.h: the backend-ops harness (in the spirit of ggml's test-backend-ops): one
// op run on the CPU and on a second device (the GPU) from the same random inputs, laid out in
// memory the same way on both, with the outputs and the gradients compared normwise.
//
// A test file describes its ops as rows (OpCase for outputs, GradCase for autograd gradients)
// and runs each row over the dtypes float32, float64 and bfloat16 and the layouts:
//
//   const OpCase rows[] = {
//     {"exp", {{33, 7}}, [](const Ins& x) { return Outs{exp(x[0])}; }},
//     {"add bcast", {{33, 7}, {7}}, [](const Ins& x) { return Outs{x[0] + x[1]}; }},
//   };
//   for (const OpCase& c : rows) run_case(c, cuda_test::kGpu);
//
// or builds rows with op_case / grad_case (named after the op and its shapes). A row runs in
// the dtypes of its `dtypes` (all three by default) with its f32_tol / f64_tol / bf16_tol.
// - Operands: fresh uniform random values in [lo, hi) (never zeros), made on the CPU as a
//   contiguous base buffer, copied to the device with to(Device), then viewed there in the
//   chosen Layout, so both devices see the same values through the same strides.
// - Outputs: each output of the device run is compared with the CPU run's: same shape and
//   dtype, on the device it ran on, normwise relative error ||got − ref||₂ / ||ref||₂ within
//   the row's tolerance for the dtype (int64 outputs must be equal). The bfloat16 run (the
//   operands rounded to bfloat16 once, every kernel computing in float32 and rounding its
//   result once) is held to the CPU's bfloat16 run within bf16_tol, 1e-2 unless a row says
//   why its conditioning needs more: both devices round the same float32 values, so they
//   differ only where float32 summation order or a last-bit difference of exp/log moves a
//   value across a bfloat16 rounding boundary (one bfloat16 ulp, 2^-8 relative). NaN must appear exactly
//   where the CPU has NaN: a row that writes into a NaN-poisoned output (poisoned()) keeps the
//   cells it must not write NaN on both devices, and any cell the device kernel fails to write
//   stays NaN on the device only and fails.
// - Determinism: the device run is repeated and must give the same bits.
// - Gradients: the Variable forward runs on both devices, backward gets the same random
//   upstream gradient; the output and every operand's gradient are compared as above.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "tensor/elementwise.h"
#include "tensor/tensor.h"
#include "tests/cuda_test_util.h"

namespace simba {
namespace backend_ops {

using Ins = std::vector<Tensor>;
using Outs = std::vector<Tensor>;
using VarIns = std::vector<Variable>;

// How an operand of shape S sits in memory (the same on both devices):
//   Contiguous  row-major, dense.
//   Permuted    a dense buffer of S reversed, viewed with its dims reversed (a transpose in
//               2-D); a 1-D operand is every second element of a buffer (stride 2).
//   Sliced      the interior of a buffer two larger in every dim (narrow(d, 1, S[d])): an
//               offset and a gap after every row.
//   Broadcast   a buffer with dim 0 of size 1, expanded to S (stride 0 in dim 0; in 1-D a
//               single value repeated).
enum class Layout { Contiguous, Permuted, Sliced, Broadcast };
inline const std::vector<Layout> kAllLayouts = {Layout::Contiguous, Layout::Permuted, Layout::Sliced,
                                                Layout::Broadcast};

inline const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous: return "contiguous";
    case Layout::Permuted: return "permuted";
    case Layout::Sliced: return "sliced";
    case Layout::Broadcast: return "broadcast";
  }
  return "?";
}

// One operand: its dense random base (on the CPU) and the view that gives the operand.
struct Operand {
  Tensor base;
  Layout layout = Layout::Contiguous;
  Shape shape;

  Tensor on(Device d) const {
    const Tensor b = base.to(d);
    const int nd = static_cast<int>(shape.size());
    switch (layout) {
      case Layout::Contiguous: return b;
      case Layout::Permuted: {
        if (nd == 1) return b.select(1, 0);
        std::vector<int> order(nd);
        for (int k = 0; k < nd; ++k) order[k] = nd - 1 - k;
        return b.permute(order);
      }
      case Layout::Sliced: {
        Tensor v = b;
        for (int k = 0; k < nd; ++k) v = v.narrow(k, 1, shape[k]);
        return v;
      }
      case Layout::Broadcast: return b.expand(shape);
    }
    return b;
  }
};

inline Tensor random_tensor(const Shape& shape, DType dtype, double lo, double hi, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = dist(rng);
  return Tensor::from_vector(shape, v, dtype);
}

inline Operand make_operand(const Shape& shape, Layout layout, DType dtype, double lo, double hi,
                            std::mt19937_64& rng) {
  Shape base = shape;
  switch (layout) {
    case Layout::Contiguous: break;
    case Layout::Permuted:
      if (shape.size() == 1)
        base = {shape[0], 2};
      else
        base.assign(shape.rbegin(), shape.rend());
      break;
    case Layout::Sliced:
      for (int64_t& s : base) s += 2;
      break;
    case Layout::Broadcast:
      if (!base.empty()) base[0] = 1;
      break;
  }
  return {random_tensor(base, dtype, lo, hi, rng), layout, shape};
}

// A tensor of `shape` filled with NaN: the output to hand a kernel that writes into a given
// tensor, so that a cell it fails to write stays NaN.
inline Tensor poisoned(const Shape& shape, DType dtype, Device device) {
  return Tensor::full(shape, std::numeric_limits<double>::quiet_NaN(), dtype, device);
}

// cuda_test::normwise_error over the cells where ref is a number; NaN when got and ref disagree
// about which cells are NaN.
inline double normwise_error(const std::vector<double>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::quiet_NaN();
  std::vector<double> g, r;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(ref[i]) != std::isnan(got[i])) return std::numeric_limits<double>::quiet_NaN();
    if (std::isnan(ref[i])) continue;
    g.push_back(got[i]);
    r.push_back(ref[i]);
  }
  return cuda_test::normwise_error(g, r);
}

// Checks `got` (computed on `device`) against the CPU's `ref` within `tol`.
inline void check_close(const std::string& what, const Tensor& got, const Tensor& ref, Device device, double tol) {
  INFO(what);
  REQUIRE(got.defined() == ref.defined());
  if (!ref.defined()) return;
  CHECK(got.device() == device);
  REQUIRE(shape_str(got.shape()) == shape_str(ref.shape()));
  REQUIRE(got.dtype() == ref.dtype());
  if (ref.dtype() == DType::I64) {
    CHECK(got.to_ints() == ref.to_ints());
    return;
  }
  const double err = normwise_error(got.to_vector(), ref.to_vector());
  CHECK_MESSAGE(err <= tol, "normwise error " << err << " > tolerance " << tol);
}

// The bits of every output, for the repeat check.
inline bool same_bits(const Outs& a, const Outs& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].dtype() == DType::I64) {
      if (a[i].to_ints() != b[i].to_ints()) return false;
      continue;
    }
    const std::vector<double> u = a[i].to_vector(), v = b[i].to_vector();
    if (u.size() != v.size()) return false;
    for (size_t k = 0; k < u.size(); ++k)
      if (!(u[k] == v[k] || (std::isnan(u[k]) && std::isnan(v[k])))) return false;
  }
  return true;
}

// The dtypes a row runs in unless it names fewer (an op that keeps float32/float64 state by
// design, like the optimiser steps, has no bfloat16 variant).
inline const std::vector<DType> kComputeTypes = {DType::F32, DType::F64, DType::BF16};

// One row: the op's outputs from its operands.
struct OpCase {
  std::string name;
  std::vector<Shape> shapes;                 // one per operand
  std::function<Outs(const Ins&)> forward;   // must work on either device
  double lo = -2.0, hi = 2.0;                // operand values uniform in [lo, hi)
  double f32_tol = 1e-5, f64_tol = 1e-12;    // a looser f32 tolerance needs a reason at the row
  std::vector<Layout> layouts = kAllLayouts;
  double bf16_tol = 1e-2;                    // a looser one needs a reason at the row too
  std::vector<DType> dtypes = kComputeTypes;
};

// One gradient row: a differentiable function of its operands (every operand requires grad).
struct GradCase {
  std::string name;
  std::vector<Shape> shapes;
  std::function<Variable(const VarIns&)> forward;
  double lo = -2.0, hi = 2.0;
  double f32_tol = 1e-5, f64_tol = 1e-12;
  std::vector<Layout> layouts = kAllLayouts;
  double bf16_tol = 1e-2;
  std::vector<DType> dtypes = kComputeTypes;
};

// The row's tolerance for a dtype.
template <class Case>
double tolerance(const Case& c, DType dtype) {
  switch (dtype) {
    case DType::F32: return c.f32_tol;
    case DType::F64: return c.f64_tol;
    case DType::BF16: return c.bf16_tol;
    default: FAIL("no tolerance for " << dtype_name(dtype)); return 0.0;
  }
}

// A row's name: the op and its operand shapes; op_case / grad_case build a row with it.
inline std::string case_name(const std::string& op, const std::vector<Shape>& shapes) {
  std::string s = op;
  for (const Shape& sh : shapes) s += " " + shape_str(sh);
  return s;
}

inline OpCase op_case(const std::string& op, std::vector<Shape> shapes, std::function<Outs(const Ins&)> f,
                  double lo = -2.0, double hi = 2.0) {
  OpCase c;
  c.name = case_name(op, shapes);
  c.shapes = std::move(shapes);
  c.forward = std::move(f);
  c.lo = lo;
  c.hi = hi;
  return c;
}

inline GradCase grad_case(const std::string& op, std::vector<Shape> shapes, std::function<Variable(const VarIns&)> f,
                         double lo = -2.0, double hi = 2.0) {
  GradCase c;
  c.name = case_name(op, shapes);
  c.shapes = std::move(shapes);
  c.forward = std::move(f);
  c.lo = lo;
  c.hi = hi;
  return c;
}

// The pointwise ops of tensor/elementwise.h, and the operand range of each: positive where the
// op needs it, wide for softplus so that both sides of its x > 20 threshold are hit.
inline const UnaryOp kAllUnaryOps[] = {UnaryOp::Neg,     UnaryOp::Exp,  UnaryOp::Log,      UnaryOp::Log1p,
                                    UnaryOp::Sqrt,    UnaryOp::Rsqrt, UnaryOp::Sigmoid, UnaryOp::Silu,
                                    UnaryOp::Softplus, UnaryOp::Abs, UnaryOp::Square};
inline const BinaryOp kAllBinaryOps[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow};

inline std::pair<double, double> unary_operand_range(UnaryOp op) {
  switch (op) {
    case UnaryOp::Log:
    case UnaryOp::Sqrt:
    case UnaryOp::Rsqrt: return {0.5, 3.0};
    case UnaryOp::Log1p: return {-0.5, 3.0};
    case UnaryOp::Softplus: return {-30.0, 30.0};
    case UnaryOp::Exp:
    case UnaryOp::Sigmoid:
    case UnaryOp::Silu: return {-5.0, 5.0};
    default: return {-2.0, 2.0};
  }
}

inline std::pair<double, double> binary_operand_range(BinaryOp op) {
  return op == BinaryOp::Div || op == BinaryOp::Pow ? std::pair{0.5, 2.0} : std::pair{-2.0, 2.0};
}

inline std::string case_label(const std::string& name, DType dtype, Layout layout) {
  std::ostringstream s;
  s << name << " [" << dtype_name(dtype) << ", " << layout_name(layout) << "]";
  return s.str();
}

inline std::vector<Operand> make_operands(const std::vector<Shape>& shapes, Layout layout, DType dtype, double lo,
                                          double hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Operand> ops;
  for (const Shape& s : shapes) ops.push_back(make_operand(s, layout, dtype, lo, hi, rng));
  return ops;
}

// Runs c.forward on the CPU and twice on `device` from the same operands and compares.
inline void compare_on_devices(const OpCase& c, DType dtype, Layout layout, Device device, uint64_t seed) {
  const std::string label = case_label(c.name, dtype, layout);
  INFO(label);
  const std::vector<Operand> ops = make_operands(c.shapes, layout, dtype, c.lo, c.hi, seed);
  Ins cpu_in, dev_in;
  for (const Operand& o : ops) {
    cpu_in.push_back(o.on(cpu()));
    dev_in.push_back(o.on(device));
  }
  const Outs ref = c.forward(cpu_in);
  const Outs got = c.forward(dev_in);
  REQUIRE(got.size() == ref.size());
  const double tol = tolerance(c, dtype);
  for (size_t i = 0; i < ref.size(); ++i) check_close(label + " output " + std::to_string(i), got[i], ref[i], device, tol);
  CHECK_MESSAGE(same_bits(got, c.forward(dev_in)), label << ": a second run gave different bits");
}

// Forward and backward on the CPU and on `device`; the upstream gradient is random.
inline void compare_grads_on_devices(const GradCase& c, DType dtype, Layout layout, Device device, uint64_t seed) {
  const std::string label = case_label(c.name, dtype, layout);
  INFO(label);
  const std::vector<Operand> ops = make_operands(c.shapes, layout, dtype, c.lo, c.hi, seed);
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  Tensor upstream;
  auto run = [&](Device d, Outs& grads) {
    VarIns vars;
    for (const Operand& o : ops) vars.emplace_back(o.on(d), /*requires_grad=*/true);
    const Variable y = c.forward(vars);
    if (!upstream.defined()) upstream = random_tensor(y.shape(), dtype, -1.0, 1.0, rng);
    y.backward(upstream.to(d));
    for (const Variable& v : vars) grads.push_back(v.grad());
    return y.data();
  };
  Outs ref_grads, got_grads;
  const Tensor ref = run(cpu(), ref_grads);
  const Tensor got = run(device, got_grads);
  const double tol = tolerance(c, dtype);
  check_close(label + " output", got, ref, device, tol);
  for (size_t i = 0; i < ref_grads.size(); ++i)
    check_close(label + " gradient of operand " + std::to_string(i), got_grads[i], ref_grads[i], device, tol);
}

// Every dtype × every layout of the row.
inline void run_case(const OpCase& c, Device device) {
  uint64_t seed = std::hash<std::string>{}(c.name);
  for (DType dt : c.dtypes)
    for (Layout l : c.layouts) compare_on_devices(c, dt, l, device, ++seed);
}

inline void run_case(const GradCase& c, Device device) {
  uint64_t seed = std::hash<std::string>{}(c.name);
  for (DType dt : c.dtypes)
    for (Layout l : c.layouts) compare_grads_on_devices(c, dt, l, device, ++seed);
}

}  // namespace backend_ops
}  // namespace simba
