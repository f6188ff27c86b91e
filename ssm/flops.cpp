// ssm/flops.cpp: the FLOP formulas of ssm/flops.h.
#include "ssm/flops.h"

#include <cmath>

#include "ssm/simba_schedule.h"
#include "tensor/error.h"

namespace simba {

int64_t LayerFlops::total() const {
  return norm + in_proj + conv + conv_act + x_proj + dt_proj + softplus + a + scan + out_proj + residual + score;
}

int64_t ForwardFlops::layers_total() const {
  int64_t s = 0;
  for (const LayerFlops& l : layers) s += l.total();
  return s;
}

int64_t ForwardFlops::total() const { return layers_total() + head; }

int64_t score_flops(SimbaCriterion criterion, int64_t n, const MambaConfig& cfg) {
  SIMBA_CHECK(n >= 0, "score_flops: n=" << n << " scored tokens, expected >= 0");
  if (n == 0) return 0;
  const int64_t D = cfg.hidden_size, Di = cfg.intermediate_size(), N = cfg.state_size;
  const int64_t ssm = (n - 1) * Di + n * N + 4 * n * Di * N + 2 * n * Di;
  switch (criterion) {
    case SimbaCriterion::Simba:
    case SimbaCriterion::SimbaAbs: return ssm;
    case SimbaCriterion::SimbaL2: return ssm + 2 * n * Di + n;
    case SimbaCriterion::Norm: return 2 * n * D + n;
    case SimbaCriterion::Clip: return n * D;
    case SimbaCriterion::Delta: return 2 * n * Di + n;
    case SimbaCriterion::Random:
    case SimbaCriterion::Stride: return 0;
  }
  return 0;
}

LayerFlops layer_flops(const MambaConfig& cfg, int64_t batch, int64_t tokens, int64_t scored,
                       SimbaCriterion criterion) {
  SIMBA_CHECK(batch >= 0 && tokens >= 0 && scored >= 0 && scored <= tokens,
              "layer_flops: batch=" << batch << " tokens=" << tokens << " scored=" << scored
                                    << ", expected non-negative counts with scored <= tokens");
  const int64_t D = cfg.hidden_size, Di = cfg.intermediate_size(), N = cfg.state_size, R = cfg.time_step_rank,
                K = cfg.conv_kernel;
  const int64_t BT = batch * tokens;
  LayerFlops f;
  f.tokens = tokens;
  f.scored = scored;
  f.norm = BT * (4 * D + 4);
  f.in_proj = BT * (2 * D * 2 * Di + (cfg.use_bias ? 2 * Di : 0));
  f.conv = BT * (2 * Di * K + (cfg.use_conv_bias ? Di : 0));
  f.conv_act = BT * 5 * Di;
  f.x_proj = BT * 2 * Di * (R + 2 * N);
  f.dt_proj = BT * (2 * R * Di + Di);
  f.softplus = BT * 2 * Di;
  f.a = 2 * Di * N;
  f.scan = BT * Di * (7 * N + 7);
  f.out_proj = BT * (2 * Di * D + (cfg.use_bias ? D : 0));
  f.residual = BT * D;
  f.score = batch * score_flops(criterion, scored, cfg);
  return f;
}

ForwardFlops forward_flops(const MambaConfig& cfg, int64_t batch, const std::vector<int64_t>& tokens,
                           const std::vector<int64_t>& scored, SimbaCriterion criterion, int64_t head_tokens) {
  const size_t layers = static_cast<size_t>(cfg.num_hidden_layers);
  SIMBA_CHECK(tokens.size() == layers, "forward_flops: " << tokens.size() << " per-layer token counts for a model of "
                                                         << layers << " layers");
  SIMBA_CHECK(scored.empty() || scored.size() == layers,
              "forward_flops: " << scored.size() << " per-layer scored counts for a model of " << layers
                                << " layers (give one per layer, or none)");
  SIMBA_CHECK(head_tokens >= 0, "forward_flops: head_tokens=" << head_tokens << ", expected >= 0");
  ForwardFlops f;
  for (size_t l = 0; l < layers; ++l)
    f.layers.push_back(layer_flops(cfg, batch, tokens[l], scored.empty() ? 0 : scored[l], criterion));
  const int64_t D = cfg.hidden_size;
  f.head_tokens = head_tokens;
  f.head = batch * head_tokens * (4 * D + 4) + batch * head_tokens * 2 * D * cfg.vocab_size;
  return f;
}

ForwardFlops dense_forward_flops(const MambaConfig& cfg, int64_t batch, int64_t tokens, int64_t head_tokens) {
  return forward_flops(cfg, batch, std::vector<int64_t>(cfg.num_hidden_layers, tokens), {}, SimbaCriterion::Simba,
                       head_tokens);
}

ForwardFlops pruned_forward_flops(const MambaConfig& cfg, int64_t batch, const std::vector<int64_t>& counts, int64_t m,
                                  bool scored, SimbaCriterion criterion) {
  std::vector<int64_t> tokens, scores;
  for (size_t l = 0; l < counts.size(); ++l) {
    tokens.push_back(counts[l] + m);
    scores.push_back(scored && l + 1 < counts.size() && counts[l + 1] < counts[l] ? counts[l] : 0);
  }
  return forward_flops(cfg, batch, tokens, scores, criterion, m);
}

double keep_for_flops_ratio(const MambaConfig& cfg, const SimbaOptions& opt, int64_t c, int64_t m, double target) {
  SIMBA_CHECK(target > 0 && target <= 1, "FLOPs ratio " << target << ": expected a number in (0, 1]");
  SIMBA_CHECK(opt.schedule != SimbaSchedule::Custom,
              "FLOPs ratio " << target << ": schedule=custom fixes every layer's count, so there is no keep to choose");
  SIMBA_CHECK(c >= 1 && m >= 0, "keep_for_flops_ratio: context " << c << " and continuation " << m
                                                                  << " must be >= 1 and >= 0");
  const int64_t layers = cfg.num_hidden_layers;
  const double dense = static_cast<double>(dense_forward_flops(cfg, 1, c + m, m).total());
  auto ratio = [&](double keep) {
    SimbaOptions o = opt;
    o.keep = keep;
    return static_cast<double>(
               pruned_forward_flops(cfg, 1, simba_token_counts(o, layers, c), m, true, opt.criterion).total()) /
           dense;
  };
  // The smallest ρ the options accept; below it every pruned layer keeps one token anyway.
  double lo = 1e-9, hi = 1.0;
  const double floor_ratio = ratio(lo);
  SIMBA_CHECK(floor_ratio <= target, "FLOPs ratio " << target << ": below what schedule=" << schedule_name(opt.schedule)
                                                    << ",start=" << opt.start << " reaches at context " << c
                                                    << " (" << floor_ratio << " with one token a pruned layer)");
  if (ratio(hi) <= target) return hi;
  // Invariant: ratio(lo) <= target < ratio(hi).
  for (int i = 0; i < 64 && hi - lo > 1e-12; ++i) {
    const double mid = 0.5 * (lo + hi);
    (ratio(mid) <= target ? lo : hi) = mid;
  }
  return target - ratio(lo) <= ratio(hi) - target ? lo : hi;
}

}  // namespace simba
