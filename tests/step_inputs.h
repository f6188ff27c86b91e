// tests/step_inputs.h: random operands of selective_step (ssm/selective_step.h) for its CPU and
// CUDA tests, as doubles exactly representable in bfloat16 (so every storage type runs on the
// values the float64 reference sees), with strided rows of x_dbl and z.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "tensor/half_types.h"

namespace simba {

struct StepInputs {
  int64_t B, Di, R, N, ld_dbl, ld_z;
  bool bias, skip;
  std::vector<double> x_dbl, u, z, W_dt, b_dt, A_log, Dskip, h;

  StepInputs(int64_t B_, int64_t Di_, int64_t R_, int64_t N_, bool bias_, bool skip_, uint64_t seed)
      : B(B_), Di(Di_), R(R_), N(N_), ld_dbl(R_ + 2 * N_ + 3), ld_z(2 * Di_), bias(bias_), skip(skip_) {
    std::mt19937_64 gen(seed);
    auto draw = [&](size_t n, double lo, double hi) {
      std::uniform_real_distribution<double> dist(lo, hi);
      std::vector<double> v(n);
      for (double& x : v) x = double(bfloat16(float(dist(gen))));
      return v;
    };
    x_dbl = draw(B * ld_dbl, -1, 1);
    u = draw(B * Di, -1, 1);
    z = draw(B * ld_z, -2, 2);
    W_dt = draw(Di * R, -0.5, 0.5);
    b_dt = draw(Di, -4, -1);  // softplus(b) ~ the time steps of a trained model
    A_log = draw(Di * N, 0, 2.5);
    Dskip = draw(Di, -1, 1);
    h = draw(B * Di * N, -1, 1);
  }

  template <class T>
  static std::vector<T> as(const std::vector<double>& v) {
    return std::vector<T>(v.begin(), v.end());
  }
};

}  // namespace simba
