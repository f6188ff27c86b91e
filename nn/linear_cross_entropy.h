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
// after which the chunk's logits are freed (G is written over them: one (chunk, V) buffer).
// What forward keeps for backward is dh and dW, the sizes of h and W, in acc_t of the dtype
// (float32 for bfloat16: the GEMMs write and accumulate their float32 results unrounded, and
// both are rounded once when backward scales them); backward only multiplies both by
// (upstream gradient)·(1/count). The GEMMs are the unfused head's three
// (one for the logits, two for the gradients), all run in forward; the forward of a model
// that is not trained (evaluation, generation) keeps using the plain head and cross_entropy.
#pragma once

#include <cstdint>

#include "autograd/variable.h"

namespace simba {

// Chunks when chunk_rows is 0 (automatic): as few as keep a chunk's logits within this many
// (512 MiB in float32, whatever V), of equal size rounded up to a multiple of
// kLinearCrossEntropyChunkAlign rows (or all rows) where that stays within the bound. Long,
// whole-tile chunks because the three GEMMs get slower per row on short, ragged ones: at
// V 50280, D 768 in float32 on an H200, 667-row chunks cost 5.25 µs a row, 2048-row chunks
// 4.60 (bench/RESULTS.md).
constexpr int64_t kLinearCrossEntropyChunkLogits = int64_t{1} << 27;
constexpr int64_t kLinearCrossEntropyChunkAlign = 128;

// The automatic rows per chunk for rows rows of V classes (1 when rows is 0).
int64_t linear_cross_entropy_chunk_rows(int64_t rows, int64_t V);

// hidden (..., D) and weight (V, D) of one dtype (float32, float64 or bfloat16), targets (...)
// int64 -> 0-dim mean loss over rows whose target != ignore_index (float32 for bfloat16, else
// the dtype), differentiable in hidden and weight; equal to
// cross_entropy(matmul(hidden, weightᵀ), targets, ignore_index) up to rounding. chunk_rows: rows
// per chunk, 0 for the automatic size above. A bad target is an error as in cross_entropy.
Variable linear_cross_entropy(const Variable& hidden, const Variable& weight, const Tensor& targets,
                              int64_t ignore_index = -100, int64_t chunk_rows = 0);

}  // namespace simba
