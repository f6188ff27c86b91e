// ssm/flops.h: forward FLOPs of a Mamba LM, dense or Simba-pruned, counted exactly as our
// kernels compute.
//
// The paper compares Simba with dense Mamba "with the same FLOPS" [V] but gives no formula
// ([UNK], simba-paper.md §4.5); this is ours. Convention: one FLOP per floating-point +, −, ×,
// ÷, exp, log1p and sqrt that the forward kernels execute; comparisons, max, |·|, clamps,
// copies, gathers and the embedding lookup count 0. A GEMM (M, K)·(K, Nout) counts 2·M·K·Nout
// (K multiplies and K adds per output), a bias one add per output. Nonlinearities as the
// kernels evaluate them: SiLU(v) = v / (1 + exp(−v)) → 5 (neg, exp, add, div, mul);
// softplus → 2 (exp, log1p; the v > 20 shortcut is ignored: counted as the general branch).
//
// Per layer, for `batch` sequences of which the layer processes T tokens each, with D, Di, N,
// R, K from the config (Di = expand·D):
//   norm      B·T·(4D + 4)                 RMSNorm: Σx² (2D), /D, +ε, sqrt, 1/· (4), x·rstd·w (2D)
//   in_proj   B·T·(2·D·2Di [+ 2Di bias])
//   conv      B·T·(2·Di·K [+ Di bias])     causal depthwise conv; the K−1 zero-padding taps of
//                                          the first steps are counted as if computed
//   conv_act  B·T·5·Di                     SiLU after the conv
//   x_proj    B·T·2·Di·(R + 2N)
//   dt_proj   B·T·(2·R·Di + Di)            always has a bias
//   softplus  B·T·2·Di
//   a         2·Di·N                       A = −exp(A_log), once per call (not per sequence)
//   scan      B·T·Di·(7N + 7)              per (t,d,n): Δ·A, exp, a·h, (Δu)·B, +, C·h, y += → 7;
//                                          per (t,d): Δ·u, D·u, gate y·z/(1 + exp(−z)) (5) → 7
//                                          (ssm/selective_scan.cpp, the fast forward)
//   out_proj  B·T·(2·Di·D [+ D bias])
//   residual  B·T·D                        h + mixer(...) (or its scatter-add)
//   score     Σ over the batch of the criterion's cost for the n tokens scored after the layer
//             (0 when the layer's scores are not needed):
//     simba, simba-abs  (n − 1)·Di + n·N + 4·n·Di·N + 2·n·Di
//                       reverse cumsum (Q2); C_T·B_t per (t,n); per (t,d,n): A·S, exp, ×, +;
//                       per (t,d): Δ·u, ×  (ssm/simba_score.cpp; max and |·| are free)
//     simba-l2          the above + 2·n·Di + n     (v², Σ per (t,d); sqrt per t)
//     norm              2·n·D + n                  (x², Σ, sqrt)
//     clip              n·D                        (Σ; the clamp is free)
//     random, stride    0
// The head, for the H positions whose logits are computed (H per sequence):
//   head      B·H·(4D + 4) + B·H·2·D·V     norm_f, then the (tied or untied) LM head GEMM
// A forward's total is Σ_ℓ layer totals + head. Sorting for the top-k choice is not counted.
//
// Dense run of L tokens: tokens = L at every layer, no scores. Simba run (ssm/simba_forward.h)
// with context c and continuation m: layer ℓ processes T_ℓ = n_ℓ + m tokens, scores n_ℓ
// tokens where n_{ℓ+1} < n_ℓ, and H = m.
#pragma once

#include <cstdint>
#include <vector>

#include "ssm/mamba_config.h"
#include "ssm/simba.h"

namespace simba {

struct LayerFlops {
  int64_t tokens = 0;  // T, per sequence
  int64_t scored = 0;  // n, per sequence (0: no score after this layer)
  int64_t norm = 0, in_proj = 0, conv = 0, conv_act = 0, x_proj = 0, dt_proj = 0, softplus = 0, a = 0, scan = 0,
          out_proj = 0, residual = 0, score = 0;
  int64_t total() const;
};

struct ForwardFlops {
  std::vector<LayerFlops> layers;
  int64_t head_tokens = 0;  // H, per sequence
  int64_t head = 0;
  int64_t layers_total() const;  // Σ_ℓ layers[ℓ].total()
  int64_t total() const;         // layers_total() + head
};

// The score cost of one sequence with n scored tokens (the table above).
int64_t score_flops(SimbaCriterion criterion, int64_t n, const MambaConfig& cfg);

// One layer: `batch` sequences, `tokens` processed and `scored` scored per sequence.
LayerFlops layer_flops(const MambaConfig& cfg, int64_t batch, int64_t tokens, int64_t scored,
                       SimbaCriterion criterion);

// Every layer and the head. tokens: T_ℓ per layer (one entry per layer of cfg); scored: n
// scored per layer, same length, or empty for none; head_tokens: H.
ForwardFlops forward_flops(const MambaConfig& cfg, int64_t batch, const std::vector<int64_t>& tokens,
                           const std::vector<int64_t>& scored, SimbaCriterion criterion, int64_t head_tokens);

// A dense forward: every layer processes `tokens`, no scores.
ForwardFlops dense_forward_flops(const MambaConfig& cfg, int64_t batch, int64_t tokens, int64_t head_tokens);

// A Simba run (ssm/simba_forward.h) from its per-layer context counts n_ℓ (one per layer of cfg)
// and continuation m: layer ℓ processes n_ℓ + m tokens, scores n_ℓ when the next layer keeps fewer
// and `scored` is true (kept sets chosen from scores, not given), and the head runs on the m
// continuation positions.
ForwardFlops pruned_forward_flops(const MambaConfig& cfg, int64_t batch, const std::vector<int64_t>& counts, int64_t m,
                                  bool scored, SimbaCriterion criterion);

// For equal-FLOPs comparisons of schedules and criteria: the keep ρ at which Simba with `opt`'s
// schedule, start and criterion, on one sequence of c context + m continuation tokens, has the
// FLOPs ratio (pruned_forward_flops over dense_forward_flops(c + m tokens, head m)) nearest
// `target`. The ratio does not decrease as ρ grows, up to a step at each whole token, so a
// bisection on ρ over (0, 1] brackets the target between two adjacent steps, and the nearer one
// is returned (on a tie, the one at or below the target). Errors: target outside (0, 1],
// schedule=custom (its counts are fixed: there is no ρ to choose), a target below the ratio of
// ρ → 0 (one token a pruned layer) with that ratio in the message.
double keep_for_flops_ratio(const MambaConfig& cfg, const SimbaOptions& opt, int64_t c, int64_t m, double target);

}  // namespace simba
