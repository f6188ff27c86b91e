// nn/linear_cross_entropy.h: the language model's classifier during training, fused: the mean
// softmax cross-entropy of the logits h·Wᵀ against integer targets, without the (rows, V)
// logits ever existing whole.
//
//   loss = (1/count) Σ_{r counted} (lse_r − logits[r, target_r]),   logits = h·Wᵀ,
//
// with lse and the ignored rows as in nn/cross_entropy.h. Why: at the 130M shape (V 50280) a
// training batch of 8192 positions has 412M logits (1.6 GB in float32), written by the head's
// GEMM, read by the loss, kept until backward, and their gradient written and read again by
// the head's two backward GEMMs: the largest tensors of a step. Here the rows are taken
// chunk_rows at a time; a chunk's logits are formed, its losses computed, and at once the
// gradient of the sum of its losses with respect to them, G = softmax − onehot (0 on ignored
// rows), is turned into
//   dh[chunk] = G·W   (chunk, D)     and     dW += Gᵀ·h[chunk]   (V, D),
// after which the chunk's logits and G are freed. What forward keeps for backward is dh and
// dW, the sizes of h and W, in acc_t of the dtype (float32 for bfloat16: the GEMMs write and
// accumulate their float32 results unrounded, and both are rounded once when backward scales
// them); backward only
// multiplies both by (upstream gradient)·(1/count). The GEMMs are the unfused head's three
// (one for the logits, two for the gradients), all run in forward; the forward of a model
// that is not trained (evaluation, generation) keeps using the plain head and cross_entropy.
#pragma once

#include <cstdint>

#include "autograd/variable.h"

namespace simba {

// Logits per chunk when chunk_rows is 0 (automatic): chunk_rows = max(1, this / V), so a
// chunk's logits and G take 128 MiB each in float32 at most, whatever V.
constexpr int64_t kLinearCrossEntropyChunkLogits = int64_t{1} << 25;

// hidden (..., D) and weight (V, D) of one dtype (float32, float64 or bfloat16), targets (...)
// int64 -> 0-dim mean loss over rows whose target != ignore_index (float32 for bfloat16, else
// the dtype), differentiable in hidden and weight; equal to
// cross_entropy(matmul(hidden, weightᵀ), targets, ignore_index) up to rounding. chunk_rows: rows
// per chunk, 0 for the automatic size above. A bad target is an error as in cross_entropy.
Variable linear_cross_entropy(const Variable& hidden, const Variable& weight, const Tensor& targets,
                              int64_t ignore_index = -100, int64_t chunk_rows = 0);

}  // namespace simba
