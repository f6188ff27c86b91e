// ssm/simba_forward.h: the Simba-pruned forward pass of a MambaLM, with a leak-free
// context/continuation protocol, and its continuation loss.
//
// Protocol. ids (B, c + m): the first c tokens of each sequence are the context (the only
// prunable tokens), the remaining m >= 0 the continuation. The anchor T of every score is the
// last context token, position c − 1.
//   1. h = embed(ids), (B, c + m, D).
//   2. Layer ℓ processes, per sequence, its n_ℓ kept context tokens (original order) followed
//      by all m continuation tokens: T_ℓ = n_ℓ + m rows (n_ℓ from ssm/simba_schedule.h; layer 0
//      keeps the whole context). The rows are gathered, the block runs on the compacted
//      sequence, and the mixer output is added back to the same rows:
//        x = h[P_ℓ],  h[P_ℓ] = h[P_ℓ] + mixer_ℓ(RMSNorm_ℓ(x))
//      Other rows are untouched: a pruned token's residual stream is frozen from the layer that
//      dropped it ("early exit"), so every position still reaches norm_f and the head.
//   3. After layer ℓ, if n_{ℓ+1} < n_ℓ, every sequence scores its n_ℓ context rows with that
//      layer's criterion (ssm/simba_score.h; the SSM criteria read the layer's own Δ, A, B, C, u
//      of those rows, anchor = the last of them) and keeps the anchor plus the n_{ℓ+1} − 1
//      best others (select_kept). If n_{ℓ+1} = n_ℓ the kept set carries over unscored.
//   4. logits row j (0 <= j < m) is the LM head at position c − 1 + j, and predicts ids[c + j]:
//      the anchor's logits predict the first continuation token, and so on. The logits of the
//      last position c + m − 1 (which would predict a token beyond the sequence) are not
//      computed, though that token runs through every layer like the others.
//   5. Loss and accuracy are measured on the m continuation tokens only (continuation_loss).
// Leak-freedom: in every layer's compacted sequence the context rows come before the
// continuation rows and every op (conv, scan, row-wise projections and norms) is causal along
// it, so context rows, hence scores and kept sets, are functions of the context alone:
// changing the continuation cannot change which context tokens are kept. m = 0 is allowed
// (inspection: kept sets and scores only, logits (B, 0, V)).
//
// Choices where the paper is silent (simba-paper.md §4.3, [UNK]):
//   - a token dropped by layer ℓ's scores is still processed by layer ℓ, and leaves from ℓ+1 on;
//   - pruned tokens early-exit (frozen residual stream) and are re-inserted before norm_f, so
//     per-position logits exist; only the anchor's and the continuation's are computed;
//   - the anchor and the continuation are never pruned;
//   - the causal conv1d runs over the compacted sequence: a kept token's conv taps read the
//     nearest kept predecessors, not its original neighbours, and the scan's decay exp(Δ_k·A)
//     runs over kept tokens only (the "highway");
//   - per-sequence kept sets with equal counts in a batch;
//   - mamba_ssm's Block carries hidden_states and residual separately (peer code gathers both);
//     our pre-norm residual stream h holds the same information in one tensor, so gathering h
//     gathers both.
// Implementation. Everything runs on the model's device (Module::device): the kept sets are
// (B, n_ℓ) int64 tensors there, the scores, the top-k choice (simba_select_*) and the row
// index (simba_rows_*) are kernels with CPU and CUDA variants (ssm/simba_score.h), so a pruned
// forward on a GPU reads nothing back to the host. Rows move by one index_select / index_add
// on the stream flattened to (B·(c+m), D) with flat indices b·(c+m) + position, so index
// memory is O(B·T_ℓ), not the O(B·T_ℓ·D) of a (B, T, D) gather index; both ops have
// backward passes, so the logits are differentiable in every parameter (Simba-aware
// training; the kept sets are constants). A layer that processes the whole context computes
// h + mixer(norm(h)) directly, exactly MambaBlock::forward, so keep=1 reproduces
// MambaLM::forward bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include "ssm/flops.h"
#include "ssm/mamba_model.h"
#include "ssm/simba.h"

namespace simba {

struct SimbaResult {
  int64_t context = 0;             // c
  Variable logits;                 // (B, m, V): row j = position c − 1 + j, predicting ids[:, c + j]
  std::vector<int64_t> counts;     // n_ℓ, per layer
  std::vector<Tensor> kept;        // per layer: (B, n_ℓ) int64 original positions of the context
                                   // tokens layer ℓ processes, ascending (kept[0] = 0..c−1), on
                                   // the model's device
  std::vector<Tensor> scores;      // per layer: (B, n_ℓ) scores of those tokens, kept[ℓ]'s order;
                                   // undefined where the layer was not scored (see keep_trace)
  Variable hidden;                 // (B, c + m, D) final residual stream, before norm_f
  std::vector<Tensor> layer_hidden;  // keep_trace only: the stream after each layer, (B, c + m, D)
  ForwardFlops flops;              // this run's FLOPs (ssm/flops.h); trace-only scores excluded
};

// The pruned forward with scores and kept sets chosen on the fly. keep_trace additionally scores
// every layer (also those whose kept set carries over, and the last) and keeps layer_hidden.
// Errors: ids not int64 (B, L); context < 1 (the anchor, token c − 1, must exist) or > L;
// invalid options; a custom schedule whose length is not the model's layer count.
SimbaResult simba_forward(const MambaLM& model, const Tensor& ids, int64_t context, const SimbaOptions& opt,
                          bool keep_trace = false);

// The same forward with the kept sets given (e.g. taken from an earlier run's result.kept, for
// gradient checks or training with a frozen selection). kept has one (B, n_ℓ) int64 tensor per
// layer: kept[0] = 0..c−1 for every sequence; every row strictly ascending, inside [0, c),
// holding the anchor c − 1, and a subset of the previous layer's row. No scores are computed.
SimbaResult simba_forward_kept(const MambaLM& model, const Tensor& ids, int64_t context,
                               const std::vector<Tensor>& kept, bool keep_trace = false);

// ids (B, c + m) -> (B, m) int64, the continuation tokens ids[:, c:] (the targets of the logits).
Tensor continuation_targets(const Tensor& ids, int64_t context);
// Mean cross-entropy over the B·m continuation tokens: row j of result.logits against
// ids[:, c + j]. Error if m = 0.
Variable continuation_loss(const SimbaResult& result, const Tensor& ids);

}  // namespace simba
