// ssm/simba_schedule.h: Simba's hierarchical schedule: how many context tokens each layer processes.
//
// Layer ℓ (0-based, of Lyr layers) processes n_ℓ of the n_0 prunable tokens (the context, n_0 its
// length) plus every continuation token (ssm/simba_forward.h). Layer ℓ's scores choose the
// n_{ℓ+1} tokens of layer ℓ+1, so n_0 = the whole context always, and n_ℓ never increases.
//
// schedule=linear (default; the paper's "linear pruning schedule preserving 10 % of tokens at the
// final layer" [S]), final keep ratio ρ (keep) and start layer s (start):
//   r_ℓ = 1 − (1 − ρ)·max(0, ℓ − s)/(Lyr − 1 − s)                                   (S1)
//   n_ℓ = max(1, ceil*(r_ℓ·n_0))                                                      (S2)
// ceil* is ceil, except that a product within 1e-9 of an integer counts as that integer:
// r_ℓ is computed in floating point (1 − 0.7·1/1 = 0.30000000000000004), and 0.3·30 must give 9,
// not 10. So layers 0..s are dense, layer Lyr−1 keeps ρ of the context, and the mean ratio over
// layers s+1..Lyr−1 is 1 − (1 − ρ)·(M + 1)/(2M), M = Lyr − 1 − s (≈ (1 + ρ)/2 for s = 0).
//
// schedule=uniform: the linear schedule's mean ratio at every pruned layer:
//   r_ℓ = 1 for ℓ <= s,   r_ℓ = 1 − (1 − ρ)·(M + 1)/(2M) for ℓ > s                   (S3)
// with (S2). The mean is of the ratios r_ℓ (before rounding), so the two schedules process the
// same number of tokens up to rounding.
//
// schedule=inverted: more pruning in the lower layers. The linear schedule removes the same
// share (1 − ρ)/M of the context at each of the M = Lyr − 1 − s pruned layers; the inverted one
// removes shares that shrink linearly, M, M − 1, …, 1 parts of (1 − ρ)·2/(M(M + 1)), so that
//   r_ℓ = 1 − (1 − ρ)·k·(2M + 1 − k)/(M·(M + 1)),  k = ℓ − s, for ℓ > s               (S4)
// with (S2): the last layer still keeps ρ, every layer in between keeps less than under linear
// (Lyr = 4, ρ = 0.1: r = 1, 0.55, 0.25, 0.1 against linear's 1, 0.7, 0.4, 0.1), so it processes
// fewer tokens; a comparison with linear at equal FLOPs picks a larger ρ for it.
//
// schedule=custom: one entry per layer (exactly Lyr entries, checked here against the model):
//   ratios r_0:r_1:...  n_ℓ = max(1, ceil*(r_ℓ·n_0)); r_0 must be 1.
//   counts c_0:c_1:...  n_ℓ = min(c_ℓ, n_0), so one list serves shorter contexts too; c_0 must
//                       be >= n_0 (layer 0 processes the whole context).
// Both lists must not increase (SimbaOptions::validate).
//
// Edge cases. Lyr = 1, or s >= Lyr − 1: no layer after s, no pruning (every n_ℓ = n_0).
// n_0 = 1: every n_ℓ = 1 (the anchor alone). n_ℓ >= 1 always, so the anchor (the last context
// token) is always processed.
//
// Choices where the paper is silent ([UNK] in simba-paper.md §4.4): pruning starts at layer 0 by
// default (start=0, so only layer 0 is dense); counts are derived from ratios of the ORIGINAL
// context length n_0, not of the previous layer's count; rounding is ceil (a layer never keeps
// fewer tokens than its ratio asks for), with the 1e-9 tolerance above.
#pragma once

#include <cstdint>
#include <vector>

#include "ssm/simba.h"

namespace simba {

// max(1, ceil*(ratio·n0)) with the 1e-9 integer tolerance of (S2).
int64_t keep_count(double ratio, int64_t n0);

// n_ℓ for ℓ = 0..layers−1 for a context of n0 >= 1 tokens. Errors (naming "simba schedule")
// for layers < 1, n0 < 1, invalid options, a custom list whose length is not `layers`, and
// counts whose c_0 < n0.
std::vector<int64_t> simba_token_counts(const SimbaOptions& opt, int64_t layers, int64_t n0);

}  // namespace simba
