// nn/embedding.h: the token embedding table, a row lookup by id.
//
// The weight (V, D) is also Mamba's LM head (tied embeddings), so it is a
// plain registered parameter that the model can share with its head.
#pragma once

#include "autograd/variable.h"
#include "nn/module.h"
#include "tensor/random.h"

namespace simba {

class Embedding : public Module {
 public:
  // weight ~ N(0, 1), PyTorch's nn.Embedding default (Mamba re-draws it with std 0.02).
  // g null: the values are left unset, for a caller that fills them.
  Embedding(int64_t num_embeddings, int64_t dim, Generator* g, DType dtype = DType::F32);
  // ids: int64 of any shape S, each in [0, V) -> (S..., D). The gradient of
  // weight accumulates rows at repeated ids (autograd embedding()).
  Variable forward(const Tensor& ids) const;

  int64_t num_embeddings, dim;
  Variable weight;  // (V, D)
};

}  // namespace simba
