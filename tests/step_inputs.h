// tests/step_inputs.h: random operands of selective_step (ssm/selective_step.h) and mixer_step
// (ssm/mixer_step.h) for their CPU and CUDA tests, as doubles exactly representable in bfloat16
// (so every storage type runs on the values the float64 reference sees), with strided rows.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "tensor/half_types.h"

namespace simba {

// n values uniform in [lo, hi), each rounded to bfloat16.
inline std::vector<double> draw_bf16_exact(std::mt19937_64& gen, size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = double(bfloat16(float(dist(gen))));
  return v;
}

struct StepInputs {
  int64_t B, Di, R, N, ld_dbl, ld_z;
  bool bias, skip;
  std::vector<double> x_dbl, u, z, W_dt, b_dt, A_log, Dskip, h;

  // x_dbl's rows are R + 2N + pad apart (3 by default: rows that start no 16-byte piece).
  StepInputs(int64_t B_, int64_t Di_, int64_t R_, int64_t N_, bool bias_, bool skip_, uint64_t seed, int64_t pad = 3)
      : B(B_), Di(Di_), R(R_), N(N_), ld_dbl(R_ + 2 * N_ + pad), ld_z(2 * Di_), bias(bias_), skip(skip_) {
    std::mt19937_64 gen(seed);
    auto draw = [&](size_t n, double lo, double hi) { return draw_bf16_exact(gen, n, lo, hi); };
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

// mixer_step's operands: in_proj's output xz (B, ld_xz), x its columns [0, Di) and z [Di, 2Di);
// the conv state and weights; x_proj's weight W_x (R + 2N, Di); the selective step's as above.
struct MixerStepInputs {
  int64_t B, Di, K, R, N, ld_xz;
  bool conv_bias, dt_bias, skip;
  std::vector<double> xz, conv_state, conv_w, conv_b, W_x, W_dt, b_dt, A_log, Dskip, h;

  MixerStepInputs(int64_t B_, int64_t Di_, int64_t K_, int64_t R_, int64_t N_, int64_t pad, bool conv_bias_,
                  bool dt_bias_, bool skip_, uint64_t seed)
      : B(B_), Di(Di_), K(K_), R(R_), N(N_), ld_xz(2 * Di_ + pad), conv_bias(conv_bias_), dt_bias(dt_bias_),
        skip(skip_) {
    std::mt19937_64 gen(seed);
    auto draw = [&](size_t n, double lo, double hi) { return draw_bf16_exact(gen, n, lo, hi); };
    xz = draw(B * ld_xz, -1, 1);
    conv_state = draw(B * Di * K, -1, 1);
    conv_w = draw(Di * K, -0.5, 0.5);
    conv_b = draw(Di, -0.5, 0.5);
    W_x = draw((R + 2 * N) * Di, -2.0 / std::sqrt(double(Di)), 2.0 / std::sqrt(double(Di)));
    W_dt = draw(Di * R, -0.5, 0.5);
    b_dt = draw(Di, -4, -1);
    A_log = draw(Di * N, 0, 2.5);
    Dskip = draw(Di, -1, 1);
    h = draw(B * Di * N, -1, 1);
  }
};

}  // namespace simba
