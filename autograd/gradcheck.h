// autograd/gradcheck.h: finite-difference verification of backpropagation.
//
// For f: inputs -> output, draw a random upstream gradient g (normal, seeded,
// the output's shape) and compare, for every element x_i of every checked
// input, the backprop value ∂S/∂x_i of S(x) = Σ f(x)·g with the fourth-order
// central difference (h = eps)
//   [ 8·(S(x + h·e_i) − S(x − h·e_i)) − (S(x + 2h·e_i) − S(x − 2h·e_i)) ] / (12·h)
// in float64. A random g (not ones) makes every output element matter with a
// different weight, so a transposed or misrouted gradient cannot cancel out.
//
// error_i = |analytic − numeric| / max(|analytic|, |numeric|, floor)
// The floor keeps entries that are ~0 from turning rounding noise into huge
// "relative" errors. The stencil's truncation error is O(h⁴·S⁽⁵⁾): with
// h = 1e-4 it stays ~1e-12 even where S bends sharply (an RMSNorm of inputs of
// size 0.02 has third derivatives ~1e5, which the 2-point rule would turn
// into 1e-6 errors), and rounding adds ~1e-16·|S|/h. So the default
// tolerance 1e-6 has orders of magnitude of room and still catches any real
// mistake (those are O(1) wrong).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace simba {

struct GradcheckOptions {
  double eps = 1e-4;
  double tolerance = 1e-6;
  double floor = 1e-3;
  uint64_t seed = 1234;
  std::vector<bool> check;  // which inputs to check; empty = every input
};

struct GradcheckResult {
  bool ok = true;
  double max_error = 0.0;  // worst error_i over all checked elements
  std::string where;       // "input 1 element (0, 2): analytic .. numeric .."
  int64_t checked = 0;     // number of elements compared
};

// The core: `run` computes the output from the current data of `wrt` (leaf
// Variables with requires_grad, float64, contiguous), which are perturbed in
// place and restored. Each is named in the report by its `names` entry.
GradcheckResult gradcheck_variables(const std::function<Variable()>& run, const std::vector<Variable>& wrt,
                                    const std::vector<std::string>& names, const GradcheckOptions& options = {});

using GradcheckFn = std::function<Variable(const std::vector<Variable>&)>;

// Checks f with respect to its inputs. Inputs must be float64 tensors (they
// are cloned; the caller's stay untouched); options.check selects a subset.
GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace simba
